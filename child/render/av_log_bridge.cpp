// SPDX-License-Identifier: MIT
#include "av_log_bridge.hpp"

#include "log.hpp"

extern "C" {
#include <libavutil/log.h>
}

#include <atomic>
#include <cstdarg>
#include <cstring>
#include <mutex>
#include <string>

namespace pv {
namespace {

constexpr int kMaxLinesPerRender = 100;
std::atomic<int> g_lines{0};

// Called from any thread FFmpeg runs (x264 and decoder threads included).
void forward(void* avcl, int level, const char* fmt, va_list vl) {
    if (level > AV_LOG_WARNING || level > av_log_get_level())
        return;
    int n = g_lines.fetch_add(1);
    if (n > kMaxLinesPerRender)
        return;
    if (n == kMaxLinesPerRender) {
        log::warn("ffmpeg log limit reached, dropping further lines",
                  {{"limit", kMaxLinesPerRender}});
        return;
    }
    char line[1024];
    int print_prefix = 1;
    av_log_format_line2(avcl, level, fmt, vl, line, sizeof line, &print_prefix);
    std::string text(line);
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
    if (text.empty())
        return;
    log::event(level <= AV_LOG_ERROR ? spdlog::level::warn : spdlog::level::debug, "ffmpeg",
               {{"line", text}});
}

}  // namespace

void install_av_log_bridge() {
    static std::once_flag once;
    std::call_once(once, [] { av_log_set_callback(forward); });
}

void reset_av_log_budget() {
    g_lines.store(0);
}

}  // namespace pv

// SPDX-License-Identifier: MIT
#include "text_output.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace pv::ctl {

std::string signal_name(int signo) {
    // sigabbrev_np (glibc 2.32) gives "KILL" without the prefix, and nullptr for
    // numbers it does not know, such as real-time signals.
    if (const char* abbrev = ::sigabbrev_np(signo))
        return std::string("SIG") + abbrev;
    return fmt::format("SIG{}", signo);
}

namespace {

/// The member, or null when absent (row_to_json always writes every column,
/// but the --json consumers of describe_exit may not).
nlohmann::json member(const nlohmann::json& obj, const char* key) {
    auto it = obj.find(key);
    return it == obj.end() ? nlohmann::json() : *it;
}

}  // namespace

std::string describe_exit(const nlohmann::json& a) {
    auto sig = member(a, "signal");
    if (sig.is_number_integer() && sig.get<int>() > 0) {
        int s = sig.get<int>();
        std::string text = fmt::format("killed by {} ({})", signal_name(s), s);
        if (member(a, "core_dumped") == true)
            text += ", core dumped";
        return text;
    }
    auto code = member(a, "exit_code");
    if (code.is_number_integer())
        return fmt::format("exit {}", code.get<int>());
    if (member(a, "ended_at").is_null())
        return "running";
    return "-";
}

std::string format_megabytes(const nlohmann::json& bytes) {
    if (!bytes.is_number())
        return "-";
    return fmt::format("{:.1f} MB", bytes.get<double>() / (1024.0 * 1024.0));
}

std::string format_seconds(double s) {
    if (!std::isfinite(s) || s < 0)
        return "-";
    if (s < 60)
        return fmt::format("{:.1f} s", s);
    auto whole = static_cast<long>(s);
    if (whole < 3600)
        return fmt::format("{} m {:02} s", whole / 60, whole % 60);
    return fmt::format("{} h {:02} m", whole / 3600, (whole % 3600) / 60);
}

std::string format_seconds(const nlohmann::json& seconds) {
    if (!seconds.is_number())
        return "-";
    return format_seconds(seconds.get<double>());
}

std::string format_timestamp(const nlohmann::json& iso) {
    if (!iso.is_string())
        return "-";
    std::string s = iso.get<std::string>().substr(0, 19);
    std::replace(s.begin(), s.end(), 'T', ' ');
    return s;
}

std::string text_or(const nlohmann::json& value, std::string_view fallback) {
    if (value.is_string())
        return value.get<std::string>();
    return std::string(fallback);
}

std::string truncate(std::string_view text, std::size_t width) {
    if (text.size() <= width)
        return std::string(text);
    if (width <= 3)
        return std::string(text.substr(0, width));
    return std::string(text.substr(0, width - 3)) + "...";
}

std::string progress_bar(double percent, int width) {
    if (!std::isfinite(percent))
        percent = 0;
    percent = std::clamp(percent, 0.0, 100.0);
    width = std::max(width, 1);
    int filled = static_cast<int>(std::lround(percent / 100.0 * width));
    return fmt::format("[{}{}] {:3.0f}%", std::string(filled, '#'),
                       std::string(width - filled, '-'), percent);
}

}  // namespace pv::ctl

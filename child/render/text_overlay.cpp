// SPDX-License-Identifier: MIT
#include "text_overlay.hpp"

#include "font_fallback.hpp"

extern "C" {
#include <libavfilter/buffersink.h>
#include <libavfilter/buffersrc.h>
#include <libavutil/opt.h>
}

#include <cstdio>
#include <sstream>

namespace pv {
namespace {

AVFilterContext* add_filter(AVFilterGraph* graph, const char* name, const char* label) {
    const AVFilter* f = avfilter_get_by_name(name);
    if (!f)
        throw AvError(std::string("no ") + name + " filter", AVERROR_FILTER_NOT_FOUND);
    AVFilterContext* ctx = avfilter_graph_alloc_filter(graph, f, label);
    if (!ctx)
        throw std::bad_alloc();
    return ctx;
}

void set_opt(AVFilterContext* ctx, const char* key, const std::string& value) {
    av_check(av_opt_set(ctx, key, value.c_str(), AV_OPT_SEARCH_CHILDREN),
             std::string("drawtext option ") + key);
}

std::string number(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.6f", v);
    return buf;
}

constexpr double kNarrowEm = 0.62;  // average advance of the bold sans font
constexpr double kWideEm = 1.0;     // CJK ideographs, kana, hangul, full-width forms

// The code point at `i` (advanced past it); a byte that does not start valid
// UTF-8 counts as one character of its own.
char32_t next_code_point(const std::string& s, std::size_t& i) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    int n = b0 < 0x80 ? 1 : (b0 >> 5) == 0x6 ? 2 : (b0 >> 4) == 0xE ? 3 : (b0 >> 3) == 0x1E ? 4 : 0;
    if (n == 0 || i + static_cast<std::size_t>(n) > s.size()) {
        ++i;
        return b0;
    }
    char32_t c = n == 1 ? b0 : b0 & (0x7F >> n);
    for (int k = 1; k < n; ++k) c = (c << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    i += static_cast<std::size_t>(n);
    return c;
}

// East Asian wide characters (the main blocks of Unicode's East_Asian_Width W/F).
bool is_wide(char32_t c) {
    return (c >= 0x1100 && c <= 0x115F) || (c >= 0x2E80 && c <= 0xA4CF) ||
           (c >= 0xAC00 && c <= 0xD7A3) || (c >= 0xF900 && c <= 0xFAFF) ||
           (c >= 0xFE30 && c <= 0xFE4F) || (c >= 0xFF00 && c <= 0xFF60) ||
           (c >= 0xFFE0 && c <= 0xFFE6) || (c >= 0x20000 && c <= 0x3FFFD);
}

}  // namespace

double text_width_em(const std::string& s) {
    double em = 0;
    for (std::size_t i = 0; i < s.size();)
        em += is_wide(next_code_point(s, i)) ? kWideEm : kNarrowEm;
    return em;
}

std::vector<std::string> wrap_text(const std::string& text, int fontsize, int max_width) {
    const double max_em = static_cast<double>(max_width) / std::max(1, fontsize);
    std::vector<std::string> lines;
    std::istringstream paragraphs(text);
    std::string paragraph;
    while (std::getline(paragraphs, paragraph, '\n')) {
        std::string line;
        double line_em = 0;
        // Places a token (a run of narrow characters, or one wide character:
        // Chinese and Japanese break between characters, not at spaces);
        // `spaced` when a space separates it from what comes before.
        auto place = [&](const std::string& token, bool spaced) {
            const double token_em = text_width_em(token);
            const double gap = line.empty() || !spaced ? 0.0 : kNarrowEm;
            if (!line.empty() && line_em + gap + token_em > max_em) {
                lines.push_back(line);
                line.clear();
                line_em = 0;
            } else if (!line.empty() && spaced) {
                line += ' ';
                line_em += kNarrowEm;
            }
            line += token;
            line_em += token_em;
        };
        std::string token;
        bool token_spaced = false;
        bool space_pending = false;
        for (std::size_t i = 0; i < paragraph.size();) {
            const std::size_t start = i;
            const char32_t c = next_code_point(paragraph, i);
            if (c == U' ' || c == U'\t' || is_wide(c)) {
                if (!token.empty())
                    place(token, token_spaced);
                token.clear();
                if (c == U' ' || c == U'\t') {
                    space_pending = true;
                } else {
                    place(paragraph.substr(start, i - start), space_pending);
                    space_pending = false;
                }
            } else {
                if (token.empty()) {
                    token_spaced = space_pending;
                    space_pending = false;
                }
                token.append(paragraph, start, i - start);
            }
        }
        if (!token.empty())
            place(token, token_spaced);
        if (!line.empty())
            lines.push_back(line);
    }
    return lines;
}

TextPainter::TextPainter(int w, int h, int fps, const std::string& font_path,
                         const std::vector<TextItem>& items) {
    m_graph.reset(avfilter_graph_alloc());
    if (!m_graph)
        throw std::bad_alloc();
    m_graph->nb_threads = 1;

    m_src = add_filter(m_graph.get(), "buffer", "in");
    av_check(av_opt_set_int(m_src, "width", w, AV_OPT_SEARCH_CHILDREN), "buffer width");
    av_check(av_opt_set_int(m_src, "height", h, AV_OPT_SEARCH_CHILDREN), "buffer height");
    av_check(av_opt_set_pixel_fmt(m_src, "pix_fmt", AV_PIX_FMT_YUV420P, AV_OPT_SEARCH_CHILDREN),
             "buffer pix_fmt");
    av_check(av_opt_set_q(m_src, "time_base", AVRational{1, fps}, AV_OPT_SEARCH_CHILDREN),
             "buffer time_base");
    av_check(av_opt_set_q(m_src, "pixel_aspect", AVRational{1, 1}, AV_OPT_SEARCH_CHILDREN),
             "buffer pixel_aspect");
    av_check(avfilter_init_str(m_src, nullptr), "buffer init");

    AVFilterContext* last = m_src;
    int index = 0;
    for (const TextItem& item : items) {
        std::string label = "text" + std::to_string(index++);
        AVFilterContext* dt = add_filter(m_graph.get(), "drawtext", label.c_str());
        const std::string font = font_for_text(font_path, item.text);
        set_opt(dt, "fontfile", font);
        set_opt(dt, "text", item.text);
        set_opt(dt, "expansion", "none");
        set_opt(dt, "fontsize", std::to_string(item.fontsize));
        set_opt(dt, "fontcolor", item.color);
        set_opt(dt, "x", "(w-text_w)/2");
        set_opt(dt, "y", std::to_string(item.y));
        if (item.border_width > 0) {
            set_opt(dt, "borderw", std::to_string(item.border_width));
            set_opt(dt, "bordercolor", item.border_color);
        }
        if (item.start >= 0) {
            // Our own numbers only; the text never passes through an expression.
            set_opt(dt, "enable",
                    "gte(t," + number(item.start) + ")*lt(t," + number(item.end) + ")");
        }
        av_check(avfilter_init_str(dt, nullptr), "drawtext init (" + font + ")");
        av_check(avfilter_link(last, 0, dt, 0), "link drawtext");
        last = dt;
    }

    m_sink = add_filter(m_graph.get(), "buffersink", "out");
    av_check(avfilter_init_str(m_sink, nullptr), "buffersink init");
    av_check(avfilter_link(last, 0, m_sink, 0), "link buffersink");
    av_check(avfilter_graph_config(m_graph.get(), nullptr), "configure text graph");
}

FramePtr TextPainter::apply(FramePtr frame) {
    av_check(av_buffersrc_add_frame_flags(m_src, frame.get(), 0), "feed text graph");
    FramePtr out = make_frame();
    av_check(av_buffersink_get_frame(m_sink, out.get()), "read text graph");
    return out;
}

}  // namespace pv

// SPDX-License-Identifier: MIT
#include "text_overlay.hpp"

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

}  // namespace

std::size_t utf8_chars(const std::string& s) {
    std::size_t n = 0;
    for (unsigned char c : s) n += (c & 0xC0) != 0x80;
    return n;
}

std::vector<std::string> wrap_text(const std::string& text, int fontsize, int max_width) {
    const std::size_t max_chars =
        std::max<std::size_t>(1, static_cast<std::size_t>(max_width / (0.62 * fontsize)));
    std::vector<std::string> lines;
    std::istringstream paragraphs(text);
    std::string paragraph;
    while (std::getline(paragraphs, paragraph, '\n')) {
        std::istringstream words(paragraph);
        std::string word;
        std::string line;
        while (words >> word) {
            if (!line.empty() && utf8_chars(line) + 1 + utf8_chars(word) > max_chars) {
                lines.push_back(line);
                line.clear();
            }
            line += (line.empty() ? "" : " ") + word;
        }
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
        set_opt(dt, "fontfile", font_path);
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
        av_check(avfilter_init_str(dt, nullptr), "drawtext init (" + font_path + ")");
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

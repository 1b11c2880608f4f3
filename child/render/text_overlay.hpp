// SPDX-License-Identifier: MIT
// Text drawn onto frames with libavfilter's drawtext. Every option is set with
// av_opt_set on the filter itself and expansion is off, so the text reaches
// FreeType byte for byte: no graph-string escaping, no %{...} expansion.
#pragma once

#include "av_ptr.hpp"

#include <string>
#include <vector>

namespace pv {

struct TextItem {
    std::string text;  // one line, drawn literally (UTF-8)
    int fontsize = 36;
    std::string color = "white";  // any FFmpeg colour: name, #RRGGBB
    int border_width = 0;
    std::string border_color = "black";
    int y = 0;          // top of the line box, in pixels
    double start = -1;  // visible from this time (seconds); < 0 = always
    double end = -1;    // visible until this time (exclusive)
};

class TextPainter {
public:
    /// Builds the drawtext chain for frames of w x h yuv420p at `fps`; lines are
    /// centred horizontally. Throws AvError when a filter refuses an option (bad
    /// colour, unreadable font).
    TextPainter(int w, int h, int fps, const std::string& font_path,
                const std::vector<TextItem>& items);

    /// Draws on `frame`, whose pts counts frames from the start of the
    /// painter's timeline; returns the frame with the text on it.
    FramePtr apply(FramePtr frame);

private:
    FilterGraphPtr m_graph;
    AVFilterContext* m_src = nullptr;   // owned by m_graph
    AVFilterContext* m_sink = nullptr;  // owned by m_graph
};

/// Limitation: line widths are estimated from average glyph widths, not
/// measured with FreeType, so a line of wide glyphs can touch the frame edge.
/// Splits `text` into lines of at most `max_width` pixels, at spaces and
/// between East Asian wide characters (existing newlines are kept), with the
/// widths of text_width_em().
std::vector<std::string> wrap_text(const std::string& text, int fontsize, int max_width);

/// Estimated width of a UTF-8 line in em: 1 per East Asian wide character
/// (CJK, kana, hangul, full-width forms), 0.62 per other character (the bold
/// sans font's average).
double text_width_em(const std::string& s);

}  // namespace pv

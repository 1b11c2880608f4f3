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

/// Limitation: line widths are estimated from an average glyph width, not
/// measured with FreeType, so a line of wide glyphs can touch the frame edge.
/// Splits `text` on spaces into lines of at most `max_width` pixels, using an
/// average glyph width of 0.62 em for the bold sans font (existing newlines
/// are kept).
std::vector<std::string> wrap_text(const std::string& text, int fontsize, int max_width);

/// Number of characters (code points) in a UTF-8 string.
std::size_t utf8_chars(const std::string& s);

}  // namespace pv

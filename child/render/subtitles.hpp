// SPDX-License-Identifier: MIT
// Word-timed captions from espeak-ng's word events: four words per line,
// upper case, white with a dark outline, the top of the text at 60 % of the
// frame height (the layout of the original service).
#pragma once

#include "narration.hpp"
#include "text_overlay.hpp"

#include <string>
#include <vector>

namespace pv {

struct CaptionLine {
    std::string text;  // upper case
    double start = 0;  // seconds on the painter's timeline
    double end = 0;
};

/// Groups words into lines of `words_per_line`, shifted by `offset` seconds.
/// A line shows from its first word until the next line starts (the last
/// line until its last word ends).
std::vector<CaptionLine> make_captions(const std::vector<WordTiming>& words, double offset,
                                       int words_per_line = 4);

/// Drawtext items for the captions on a w x h frame; `base_fontsize` is in
/// pixels at 1080 wide and shrinks for a line wider than the frame less 120 px.
std::vector<TextItem> caption_items(const std::vector<CaptionLine>& lines, int w, int h,
                                    int base_fontsize);

/// Upper-cases ASCII, Latin-1, Latin Extended-A, Greek and Cyrillic letters;
/// other characters are kept as written.
std::string to_upper_utf8(const std::string& s);

}  // namespace pv

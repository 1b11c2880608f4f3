// SPDX-License-Identifier: MIT
// Picks the font a line of text is drawn in. drawtext draws with one font file
// and no fallback, so a line holding characters the main font lacks (Chinese,
// Japanese, Korean...) is drawn, whole, in an installed font that has all of
// them, found with fontconfig.
#pragma once

#include <string>

namespace pv {

/// `main_font` when it has every character of `text` (UTF-8), or when
/// fontconfig does not know it; else the file of an installed font (bold when
/// there is one) that has them all; else `main_font` (the missing characters
/// then come out as empty boxes).
std::string font_for_text(const std::string& main_font, const std::string& text);

}  // namespace pv

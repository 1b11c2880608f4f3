// SPDX-License-Identifier: MIT
#include "subtitles.hpp"

#include <algorithm>
#include <cmath>

namespace pv {
namespace {

char32_t upper(char32_t c) {
    if (c >= U'a' && c <= U'z')
        return c - 32;
    if (c >= 0xE0 && c <= 0xFE && c != 0xF7)
        return c - 32;
    if (c >= 0x100 && c <= 0x17F && (c % 2) == 1 && c != 0x131 && c != 0x138 && c != 0x149 &&
        c != 0x17F) {
        // Latin Extended-A pairs are even (upper) / odd (lower) except in 0x139..0x148
        // and 0x179..0x17E, where they are odd / even.
        bool shifted = (c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E);
        return shifted ? c : c - 1;
    }
    if (((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) && (c % 2) == 0) {
        return c - 1;
    }
    if (c >= 0x3B1 && c <= 0x3C9 && c != 0x3C2)
        return c - 32;
    if (c >= 0x430 && c <= 0x44F)
        return c - 32;
    if (c >= 0x450 && c <= 0x45F)
        return c - 80;
    return c;
}

void append_utf8(std::string& out, char32_t c) {
    if (c < 0x80) {
        out += static_cast<char>(c);
    } else if (c < 0x800) {
        out += static_cast<char>(0xC0 | (c >> 6));
        out += static_cast<char>(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
        out += static_cast<char>(0xE0 | (c >> 12));
        out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (c & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (c >> 18));
        out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (c & 0x3F));
    }
}

}  // namespace

std::string to_upper_utf8(const std::string& s) {
    std::string out;
    out.reserve(s.size());
    std::size_t i = 0;
    while (i < s.size()) {
        auto b = static_cast<unsigned char>(s[i]);
        int len = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
        if (len == 0 || i + static_cast<std::size_t>(len) > s.size()) {
            out += s[i++];  // not valid UTF-8: copy the byte unchanged
            continue;
        }
        char32_t c = len == 1 ? b : b & (0x7F >> len);
        for (int k = 1; k < len; ++k) c = (c << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
        append_utf8(out, upper(c));
        i += static_cast<std::size_t>(len);
    }
    return out;
}

std::vector<CaptionLine> make_captions(const std::vector<WordTiming>& words, double offset,
                                       int words_per_line) {
    std::vector<CaptionLine> lines;
    const std::size_t per = static_cast<std::size_t>(std::max(1, words_per_line));
    for (std::size_t i = 0; i < words.size(); i += per) {
        CaptionLine line;
        std::size_t last = std::min(words.size(), i + per) - 1;
        for (std::size_t k = i; k <= last; ++k) {
            line.text += (k == i ? "" : " ") + to_upper_utf8(words[k].word);
        }
        line.start = offset + words[i].start;
        line.end = offset + (last + 1 < words.size() ? words[last + 1].start : words[last].end);
        lines.push_back(std::move(line));
    }
    return lines;
}

std::vector<TextItem> caption_items(const std::vector<CaptionLine>& lines, int w, int h,
                                    int base_fontsize) {
    std::vector<TextItem> items;
    const double scale = w / 1080.0;
    const int box_w = std::max(16, w - static_cast<int>(std::lround(120 * scale)));
    for (const CaptionLine& line : lines) {
        TextItem item;
        item.text = line.text;
        int size = static_cast<int>(std::lround(base_fontsize * scale));
        // Shrink a line that would not fit the caption box.
        double est = size * text_width_em(line.text);
        if (est > box_w)
            size = static_cast<int>(size * box_w / est);
        item.fontsize = std::max(6, size);
        item.color = "white";
        item.border_width = std::max(1, static_cast<int>(std::lround(4 * scale)));
        item.border_color = "black";
        item.y = static_cast<int>(std::lround(0.6 * h));
        item.start = line.start;
        item.end = line.end;
        items.push_back(std::move(item));
    }
    return items;
}

}  // namespace pv

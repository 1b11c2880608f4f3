// SPDX-License-Identifier: MIT
#include "font_fallback.hpp"

#include <fontconfig/fontconfig.h>

#include <memory>
#include <optional>

namespace pv {
namespace {

struct PatternFree {
    void operator()(FcPattern* p) const noexcept { FcPatternDestroy(p); }
};
struct CharSetFree {
    void operator()(FcCharSet* c) const noexcept { FcCharSetDestroy(c); }
};
struct FontSetFree {
    void operator()(FcFontSet* s) const noexcept { FcFontSetDestroy(s); }
};
struct ObjectSetFree {
    void operator()(FcObjectSet* o) const noexcept { FcObjectSetDestroy(o); }
};
using PatternPtr = std::unique_ptr<FcPattern, PatternFree>;
using CharSetPtr = std::unique_ptr<FcCharSet, CharSetFree>;

const FcChar8* fc_text(const std::string& s) {
    return reinterpret_cast<const FcChar8*>(s.c_str());
}

// The printable characters of a UTF-8 line (decoding stops at a bad byte).
CharSetPtr characters_of(const std::string& text) {
    CharSetPtr set{FcCharSetCreate()};
    const auto* p = reinterpret_cast<const FcChar8*>(text.data());
    int left = static_cast<int>(text.size());
    while (set && left > 0) {
        FcChar32 c = 0;
        int n = FcUtf8ToUcs4(p, &c, left);
        if (n <= 0)
            break;
        if (c > 0x20)
            FcCharSetAddChar(set.get(), c);
        p += n;
        left -= n;
    }
    return set;
}

// Whether the font file has every character of `chars`; nullopt when
// fontconfig does not know the file.
std::optional<bool> file_covers(const std::string& file, const FcCharSet* chars) {
    PatternPtr pattern{FcPatternCreate()};
    std::unique_ptr<FcObjectSet, ObjectSetFree> objects{FcObjectSetBuild(FC_CHARSET, nullptr)};
    if (!pattern || !objects || !FcPatternAddString(pattern.get(), FC_FILE, fc_text(file)))
        return std::nullopt;
    std::unique_ptr<FcFontSet, FontSetFree> fonts{
        FcFontList(nullptr, pattern.get(), objects.get())};
    FcCharSet* have = nullptr;
    if (!fonts || fonts->nfont == 0 ||
        FcPatternGetCharSet(fonts->fonts[0], FC_CHARSET, 0, &have) != FcResultMatch) {
        return std::nullopt;
    }
    return FcCharSetIsSubset(chars, have) != 0;
}

// An installed font with every character of `chars`, bold when possible.
std::optional<std::string> font_covering(const FcCharSet* chars) {
    PatternPtr pattern{FcPatternCreate()};
    if (!pattern || !FcPatternAddCharSet(pattern.get(), FC_CHARSET, chars) ||
        !FcPatternAddInteger(pattern.get(), FC_WEIGHT, FC_WEIGHT_BOLD)) {
        return std::nullopt;
    }
    FcConfigSubstitute(nullptr, pattern.get(), FcMatchPattern);
    FcDefaultSubstitute(pattern.get());
    FcResult result = FcResultNoMatch;
    PatternPtr match{FcFontMatch(nullptr, pattern.get(), &result)};
    FcCharSet* have = nullptr;
    FcChar8* file = nullptr;
    if (!match || FcPatternGetCharSet(match.get(), FC_CHARSET, 0, &have) != FcResultMatch ||
        !FcCharSetIsSubset(chars, have) ||
        FcPatternGetString(match.get(), FC_FILE, 0, &file) != FcResultMatch) {
        return std::nullopt;
    }
    return std::string(reinterpret_cast<const char*>(file));
}

}  // namespace

std::string font_for_text(const std::string& main_font, const std::string& text) {
    CharSetPtr chars = characters_of(text);
    if (!chars || FcCharSetCount(chars.get()) == 0)
        return main_font;
    if (file_covers(main_font, chars.get()).value_or(true))
        return main_font;
    return font_covering(chars.get()).value_or(main_font);
}

}  // namespace pv

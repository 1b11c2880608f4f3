// SPDX-License-Identifier: MIT
// Excerpts of untrusted text for messages: cut on a UTF-8 character boundary so
// an error message is always valid UTF-8 (PostgreSQL text, strict JSON).
#pragma once

#include <string>
#include <string_view>

namespace pv {

/// The first at most `max_bytes` bytes of `text`, never ending inside a
/// multi-byte UTF-8 character.
inline std::string utf8_prefix(std::string_view text, std::size_t max_bytes) {
    if (text.size() <= max_bytes)
        return std::string(text);
    std::size_t cut = max_bytes;
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
    return std::string(text.substr(0, cut));
}

}  // namespace pv

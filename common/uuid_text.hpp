// SPDX-License-Identifier: MIT
// Recognises the canonical textual form of a UUID (8-4-4-4-12 hex digits).
#pragma once

#include <cctype>
#include <string_view>

namespace pv {

inline bool is_uuid_text(std::string_view s) {
    if (s.size() != 36)
        return false;
    for (std::size_t i = 0; i < s.size(); ++i) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !std::isxdigit(static_cast<unsigned char>(s[i])))
            return false;
    }
    return true;
}

}  // namespace pv

// SPDX-License-Identifier: MIT
// Checks shared by the fuzz targets, and the switch for bugs that are known
// and reported but not fixed yet (known-open.txt beside this file).
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pv::fuzz {

/// Aborts with `what`, so libFuzzer saves the input as a crash.
[[noreturn]] inline void broken(const char* target, const char* what) {
    std::fprintf(stderr, "%s: %s\n", target, what);
    std::abort();
}

/// False for a check whose bug id is listed in PV_FUZZ_KNOWN_OPEN (comma
/// separated): run.sh sets it from known-open.txt so that a reported bug does
/// not fail every run until it is fixed.
inline bool enforced(std::string_view bug_id) {
    static const std::string known = [] {
        const char* v = std::getenv("PV_FUZZ_KNOWN_OPEN");
        return "," + std::string(v ? v : "") + ",";
    }();
    return known.find("," + std::string(bug_id) + ",") == std::string::npos;
}

/// True when `s` is well-formed UTF-8 (no overlong or surrogate checks: the
/// point is catching strings cut inside a multi-byte character).
inline bool valid_utf8(std::string_view s) {
    std::size_t i = 0;
    while (i < s.size()) {
        auto c = static_cast<unsigned char>(s[i]);
        std::size_t len = c < 0x80           ? 1
                          : (c >> 5) == 0x6  ? 2
                          : (c >> 4) == 0xe  ? 3
                          : (c >> 3) == 0x1e ? 4
                                             : 0;
        if (len == 0 || i + len > s.size()) return false;
        for (std::size_t k = 1; k < len; ++k) {
            if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return false;
        }
        i += len;
    }
    return true;
}

/// Nesting depth of a JSON value, computed without recursion so that the
/// check itself cannot overflow the stack on the inputs it looks for.
inline std::size_t depth(const nlohmann::json& root) {
    std::size_t deepest = 0;
    std::vector<std::pair<const nlohmann::json*, std::size_t>> todo{{&root, 1}};
    while (!todo.empty()) {
        auto [v, d] = todo.back();
        todo.pop_back();
        if (!v->is_structured()) continue;
        if (d > deepest) deepest = d;
        for (const auto& child : *v) todo.emplace_back(&child, d + 1);
    }
    return deepest;
}

}  // namespace pv::fuzz

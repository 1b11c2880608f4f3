// SPDX-License-Identifier: MIT
// Optional statement parameters for libpqxx 6, which passes a null `const char*`
// as SQL NULL: the values are kept alive as text for one statement.
#pragma once

#include <pqxx/pqxx>

#include <optional>
#include <string>

namespace pv::sql {

using Text = std::optional<std::string>;

inline const char* arg(const Text& text) {
    return text ? text->c_str() : nullptr;
}

template <class T>
Text text_of(const std::optional<T>& value) {
    if (!value)
        return std::nullopt;
    return pqxx::to_string(*value);
}

}  // namespace pv::sql

// SPDX-License-Identifier: MIT
// Optional statement parameters for libpqxx 6, which passes a null `const char*`
// as SQL NULL: the values are kept alive as text for one statement. Also the
// prepared form of the statements the supervisor runs once or twice per task.
#pragma once

#include <pqxx/pqxx>

#include <optional>
#include <string>
#include <utility>

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

/// Runs `sql` as the prepared statement `name` of the transaction's connection:
/// the server parses and plans it once per connection (the first call adds one
/// round trip) instead of at every call. A name must always go with one text.
template <class... Args>
pqxx::result exec_prepared(pqxx::transaction_base& tx, const std::string& name,
                           const std::string& sql, Args&&... args) {
    tx.conn().prepare(name, sql);
    return tx.exec_prepared(name, std::forward<Args>(args)...);
}

}  // namespace pv::sql

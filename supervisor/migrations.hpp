// SPDX-License-Identifier: MIT
// Versioned schema migrations. Each runs once, in order, inside a transaction
// holding an advisory lock, so concurrent supervisors upgrade safely.
#pragma once

#include <pqxx/pqxx>

namespace pv {

/// Applies every migration newer than the database's version; returns how many ran.
int run_migrations(pqxx::connection& conn);

/// The newest schema version this build knows.
int latest_schema_version();

}  // namespace pv

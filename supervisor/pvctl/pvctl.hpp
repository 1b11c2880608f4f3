// SPDX-License-Identifier: MIT
// pvctl, the operator's tool: the pieces every command shares — global options,
// exit codes, the error type that carries one, and the database connection.
#pragma once

#include <pqxx/pqxx>

#include <memory>
#include <stdexcept>
#include <string>

namespace pv::ctl {

/// Exit codes, part of the tool's contract with scripts (see docs/README-draft.md).
enum class ExitCode : int {
    Ok = 0,
    NotFound = 1,  // no such task, or the task is in the wrong state
    Usage = 2,     // bad command line or invalid request
    Database = 3,  // database unreachable or unusable
};

/// A failure with a message meant for the operator; main prints it and exits
/// with the code. Never carries a stack trace or a connection string.
class CommandError : public std::runtime_error {
public:
    CommandError(ExitCode code, const std::string& message)
        : std::runtime_error(message), m_code(code) {}
    ExitCode code() const { return m_code; }

private:
    ExitCode m_code;
};

struct GlobalOptions {
    bool json = false;
    std::string database_url;  // empty: DATABASE_URL, then libpq's PG* variables
};

/// An open connection whose server notices (e.g. "relation already exists,
/// skipping") are kept off the operator's terminal.
class Database {
public:
    /// Connects with a 5 s timeout unless the URL or PGCONNECT_TIMEOUT says
    /// otherwise. Throws CommandError(Database) with libpq's reason.
    explicit Database(const GlobalOptions& options);

    pqxx::connection& conn() { return *m_conn; }

private:
    std::unique_ptr<pqxx::connection> m_conn;
    // Declared after m_conn so that it unregisters before the connection goes.
    std::unique_ptr<pqxx::quiet_errorhandler> m_quiet;
};

/// libpq messages span several tab-indented lines; this joins them into one.
std::string one_line(const std::string& text);

}  // namespace pv::ctl

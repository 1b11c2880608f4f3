// SPDX-License-Identifier: MIT
// Opening the database for pvctl, with the operator-facing error when it fails.
#include "pvctl.hpp"

#include <cstdlib>

namespace pv::ctl {

std::string one_line(const std::string& text) {
    std::string out;
    bool space = false;
    for (char c : text) {
        if (c == '\n' || c == '\t' || c == '\r' || c == ' ') {
            space = !out.empty();
            continue;
        }
        if (space)
            out += ' ';
        space = false;
        out += c;
    }
    return out;
}

Database::Database(const GlobalOptions& options) {
    std::string url = options.database_url;
    if (url.empty()) {
        if (const char* env = std::getenv("DATABASE_URL"))
            url = env;
    }

    // libpq reads PGCONNECT_TIMEOUT when the URL does not set connect_timeout;
    // without either it would wait as long as the network lets it.
    ::setenv("PGCONNECT_TIMEOUT", "5", 0);

    try {
        m_conn = std::make_unique<pqxx::connection>(url);
    } catch (const pqxx::broken_connection& e) {
        throw CommandError(ExitCode::Database, "cannot connect to the database: " +
                                                   one_line(e.what()) + " (set DATABASE_URL)");
    } catch (const std::exception& e) {
        // A malformed URL is reported by libpq as a plain error, not a broken connection.
        throw CommandError(ExitCode::Database, "cannot connect to the database: " +
                                                   one_line(e.what()) + " (set DATABASE_URL)");
    }
    m_quiet = std::make_unique<pqxx::quiet_errorhandler>(*m_conn);
}

}  // namespace pv::ctl

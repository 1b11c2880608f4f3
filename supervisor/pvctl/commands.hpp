// SPDX-License-Identifier: MIT
// The pvctl subcommands. Each prints its answer on stdout (text, or one JSON
// document with --json) and throws CommandError for anything the operator must
// fix; none of them catches database errors, main maps those to exit code 3.
#pragma once

#include "pvctl.hpp"

#include <optional>
#include <string>

namespace pv::ctl {

struct EnqueueArgs {
    std::string file;  // path, or "-" for stdin
    std::optional<int> max_attempts;
    std::optional<double> timeout_seconds;
    bool validate = true;
};

void enqueue(const GlobalOptions& g, const EnqueueArgs& args);

struct ShowArgs {
    std::string task;  // full id or a unique prefix
    bool stderr_tail = false;
};

void show(const GlobalOptions& g, const ShowArgs& args);

struct ListArgs {
    std::string status;  // empty: every status
    int limit = 20;
};

void list(const GlobalOptions& g, const ListArgs& args);

void cancel(const GlobalOptions& g, const std::string& task);
void retry(const GlobalOptions& g, const std::string& task);
void migrate(const GlobalOptions& g);

struct WatchArgs {
    double refresh_seconds = 5;
};

/// Runs until SIGINT, SIGTERM or SIGHUP; restores the terminal on every exit path.
void watch(const GlobalOptions& g, const WatchArgs& args);

/// Resolves a full task id or a unique prefix of at least 4 characters to the
/// full id. Throws CommandError(Usage) for malformed input and
/// CommandError(NotFound) for no match or an ambiguous prefix.
std::string resolve_task_id(pqxx::transaction_base& tx, const std::string& arg);

}  // namespace pv::ctl

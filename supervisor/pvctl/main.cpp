// SPDX-License-Identifier: MIT
// pvctl: the operator's tool for ProtoVideo tasks. This file wires the command
// line to the commands and is the one place that turns failures into messages
// and exit codes (0 ok, 1 not found or wrong state, 2 usage or invalid request,
// 3 database unreachable or unusable).
#include "commands.hpp"

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <csignal>
#include <iostream>

namespace {

using pv::ctl::ExitCode;

int fail(const pv::ctl::GlobalOptions& g, ExitCode code, const std::string& message) {
    std::cerr << "pvctl: " << message << std::endl;
    if (g.json) {
        nlohmann::json doc = {{"error", message}, {"exit_code", static_cast<int>(code)}};
        // A message may quote a file name that is not UTF-8; dump() would throw.
        std::cout << doc.dump(2, ' ', false, nlohmann::json::error_handler_t::replace)
                  << std::endl;
    }
    return static_cast<int>(code);
}

/// Accepts a number of seconds above 0 and at most a week, with a plain message.
CLI::Validator positive_seconds() {
    return CLI::Validator(
        [](const std::string& text) -> std::string {
            try {
                std::size_t used = 0;
                double v = std::stod(text, &used);
                if (used == text.size() && v > 0 && v <= 7 * 24 * 3600)
                    return {};
            } catch (const std::exception&) {
            }
            return "must be a number of seconds above 0 and at most 604800, not '" + text + "'";
        },
        "SECONDS", "positive seconds");
}

}  // namespace

int main(int argc, char** argv) {
    // A closed pipe (pvctl list | head) ends the program quietly.
    std::signal(SIGPIPE, SIG_DFL);

    pv::ctl::GlobalOptions g;
    CLI::App app{
        "pvctl: enqueue, inspect, cancel and retry ProtoVideo tasks.\n"
        "The database comes from --database-url, DATABASE_URL or libpq's PG* "
        "variables.\nExit codes: 0 ok, 1 not found or wrong state, 2 usage or invalid "
        "request, 3 database unreachable."};
    app.set_version_flag("--version", "pvctl 0.1.0");
    app.require_subcommand(1);
    // Lets --json and --database-url follow the subcommand too.
    app.fallthrough();
    app.add_flag("--json", g.json, "Print one JSON document (watch: JSON lines) for scripts");
    app.add_option("--database-url", g.database_url,
                   "libpq URI or conninfo (default: DATABASE_URL, then PG* variables)");

    pv::ctl::EnqueueArgs enq;
    auto* enqueue = app.add_subcommand("enqueue",
                                       "Validate a request and add it as a task; "
                                       "prints the task id");
    enqueue->add_option("FILE", enq.file, "Request JSON file, or - for standard input")->required();
    enqueue->add_option("--max-attempts", enq.max_attempts, "Attempts allowed (default 3)")
        ->check(CLI::Range(1, 1000));
    enqueue
        ->add_option("--timeout", enq.timeout_seconds,
                     "Seconds per attempt (default: the supervisor's --task-timeout)")
        ->check(positive_seconds());
    bool no_validate = false;
    enqueue->add_flag("--no-validate", no_validate,
                      "Insert without validating (to test how the renderer refuses it)");

    pv::ctl::ShowArgs sh;
    auto* show = app.add_subcommand("show", "Show a task and each of its attempts");
    show->add_option("ID", sh.task, "Task id, or a unique prefix of it")->required();
    show->add_flag("--stderr", sh.stderr_tail, "Also print each attempt's captured stderr tail");

    pv::ctl::ListArgs ls;
    auto* list = app.add_subcommand("list", "List tasks, newest first");
    list->add_option("--status", ls.status, "Only tasks with this status")
        ->check(CLI::IsMember({"pending", "inprogress", "completed", "failed", "cancelled"}));
    list->add_option("--limit", ls.limit, "At most this many tasks (default 20)")
        ->check(CLI::Range(1, 100000));

    std::string task;
    auto* cancel = app.add_subcommand("cancel",
                                      "Cancel a pending task, or ask its supervisor "
                                      "to stop a running one");
    cancel->add_option("ID", task, "Task id, or a unique prefix of it")->required();

    auto* retry = app.add_subcommand("retry", "Put a failed or cancelled task back to pending");
    retry->add_option("ID", task, "Task id, or a unique prefix of it")->required();

    auto* migrate = app.add_subcommand("migrate", "Create or upgrade the database schema");

    pv::ctl::WatchArgs wa;
    auto* watch = app.add_subcommand("watch", "Live view of running tasks (Ctrl-C to quit)");
    watch
        ->add_option("--refresh", wa.refresh_seconds,
                     "Seconds between full refreshes besides notifications (default 5)")
        ->check(positive_seconds());

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        int rc = app.exit(e);
        return rc == 0 ? 0 : static_cast<int>(ExitCode::Usage);
    }
    enq.validate = !no_validate;

    try {
        if (*enqueue)
            pv::ctl::enqueue(g, enq);
        if (*show)
            pv::ctl::show(g, sh);
        if (*list)
            pv::ctl::list(g, ls);
        if (*cancel)
            pv::ctl::cancel(g, task);
        if (*retry)
            pv::ctl::retry(g, task);
        if (*migrate)
            pv::ctl::migrate(g);
        if (*watch)
            pv::ctl::watch(g, wa);
    } catch (const pv::ctl::CommandError& e) {
        return fail(g, e.code(), e.what());
    } catch (const pqxx::broken_connection& e) {
        return fail(g, ExitCode::Database,
                    "lost the connection to the database: " + pv::ctl::one_line(e.what()));
    } catch (const pqxx::undefined_table& e) {
        return fail(g, ExitCode::Database,
                    "the database has no ProtoVideo schema yet (run `pvctl migrate`): " +
                        pv::ctl::one_line(e.what()));
    } catch (const pqxx::sql_error& e) {
        return fail(g, ExitCode::Database, "database error: " + pv::ctl::one_line(e.what()));
    } catch (const std::exception& e) {
        return fail(g, ExitCode::NotFound, std::string("error: ") + e.what());
    }
    return 0;
}

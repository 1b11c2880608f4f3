// SPDX-License-Identifier: MIT
// The one-shot pvctl commands: enqueue, show, list, cancel, retry, migrate.
// Queries return their rows as JSON built by PostgreSQL (row_to_json), so the
// --json output and the text output are drawn from the same document.
#include "commands.hpp"

#include "migrations.hpp"
#include "request.hpp"
#include "text_output.hpp"
#include "uuid_text.hpp"

#include <fmt/format.h>

#include <cctype>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string_view>

namespace pv::ctl {

namespace {

using nlohmann::json;

void print_json(const json& doc) {
    std::cout << doc.dump(2) << '\n';
}

std::string read_input(const std::string& file) {
    if (file == "-") {
        return std::string(std::istreambuf_iterator<char>(std::cin), {});
    }
    std::ifstream in(file, std::ios::binary);
    if (!in) {
        throw CommandError(ExitCode::Usage,
                           fmt::format("cannot read {}: {}", file, std::strerror(errno)));
    }
    std::ostringstream body;
    body << in.rdbuf();
    return body.str();
}

/// nlohmann's message without its "[json.exception.parse_error.101] " tag,
/// ASCII only (it quotes the input, which may not be UTF-8) and cut short.
std::string json_error_detail(const json::exception& e) {
    std::string_view text = e.what();
    if (text.starts_with("[json.exception.")) {
        auto close = text.find("] ");
        if (close != std::string_view::npos)
            text.remove_prefix(close + 2);
    }
    std::string out = truncate(text, 200);
    for (auto& c : out) {
        auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u >= 0x7f)
            c = '?';
    }
    return out;
}

json parse_body(const std::string& text, const std::string& file) {
    try {
        return json::parse(text);
    } catch (const json::exception& e) {
        // parse_error for bad syntax, out_of_range for a number beyond double
        // (1e400): both mean the file cannot be a request.
        std::string where = file == "-" ? "standard input" : file;
        throw CommandError(ExitCode::Usage, fmt::format("invalid request: {} is not valid JSON ({})",
                                                        where, json_error_detail(e)));
    }
}

/// Refuses the request the way the renderer would, with the validator's message.
void validate(const json& body) {
    try {
        pv::parse_request(body, pv::limits_from_env());
    } catch (const pv::InvalidRequest& e) {
        throw CommandError(ExitCode::Usage, std::string("invalid request: ") + e.what());
    } catch (const std::exception& e) {
        throw CommandError(ExitCode::Usage, std::string("cannot validate the request: ") +
                                                e.what() + " (--no-validate inserts it unchecked)");
    }
}

/// One JSON value computed by the database; `null` when the query has no row.
json query_json(pqxx::transaction_base& tx, const std::string& sql, const std::string& id) {
    auto r = tx.exec_params(sql, id);
    if (r.empty() || r[0][0].is_null())
        return nullptr;
    return json::parse(r[0][0].c_str());
}

const char* const kTaskSql = R"sql(
SELECT row_to_json(t)::text FROM (
    SELECT id, status, error_type, error, progress, stage,
           result->>'output' AS output, result,
           request->>'output_filename' AS output_filename,
           CASE WHEN jsonb_typeof(request->'scenes') = 'array'
                THEN jsonb_array_length(request->'scenes') END AS scenes,
           attempts AS attempt_count, max_attempts, timeout_seconds,
           cancel_requested, worker_id, not_before,
           created_at, updated_at, started_at, finished_at
    FROM tasks WHERE id = $1::uuid) t
)sql";

const char* const kAttemptsSql = R"sql(
SELECT coalesce(json_agg(a ORDER BY a.attempt), '[]'::json)::text FROM (
    SELECT attempt, pid, host, worker_id, cgroup_mode, started_at, ended_at,
           exit_code, signal, core_dumped, oom_kills, peak_memory_bytes,
           round(peak_memory_bytes / 1048576.0, 1) AS peak_memory_mb,
           cpu_user_seconds, cpu_sys_seconds,
           cpu_user_seconds + cpu_sys_seconds AS cpu_seconds,
           coalesce(wall_seconds,
                    extract(epoch FROM coalesce(ended_at, now()) - started_at)) AS wall_seconds,
           outcome, error, stderr_tail
    FROM task_attempts WHERE task_id = $1::uuid) a
)sql";

void add_signal_names(json& attempts) {
    for (auto& a : attempts) {
        const auto& sig = a["signal"];
        a["signal_name"] = sig.is_number_integer() && sig.get<int>() > 0
                               ? json(signal_name(sig.get<int>()))
                               : json(nullptr);
    }
}

void print_attempt_text(const json& a, bool with_stderr) {
    std::string cpu = "-";
    if (a["cpu_user_seconds"].is_number() && a["cpu_sys_seconds"].is_number()) {
        cpu = fmt::format("{:.2f} s ({:.2f} user + {:.2f} sys)", a["cpu_seconds"].get<double>(),
                          a["cpu_user_seconds"].get<double>(), a["cpu_sys_seconds"].get<double>());
    }
    std::string pid = a["pid"].is_number() ? std::to_string(a["pid"].get<long>()) : "-";
    std::string oom = a["oom_kills"].is_number() ? std::to_string(a["oom_kills"].get<long>()) : "-";

    fmt::print("  attempt {}  {}  pid {} on {}  cgroup {}\n", a["attempt"].get<int>(),
               text_or(a["outcome"], a["ended_at"].is_null() ? "running" : "-"), pid,
               text_or(a["host"]), text_or(a["cgroup_mode"]));
    fmt::print("    started {}  ended {}  wall {}\n", format_timestamp(a["started_at"]),
               format_timestamp(a["ended_at"]), format_seconds(a["wall_seconds"]));
    fmt::print("    {}  oom kills {}  peak memory {}  cpu {}\n", describe_exit(a), oom,
               format_megabytes(a["peak_memory_bytes"]), cpu);
    if (a["error"].is_string())
        fmt::print("    error: {}\n", a["error"].get<std::string>());
    if (with_stderr && a["stderr_tail"].is_string()) {
        fmt::print("    stderr (last lines):\n");
        std::istringstream lines(a["stderr_tail"].get<std::string>());
        for (std::string line; std::getline(lines, line);) fmt::print("      | {}\n", line);
    }
}

void print_task_text(const json& t, const json& attempts, bool with_stderr) {
    std::string status = t["status"].get<std::string>();
    if (t["error_type"].is_string() && t["error_type"] != t["status"]) {
        status += " (" + t["error_type"].get<std::string>() + ")";
    }
    if (t["cancel_requested"].get<bool>() && t["status"] == "inprogress") {
        status += ", cancel requested";
    }
    std::string timeout = t["timeout_seconds"].is_number() ? format_seconds(t["timeout_seconds"])
                                                           : "supervisor default";

    fmt::print("task      {}\n", t["id"].get<std::string>());
    fmt::print("status    {}\n", status);
    if (t["error"].is_string())
        fmt::print("error     {}\n", t["error"].get<std::string>());
    fmt::print("progress  {}  {}\n", progress_bar(t["progress"].get<double>(), 20),
               text_or(t["stage"], ""));
    fmt::print("output    {}\n", text_or(t["output"]));
    fmt::print("request   output_filename {}, {} scene(s)\n", text_or(t["output_filename"]),
               t["scenes"].is_number() ? std::to_string(t["scenes"].get<int>()) : "?");
    fmt::print("attempts  {} of {}, timeout {}\n", t["attempt_count"].get<int>(),
               t["max_attempts"].get<int>(), timeout);
    fmt::print("created   {}\n", format_timestamp(t["created_at"]));
    fmt::print("started   {}\n", format_timestamp(t["started_at"]));
    fmt::print("finished  {}\n", format_timestamp(t["finished_at"]));
    if (t["status"] == "pending") {
        fmt::print("not before  {}\n", format_timestamp(t["not_before"]));
    }
    for (const auto& a : attempts) print_attempt_text(a, with_stderr);
}

std::string status_of(pqxx::transaction_base& tx, const std::string& id) {
    auto r = tx.exec_params("SELECT status FROM tasks WHERE id = $1::uuid", id);
    return r.empty() ? std::string() : r[0][0].as<std::string>();
}

}  // namespace

std::string resolve_task_id(pqxx::transaction_base& tx, const std::string& arg) {
    std::string id;
    for (char c : arg) id += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    bool well_formed = id.size() >= 4 && id.size() <= 36;
    for (char c : id)
        well_formed = well_formed && (std::isxdigit(static_cast<unsigned char>(c)) || c == '-');
    if (!well_formed) {
        throw CommandError(ExitCode::Usage,
                           fmt::format("'{}' is not a task id (a UUID, or at least its first "
                                       "4 characters)",
                                       truncate(arg, 40)));
    }
    if (is_uuid_text(id)) {
        if (status_of(tx, id).empty())
            throw CommandError(ExitCode::NotFound, "no task " + id);
        return id;
    }
    auto r = tx.exec_params("SELECT id::text FROM tasks WHERE id::text LIKE $1 || '%' LIMIT 2", id);
    if (r.empty())
        throw CommandError(ExitCode::NotFound, "no task with an id starting " + id);
    if (r.size() > 1) {
        throw CommandError(ExitCode::NotFound,
                           "more than one task has an id starting " + id + "; give more of it");
    }
    return r[0][0].as<std::string>();
}

void enqueue(const GlobalOptions& g, const EnqueueArgs& args) {
    json body = parse_body(read_input(args.file), args.file);
    if (args.validate) {
        validate(body);
    } else if (!body.is_object()) {
        throw CommandError(ExitCode::Usage, "invalid request: must be a JSON object");
    }
    if (args.max_attempts && *args.max_attempts < 1) {
        throw CommandError(ExitCode::Usage, "--max-attempts must be at least 1");
    }
    if (args.timeout_seconds && !(*args.timeout_seconds > 0)) {
        throw CommandError(ExitCode::Usage, "--timeout must be a positive number of seconds");
    }

    Database db(g);
    pqxx::work tx(db.conn());
    // Empty parameters stand for "use the column default"; libpqxx 6 has no
    // portable way to pass a typed NULL.
    std::string attempts = args.max_attempts ? std::to_string(*args.max_attempts) : "";
    std::string timeout = args.timeout_seconds ? fmt::format("{}", *args.timeout_seconds) : "";
    auto row = tx.exec_params1(
        "INSERT INTO tasks (request, max_attempts, timeout_seconds) "
        "VALUES ($1::jsonb, coalesce(NULLIF($2, '')::integer, 3), NULLIF($3, '')::float8) "
        "RETURNING id::text, max_attempts, timeout_seconds",
        body.dump(), attempts, timeout);
    tx.commit();

    std::string id = row[0].as<std::string>();
    if (g.json) {
        print_json(
            {{"id", id},
             {"status", "pending"},
             {"max_attempts", row[1].as<int>()},
             {"timeout_seconds", row[2].is_null() ? json(nullptr) : json(row[2].as<double>())}});
    } else {
        std::cout << id << '\n';
    }
}

void show(const GlobalOptions& g, const ShowArgs& args) {
    Database db(g);
    pqxx::read_transaction tx(db.conn());
    std::string id = resolve_task_id(tx, args.task);
    json task = query_json(tx, kTaskSql, id);
    if (task.is_null())
        throw CommandError(ExitCode::NotFound, "no task " + id);
    json attempts = query_json(tx, kAttemptsSql, id);
    add_signal_names(attempts);

    if (g.json) {
        if (!args.stderr_tail) {
            for (auto& a : attempts) a.erase("stderr_tail");
        }
        task["attempts"] = attempts;
        print_json(task);
    } else {
        print_task_text(task, attempts, args.stderr_tail);
    }
}

void list(const GlobalOptions& g, const ListArgs& args) {
    if (args.limit < 1)
        throw CommandError(ExitCode::Usage, "--limit must be at least 1");
    Database db(g);
    pqxx::read_transaction tx(db.conn());
    auto r = tx.exec_params(R"sql(
SELECT coalesce(json_agg(t ORDER BY t.created_at DESC, t.id), '[]'::json)::text FROM (
    SELECT id, status, progress, stage, error_type, error,
           attempts AS attempt_count, max_attempts,
           request->>'output_filename' AS output_filename,
           result->>'output' AS output,
           created_at, updated_at, started_at, finished_at
    FROM tasks WHERE ($1 = '' OR status = $1)
    ORDER BY created_at DESC, id LIMIT $2) t
)sql",
                            args.status, args.limit);
    json tasks = json::parse(r[0][0].c_str());

    if (g.json) {
        print_json(tasks);
        return;
    }
    if (tasks.empty()) {
        std::cout << (args.status.empty() ? "no tasks\n" : "no " + args.status + " tasks\n");
        return;
    }
    fmt::print("{:<36}  {:<10}  {:>4}  {:>5}  {:<19}  {}\n", "ID", "STATUS", "PROG", "TRIES",
               "CREATED", "OUTPUT / ERROR / STAGE");
    for (const auto& t : tasks) {
        std::string detail;
        if (t["error"].is_string()) {
            detail = text_or(t["error_type"], "error") + ": " + t["error"].get<std::string>();
        } else if (t["output"].is_string()) {
            detail = t["output"].get<std::string>();
        } else {
            detail = text_or(t["stage"], "");
        }
        fmt::print("{:<36}  {:<10}  {:>3.0f}%  {:>2}/{:<2}  {:<19}  {}\n",
                   t["id"].get<std::string>(), t["status"].get<std::string>(),
                   t["progress"].get<double>(), t["attempt_count"].get<int>(),
                   t["max_attempts"].get<int>(), format_timestamp(t["created_at"]),
                   truncate(detail, 60));
    }
}

void cancel(const GlobalOptions& g, const std::string& task) {
    Database db(g);
    pqxx::work tx(db.conn());
    std::string id = resolve_task_id(tx, task);

    // The row lock keeps a supervisor from claiming or finishing the task
    // between reading its state and changing it.
    auto row = tx.exec_params1(
        "SELECT status, cancel_requested FROM tasks WHERE id = $1::uuid FOR UPDATE", id);
    std::string status = row[0].as<std::string>();
    bool already = row[1].as<bool>();

    std::string outcome;
    std::string message;
    if (status == "pending") {
        // A pending task has no process: it becomes cancelled here and now.
        tx.exec_params0(
            "UPDATE tasks SET status = 'cancelled', error_type = 'cancelled', "
            "error = 'Cancelled by request', cancel_requested = true, "
            "finished_at = now(), updated_at = now() WHERE id = $1::uuid",
            id);
        outcome = "cancelled";
        message = "cancelled " + id;
    } else if (status == "inprogress") {
        // A running task is stopped by the supervisor that owns it; the trigger
        // on cancel_requested wakes it through pv_cancel.
        tx.exec_params0(
            "UPDATE tasks SET cancel_requested = true, updated_at = now() WHERE id = $1::uuid", id);
        outcome = "cancel_requested";
        message = "cancel requested for " + id + "; its supervisor will stop it";
        if (already)
            message += " (it had been requested already)";
    } else {
        throw CommandError(ExitCode::NotFound,
                           fmt::format("task {} is already {}; nothing to cancel", id, status));
    }
    tx.commit();

    if (g.json) {
        print_json({{"id", id}, {"result", outcome}});
    } else {
        std::cout << message << '\n';
    }
}

void retry(const GlobalOptions& g, const std::string& task) {
    Database db(g);
    pqxx::work tx(db.conn());
    std::string id = resolve_task_id(tx, task);
    auto r = tx.exec_params(
        "UPDATE tasks SET status = 'pending', error = NULL, error_type = NULL, result = NULL, "
        "cancel_requested = false, not_before = now(), progress = 0, stage = NULL, "
        "worker_id = NULL, finished_at = NULL, updated_at = now(), "
        "max_attempts = GREATEST(max_attempts, attempts + 1) "
        "WHERE id = $1::uuid AND status IN ('failed', 'cancelled') "
        "RETURNING attempts, max_attempts",
        id);
    if (r.empty()) {
        std::string status = status_of(tx, id);
        throw CommandError(ExitCode::NotFound,
                           fmt::format("task {} is {}; only failed or cancelled tasks can be "
                                       "retried",
                                       id, status));
    }
    tx.commit();

    int attempts = r[0][0].as<int>();
    int max_attempts = r[0][1].as<int>();
    if (g.json) {
        print_json({{"id", id},
                    {"status", "pending"},
                    {"attempt_count", attempts},
                    {"max_attempts", max_attempts}});
    } else {
        fmt::print("{} is pending again (attempts so far {}, allowed {})\n", id, attempts,
                   max_attempts);
    }
}

void migrate(const GlobalOptions& g) {
    Database db(g);
    int applied = pv::run_migrations(db.conn());
    int version = pv::latest_schema_version();
    if (g.json) {
        print_json({{"applied", applied}, {"schema_version", version}});
    } else if (applied == 0) {
        fmt::print("schema is up to date (version {})\n", version);
    } else {
        fmt::print("applied {} migration(s); schema version {}\n", applied, version);
    }
}

}  // namespace pv::ctl

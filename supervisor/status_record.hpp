// SPDX-License-Identifier: MIT
// The status writes that end or advance a task attempt, as plain records that
// round-trip through JSON (so the journal can keep them across a database
// outage) and apply with fenced SQL: every write names the task, the attempt
// number and the supervisor (worker_id) it belongs to, so a repeated or late
// write changes nothing once the task has moved on.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include "sql_text.hpp"

namespace pv {

using TimePoint = std::chrono::system_clock::time_point;

/// "2026-12-03T16:25:22.123456Z" (UTC, microseconds). PostgreSQL parses it as timestamptz.
std::string to_iso8601(TimePoint t);

/// Parses what to_iso8601 writes (fraction optional, "Z" required);
/// throws std::invalid_argument otherwise.
TimePoint parse_iso8601(std::string_view text);

/// What the task row becomes when an attempt ends.
enum class FinalStatus { Completed, Failed, Cancelled, Retry };

/// The tasks.status word: "completed", "failed", "cancelled", "pending" (Retry).
const char* to_status_word(FinalStatus status);

/// Inverse of to_status_word; throws std::invalid_argument for any other word.
FinalStatus parse_status_word(std::string_view word);

/// Everything recorded when an attempt ends. Empty strings are stored as NULL.
struct FinishRecord {
    // The fence: which attempt of which task, run by which supervisor.
    std::string task_id;
    int attempt = 0;
    std::string worker_id;

    // task_attempts columns.
    std::optional<int> pid;
    std::optional<int> exit_code;
    std::optional<int> signal;
    bool core_dumped = false;
    int oom_kills = 0;
    std::optional<std::uint64_t> peak_memory_bytes;
    std::optional<double> cpu_user_seconds;
    std::optional<double> cpu_sys_seconds;
    std::optional<double> wall_seconds;
    std::string outcome;  // "completed" or an error_type word
    std::string stderr_tail;

    // tasks columns (error also goes to the attempt row).
    std::string error;       // human text; "" on success
    std::string error_type;  // stable word; "" on success
    std::optional<nlohmann::json> result;
    FinalStatus status = FinalStatus::Failed;
    std::optional<TimePoint> not_before;  // Retry only; absent means ended_at

    /// When the child died (captured at reap time, never at replay time).
    TimePoint ended_at{};

    bool operator==(const FinishRecord&) const = default;
};

/// A progress report from a running child (tasks.progress is a percentage).
struct ProgressRecord {
    std::string task_id;
    int attempt = 0;
    std::string worker_id;
    double percent = 0;  // 0..100
    std::string stage;   // "" keeps the current stage

    bool operator==(const ProgressRecord&) const = default;
};

/// A supervisor's own clean stop (workers.stopped_at).
struct WorkerStoppedRecord {
    std::string worker_id;
    std::optional<TimePoint> at;  // absent: the time it is applied

    bool operator==(const WorkerStoppedRecord&) const = default;
};

/// Journal entry kinds ("kind" field of the JSON form). "finish" is accepted as
/// another name of "finish_attempt"; "heartbeat" entries are accepted and ignored.
inline constexpr std::string_view kFinishAttempt = "finish_attempt";
inline constexpr std::string_view kProgress = "progress";
inline constexpr std::string_view kWorkerStopped = "worker_stopped";

/// JSON forms, tagged with "kind", with the column names as keys. The readers
/// also accept the TaskStore DbWrite shape: {"kind": K, "args": {...}} is read
/// as the args plus the kind, "result" may be a string holding JSON text, and
/// a finish without "not_before" but with "retry_delay" (seconds) retries at
/// ended_at + retry_delay. A finish without "ended_at" uses "journaled_at"
/// (stamped by Journal::append). from_json throws std::invalid_argument on a
/// missing or mistyped field, a wrong kind or a bad timestamp.
nlohmann::json to_json(const FinishRecord& rec);
nlohmann::json to_json(const ProgressRecord& rec);
nlohmann::json to_json(const WorkerStoppedRecord& rec);
FinishRecord finish_from_json(const nlohmann::json& j);
ProgressRecord progress_from_json(const nlohmann::json& j);
WorkerStoppedRecord worker_stopped_from_json(const nlohmann::json& j);

/// Which rows a fenced write changed. Nothing changed means the write was stale
/// (the task moved on) or had already been applied.
struct ApplyResult {
    bool attempt_row = false;  // task_attempts row closed (or created)
    bool task_row = false;     // tasks (or workers) row updated

    bool applied() const { return attempt_row || task_row; }
};

/// Ends an attempt in one statement whose two updates are fenced, so applying the
/// same record twice, or a record from a supervisor presumed dead, changes nothing:
///   UPDATE tasks ... WHERE id = task_id AND attempts = attempt
///                    AND status = 'inprogress' AND worker_id = worker_id
///   UPDATE task_attempts ... WHERE task_id, attempt, worker_id match AND ended_at IS NULL
/// If the task row was updated but its attempt row is missing, the attempt row is
/// inserted (host taken from the workers row) so every death has a row.
/// Completed sets progress 100, result, error NULL; Retry sets status 'pending',
/// worker_id NULL, progress 0, stage NULL, not_before (or ended_at); the others
/// set finished_at = ended_at. error/error_type/result are written as given.
/// Runs in a savepoint: if the database refuses the payload (data exception,
/// e.g. a NUL in the result JSON), the end is recorded again without result and
/// stderr_tail (stderr_tail then names the refusal), so the task still leaves
/// 'inprogress'.
/// Throws pqxx exceptions; does not commit.
ApplyResult apply_finish(pqxx::work& tx, const FinishRecord& rec);

/// The finish of several attempts as parts of one statement, for a caller that
/// runs more in it (the claim that follows): "WITH r AS (...), t AS (...),
/// a AS (...), i AS (...), f AS (...)" over one parameter, the records as
/// finish_attempts_param() writes them; f's one column `answer` is read by
/// parse_finish_answer(). Each record is fenced exactly as apply_finish says, and
/// at most one record per attempt may be in a statement.
const char* finish_attempts_ctes();
std::string finish_attempts_param(const std::vector<FinishRecord>& records);
/// One ApplyResult per record, in the records' order.
std::vector<ApplyResult> parse_finish_answer(const std::string& answer);

/// Sets progress and stage, fenced like apply_finish and only ever forward
/// (AND progress <= new value), so an old report never overwrites a newer one.
ApplyResult apply_progress(pqxx::transaction_base& tx, const ProgressRecord& rec);

/// Sets workers.stopped_at (and heartbeat_at) where stopped_at is still NULL.
ApplyResult apply_worker_stopped(pqxx::transaction_base& tx, const WorkerStoppedRecord& rec);

/// Dispatches a JSON entry on its "kind". Throws std::invalid_argument for an
/// unknown kind or malformed entry.
ApplyResult apply_entry(pqxx::work& tx, const nlohmann::json& entry);

/// apply_entry without the savepoint around a finish, for batches of writes in
/// one transaction (or one autocommitted statement): a payload the database
/// refuses throws instead of being trimmed, and the caller applies the batch
/// again one entry at a time with apply_entry.
ApplyResult apply_entry_unguarded(pqxx::transaction_base& tx, const nlohmann::json& entry);

}  // namespace pv

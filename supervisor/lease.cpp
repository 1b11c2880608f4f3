// SPDX-License-Identifier: MIT
#include "lease.hpp"

#include <cctype>
#include <charconv>
#include <cstdio>

#include "error_type.hpp"
#include "log.hpp"
#include "sql_text.hpp"
#include "uuid_text.hpp"

namespace pv {

namespace {

// A task found in progress under a supervisor presumed dead, locked FOR UPDATE.
struct OrphanTask {
    std::string task_id;
    int attempt = 0;
    int max_attempts = 1;
    bool cancel_requested = false;
    std::optional<std::string> worker_id;
    std::string host;  // of the lost supervisor, for an attempt row that must be created
};

// How the lost attempt is recorded.
struct LossVerdict {
    std::string_view outcome;
    std::string error;
    bool retryable = false;
    std::optional<int> oom_kills;
    std::optional<std::uint64_t> peak_bytes;
};

using sql::arg;
using sql::Text;
using sql::text_of;

OrphanTask lost_task_from_row(const pqxx::row& row) {
    OrphanTask t;
    t.task_id = row["id"].as<std::string>();
    t.attempt = row["attempts"].as<int>();
    t.max_attempts = row["max_attempts"].as<int>();
    t.cancel_requested = row["cancel_requested"].as<bool>();
    if (!row["worker_id"].is_null())
        t.worker_id = row["worker_id"].as<std::string>();
    t.host = row["host"].is_null() ? "unknown" : row["host"].as<std::string>();
    return t;
}

// Closes the lost attempt's row (creating it if the claim left none).
void close_lost_attempt(pqxx::work& tx, const OrphanTask& t, const LossVerdict& v) {
    Text oom = text_of(v.oom_kills), peak = text_of(v.peak_bytes);
    std::string outcome(v.outcome);
    auto res = tx.exec_params(
        "UPDATE task_attempts SET ended_at = now(), outcome = $4, error = $5,"
        " wall_seconds = COALESCE(wall_seconds, EXTRACT(EPOCH FROM now() - started_at)),"
        " oom_kills = COALESCE($6::integer, oom_kills),"
        " peak_memory_bytes = COALESCE($7::bigint, peak_memory_bytes)"
        " WHERE task_id = $1::uuid AND attempt = $2::integer"
        " AND worker_id IS NOT DISTINCT FROM $3::uuid AND ended_at IS NULL",
        t.task_id, t.attempt, arg(t.worker_id), outcome, v.error, arg(oom), arg(peak));
    if (res.affected_rows() > 0)
        return;
    tx.exec_params(
        "INSERT INTO task_attempts (task_id, attempt, worker_id, host, started_at, ended_at,"
        " outcome, error, oom_kills, peak_memory_bytes)"
        " SELECT t.id, $2::integer, $3::uuid, $8, COALESCE(t.started_at, now()), now(),"
        "  $4, $5, $6::integer, $7::bigint"
        " FROM tasks t WHERE t.id = $1::uuid"
        " ON CONFLICT (task_id, attempt) DO NOTHING",
        t.task_id, t.attempt, arg(t.worker_id), outcome, v.error, arg(oom), arg(peak), t.host);
}

// Records the loss and moves the task on; true if the (fenced) task row changed.
bool resolve_lost(pqxx::work& tx, const OrphanTask& t, const LossVerdict& v,
                  const RequeueDelay& requeue_delay) {
    close_lost_attempt(tx, t, v);

    std::string status = "failed";
    std::string type_word(v.outcome);
    if (t.cancel_requested) {
        status = "cancelled";
        type_word = error_type::kCancelled;
    } else if (v.retryable && t.attempt < t.max_attempts) {
        status = "pending";
    }
    double delay = status == "pending" && requeue_delay ? requeue_delay(t.attempt) : 0.0;
    auto res = tx.exec_params(
        "UPDATE tasks SET status = $4::text, error = $5, error_type = $6,"
        " progress = CASE WHEN $4::text = 'pending' THEN 0 ELSE progress END,"
        " stage = CASE WHEN $4::text = 'pending' THEN NULL ELSE stage END,"
        " worker_id = CASE WHEN $4::text = 'pending' THEN NULL ELSE worker_id END,"
        " not_before = CASE WHEN $4::text = 'pending'"
        "  THEN now() + make_interval(secs => $7::float8) ELSE not_before END,"
        " finished_at = CASE WHEN $4::text = 'pending' THEN NULL ELSE now() END,"
        " updated_at = now()"
        " WHERE id = $1::uuid AND attempts = $2::integer AND status = 'inprogress'"
        " AND worker_id IS NOT DISTINCT FROM $3::uuid",
        t.task_id, t.attempt, arg(t.worker_id), status, v.error, type_word, delay);
    bool changed = res.affected_rows() > 0;
    if (changed) {
        log::warn("Task recovered from a lost supervisor", {{"task_id", t.task_id},
                                                            {"attempt", t.attempt},
                                                            {"status", status},
                                                            {"error_type", type_word},
                                                            {"error_message", v.error}});
    }
    return changed;
}

}  // namespace

std::optional<TaskKey> parse_task_cgroup_name(std::string_view name) {
    constexpr std::string_view kPrefix = "task-";
    if (name.substr(0, kPrefix.size()) != kPrefix)
        return std::nullopt;
    name.remove_prefix(kPrefix.size());
    auto dash = name.rfind('-');
    if (dash == std::string_view::npos)
        return std::nullopt;
    std::string_view id = name.substr(0, dash), number = name.substr(dash + 1);
    if (!is_uuid_text(id) || number.empty())
        return std::nullopt;
    TaskKey key;
    auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), key.attempt);
    if (ec != std::errc{} || end != number.data() + number.size() || key.attempt < 1) {
        return std::nullopt;
    }
    key.task_id.reserve(id.size());
    for (char c : id) key.task_id += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return key;
}

std::string lease_expired_text(std::string_view host, int pid, std::string_view heartbeat_iso) {
    return "supervisor " + std::string(host) + "/" + std::to_string(pid) +
           " stopped heartbeating at " + std::string(heartbeat_iso);
}

std::string supervisor_restarted_text(std::string_view host, int pid) {
    return "supervisor " + std::string(host) + "/" + std::to_string(pid) + " restarted";
}

std::string memory_exceeded_text(std::optional<std::uint64_t> peak_bytes) {
    if (!peak_bytes)
        return "Memory limit exceeded: peak unknown";
    char buf[64];
    std::snprintf(buf, sizeof buf, "Memory limit exceeded: %.1fMB",
                  static_cast<double>(*peak_bytes) / 1048576.0);
    return buf;
}

int recover_expired(pqxx::work& tx, std::chrono::seconds lease, const std::string& my_worker_id,
                    const RequeueDelay& requeue_delay) {
    auto rows = tx.exec_params(
        "SELECT t.id::text AS id, t.attempts, t.max_attempts, t.cancel_requested,"
        " t.worker_id::text AS worker_id, w.host, w.pid,"
        " to_char(w.heartbeat_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
        "  AS heartbeat,"
        " to_char(t.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
        "  AS updated"
        " FROM tasks t LEFT JOIN workers w ON w.id = t.worker_id"
        " WHERE t.status = 'inprogress'"
        " AND (t.worker_id IS NULL OR t.worker_id::text <> $1)"
        " AND CASE WHEN t.worker_id IS NULL"
        "      THEN t.updated_at < now() - make_interval(secs => $2::float8)"
        "      ELSE w.stopped_at IS NOT NULL"
        "        OR w.heartbeat_at < now() - make_interval(secs => $2::float8) END"
        " ORDER BY t.id"
        " FOR UPDATE OF t SKIP LOCKED",
        my_worker_id, static_cast<double>(lease.count()));

    int recovered = 0;
    for (const auto& row : rows) {
        OrphanTask task = lost_task_from_row(row);
        LossVerdict verdict{error_type::kWorkerLost, "", true, {}, {}};
        if (task.worker_id) {
            verdict.error = lease_expired_text(task.host, row["pid"].as<int>(),
                                               row["heartbeat"].as<std::string>());
        } else {
            verdict.error = "task was in progress without a supervisor since " +
                            row["updated"].as<std::string>();
        }
        if (resolve_lost(tx, task, verdict, requeue_delay))
            ++recovered;
    }
    return recovered;
}

std::vector<std::string> recover_own_previous_life(pqxx::work& tx, const std::string& host,
                                                   const std::string& instance,
                                                   const std::string& my_worker_id,
                                                   const std::map<TaskKey, CgroupStats>& evidence,
                                                   const std::set<std::string>& retry_on,
                                                   const RequeueDelay& requeue_delay) {
    auto rows = tx.exec_params(
        "SELECT t.id::text AS id, t.attempts, t.max_attempts, t.cancel_requested,"
        " t.worker_id::text AS worker_id, w.host, w.pid"
        " FROM tasks t JOIN workers w ON w.id = t.worker_id"
        " WHERE t.status = 'inprogress' AND w.host = $1 AND w.instance = $2"
        " AND w.id::text <> $3"
        " ORDER BY t.id"
        " FOR UPDATE OF t SKIP LOCKED",
        host, instance, my_worker_id);

    bool memory_retries = retry_on.count(std::string(error_type::kMemoryLimit)) > 0;
    std::vector<std::string> resolved;
    for (const auto& row : rows) {
        OrphanTask task = lost_task_from_row(row);
        LossVerdict verdict{error_type::kWorkerLost,
                            supervisor_restarted_text(task.host, row["pid"].as<int>()),
                            true,
                            {},
                            {}};
        auto it = evidence.find(TaskKey{task.task_id, task.attempt});
        if (it != evidence.end()) {
            const CgroupStats& stats = it->second;
            verdict.oom_kills = stats.oom_kills;
            verdict.peak_bytes = stats.peak_bytes;
            if (stats.oom_kills > 0 || stats.oomd_killed) {
                verdict.outcome = error_type::kMemoryLimit;
                verdict.error = memory_exceeded_text(stats.peak_bytes);
                verdict.retryable = memory_retries;
            }
        }
        if (resolve_lost(tx, task, verdict, requeue_delay))
            resolved.push_back(task.task_id);
    }

    tx.exec_params(
        "UPDATE workers SET stopped_at = COALESCE(stopped_at, now())"
        " WHERE host = $1 AND instance = $2 AND id::text <> $3 AND stopped_at IS NULL",
        host, instance, my_worker_id);
    return resolved;
}

int recover_untracked(pqxx::work& tx, const std::string& my_worker_id,
                      const std::set<TaskKey>& running, std::chrono::seconds grace,
                      const RequeueDelay& requeue_delay) {
    auto rows = tx.exec_params(
        "SELECT t.id::text AS id, t.attempts, t.max_attempts, t.cancel_requested,"
        " t.worker_id::text AS worker_id, w.host, w.pid"
        " FROM tasks t JOIN workers w ON w.id = t.worker_id"
        " WHERE t.status = 'inprogress' AND w.id::text = $1"
        " AND COALESCE(t.started_at, t.updated_at) < now() - make_interval(secs => $2::float8)"
        " ORDER BY t.id"
        " FOR UPDATE OF t SKIP LOCKED",
        my_worker_id, static_cast<double>(grace.count()));

    int resolved = 0;
    for (const auto& row : rows) {
        OrphanTask task = lost_task_from_row(row);
        if (running.count(TaskKey{task.task_id, task.attempt}) > 0)
            continue;
        LossVerdict verdict{error_type::kWorkerLost,
                            "supervisor " + task.host + "/" + std::to_string(row["pid"].as<int>()) +
                                " lost track of the attempt",
                            true,
                            {},
                            {}};
        if (resolve_lost(tx, task, verdict, requeue_delay))
            ++resolved;
    }
    return resolved;
}

std::set<TaskKey> lost_ownership(pqxx::work& tx, const std::string& my_worker_id,
                                 const std::set<TaskKey>& running) {
    std::set<TaskKey> lost;
    for (const auto& key : running) {
        auto rows = tx.exec_params(
            "SELECT 1 FROM tasks WHERE id::text = $1 AND attempts = $2::integer"
            " AND status = 'inprogress' AND worker_id::text = $3",
            key.task_id, key.attempt, my_worker_id);
        if (rows.empty())
            lost.insert(key);
    }
    return lost;
}

}  // namespace pv

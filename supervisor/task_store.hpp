// SPDX-License-Identifier: MIT
// Everything the supervisor says to PostgreSQL (libpqxx): claiming tasks, the
// worker row and its heartbeat, LISTEN/NOTIFY, and a queue of pending writes that
// are retried from the event loop so a database outage never blocks reaping.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cgroup.hpp"
#include "child_process.hpp"
#include "journal.hpp"
#include "lease.hpp"
#include "status_record.hpp"

namespace pv {

struct WorkerInfo {
    std::string id;  // uuid
    std::string host;
    int pid = 0;
    std::string version;
    std::string cgroup_mode;
    int max_children = 0;
    std::string instance;  // --instance: several supervisors on one host
};

/// One queued database write. Plain data (a kind word and JSON arguments), so a
/// durable journal can store and replay it as one JSON line.
struct DbWrite {
    std::string kind;     // "progress", "finish", "heartbeat", "worker_stopped",
                          // "attempt_started"
    nlohmann::json args;  // the statement's arguments
    int max_tries = 3;    // tries before it is reported as failing (it stays queued)
    int failures = 0;
    double next_try = 0;  // monotonic seconds
};

nlohmann::json to_json(const DbWrite& w);
DbWrite db_write_from_json(const nlohmann::json& j);

struct Notifications {
    bool new_tasks = false;
    std::vector<std::string> cancels;  // task ids
};

class TaskStore {
public:
    TaskStore(std::string database_url, int retry_attempts, double retry_delay);
    ~TaskStore();

    /// Connects when not connected (LISTENs on pv_tasks and pv_cancel). Returns false
    /// and logs when the database cannot be reached. Never throws.
    bool ensure_connected();
    bool connected() const;
    /// The libpq socket for epoll, or -1.
    int socket() const;

    /// Runs the schema migrations; throws on failure.
    int migrate();

    /// Inserts the workers row; throws on failure.
    void register_worker(const WorkerInfo& worker);

    /// Claims up to `slots` runnable tasks (FOR UPDATE SKIP LOCKED) and inserts their
    /// attempt rows in the same transaction. Returns none on database errors (logged).
    std::vector<TaskInfo> claim(int slots, const WorkerInfo& worker, double default_timeout);

    /// flush(), then claim(); every due finish, when no write has failed, goes in
    /// the claim's statement instead (one round trip for all, committed together).
    /// Falls back to the two steps on any error.
    std::vector<TaskInfo> flush_and_claim(int slots, const WorkerInfo& worker,
                                          double default_timeout);

    /// Consumes notifications that arrived on the socket.
    Notifications take_notifications();

    /// Ids of our running tasks whose cancellation was requested (poll fallback).
    std::vector<std::string> cancel_requested(const std::string& worker_id);

    /// Seconds until the earliest backoff-delayed pending task becomes runnable.
    std::optional<double> seconds_until_next_pending();

    /// Number of pending tasks (runnable now or later); nullopt on errors.
    std::optional<long> pending_count();

    /// Recovers tasks of supervisors presumed dead (lease expired or stopped):
    /// pv::recover_expired. Logs and returns 0 on database errors.
    int recover_expired_workers(const std::string& own_worker_id, double lease_seconds,
                                const RequeueDelay& requeue_delay);

    /// Startup: resolves the tasks left in progress by earlier lives of this host and
    /// instance (pv::recover_own_previous_life), using the leftover cgroups' counters.
    /// Returns the ids of the tasks resolved. Throws on database errors.
    std::vector<std::string> recover_previous_life(const WorkerInfo& worker,
                                                   const std::map<TaskKey, CgroupStats>& evidence,
                                                   const std::set<std::string>& retry_on,
                                                   const RequeueDelay& requeue_delay);

    /// Resolves this supervisor's attempts that the database has in progress but
    /// neither `running` nor a queued final write accounts for, once claimed more
    /// than `grace` ago (pv::recover_untracked). Skipped while the journal holds
    /// entries (their tasks are still in progress in the database). Logs and
    /// returns 0 on database errors.
    int recover_untracked_attempts(const std::string& own_worker_id, std::set<TaskKey> running,
                                   double grace_seconds, const RequeueDelay& requeue_delay);

    /// True when the attempt's row is still open (ended_at NULL): some supervisor may
    /// still be running it. Throws on database errors.
    bool attempt_open(const std::string& task_id, int attempt);

    /// Writes that used up their retries go to `journal` (durable) instead of
    /// staying queued; it is replayed, in order, before any newer write.
    void attach_journal(Journal* journal) { m_journal = journal; }

    /// Replays the journal now; false when the database did not answer.
    bool replay_journal_now();

    /// Queues a write, tried by the first flush() at least `delay` seconds from now.
    /// A finish supersedes a still queued attempt_started of its attempt (the
    /// finish repeats the pid).
    void enqueue(DbWrite write, double delay = 0);

    /// Tries every due queued write. Returns the seconds until the next retry is due,
    /// or nullopt when the queue is empty.
    std::optional<double> flush();

    std::size_t queued() const { return m_queue.size(); }
    /// True when every queued write has used up its tries (and could not be journaled).
    bool all_writes_exhausted() const;

    /// Called with (old socket, new socket) right before a connection closes and
    /// right after one opens, so the event loop can follow the libpq socket.
    std::function<void(int, int)> on_socket_change;

private:
    /// Runs one recovery in its own transaction; logs `done` with the count when
    /// it resolved anything, and on errors logs `what` and returns 0.
    int run_recovery(const char* what, const char* done,
                     const std::function<int(pqxx::work&)>& recover);

    struct Conn;
    void disconnect() noexcept;
    /// Applies every due write in one transaction (one statement when there is
    /// just one) and removes them from the queue; on any failure leaves the queue
    /// as it was for the one-at-a-time pass.
    void flush_batch(double now);
    /// Takes the finishes flush_and_claim() can send with its claim out of the queue.
    std::vector<DbWrite> take_finishes_for_claim(int slots);
    void apply(const DbWrite& write);
    /// Runs one write's statement; `guarded` (the same transaction) puts a finish
    /// in a savepoint that trims a refused payload.
    ApplyResult run_write(pqxx::transaction_base& tx, const DbWrite& write, pqxx::work* guarded);
    void report_applied(const DbWrite& write, const ApplyResult& applied);
    void note_error(const char* operation, const std::exception& e,
                    const nlohmann::json& fields = nlohmann::json::object());

    std::string m_conninfo;
    int m_retry_attempts;
    double m_retry_delay;
    std::unique_ptr<Conn> m_conn;
    Notifications m_pending_notes;
    std::deque<DbWrite> m_queue;
    Journal* m_journal = nullptr;
    double m_next_connect = 0;
    bool m_connected_once = false;
    double m_reconnected_at = -1e9;  // monotonic time of the last reconnect
    double m_last_connect_error_log = -1e9;
};

/// Adds connect_timeout=5 to a libpq URI or keyword conninfo.
std::string with_connect_timeout(const std::string& url);

}  // namespace pv

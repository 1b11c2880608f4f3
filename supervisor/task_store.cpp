// SPDX-License-Identifier: MIT
#include "task_store.hpp"

#include <fmt/format.h>
#include <pqxx/pqxx>

#include <algorithm>

#include "event_loop.hpp"
#include "log.hpp"
#include "migrations.hpp"
#include "sql_text.hpp"

namespace pv {

namespace {

constexpr double kReconnectDelay = 1.0;
constexpr double kConnectErrorLogEvery = 30.0;

/// Forwards one LISTEN channel's payloads to a callback.
class Receiver : public pqxx::notification_receiver {
public:
    Receiver(pqxx::connection_base& c, const std::string& channel,
             std::function<void(const std::string&)> cb)
        : pqxx::notification_receiver(c, channel), m_cb{std::move(cb)} {}
    void operator()(const std::string& payload, int) override { m_cb(payload); }

private:
    std::function<void(const std::string&)> m_cb;
};

// The claim's CTEs (picked, claimed, opened) over four parameters numbered from
// `first`: slots, worker id, host, cgroup mode.
std::string claim_ctes(int first) {
    auto p = [first](int k) { return fmt::format("${}", first + k); };
    return "picked AS ("
           "  SELECT id FROM tasks"
           "  WHERE status = 'pending' AND not_before <= now() AND NOT cancel_requested"
           "  ORDER BY created_at LIMIT " +
           p(0) +
           " FOR UPDATE SKIP LOCKED),"
           " claimed AS ("
           "  UPDATE tasks t SET status = 'inprogress', attempts = t.attempts + 1,"
           "   worker_id = " +
           p(1) +
           "::uuid, started_at = now(), updated_at = now(),"
           "   progress = 0, stage = NULL, finished_at = NULL"
           "  FROM picked WHERE t.id = picked.id"
           "  RETURNING t.id, t.attempts, t.max_attempts, t.timeout_seconds, t.request,"
           "   t.created_at),"
           " opened AS ("
           "  INSERT INTO task_attempts (task_id, attempt, worker_id, host, cgroup_mode,"
           "   started_at)"
           "  SELECT id, attempts, " +
           p(1) + "::uuid, " + p(2) + ", " + p(3) + ", now() FROM claimed)";
}

constexpr const char* kClaimColumns =
    "id::text, attempts, max_attempts, timeout_seconds, request::text";

// A claimed task from the columns of kClaimColumns, starting at `col`.
TaskInfo task_from_row(const pqxx::row& row, int col, double default_timeout) {
    TaskInfo t;
    t.id = row[col].as<std::string>();
    t.attempt = row[col + 1].as<int>();
    t.max_attempts = row[col + 2].as<int>();
    t.timeout_seconds = row[col + 3].is_null() ? default_timeout : row[col + 3].as<double>();
    t.request = row[col + 4].as<std::string>();
    return t;
}

bool is_connection_error(const std::exception& e) {
    return dynamic_cast<const pqxx::broken_connection*>(&e) != nullptr ||
           dynamic_cast<const pqxx::in_doubt_error*>(&e) != nullptr;
}

}  // namespace

struct TaskStore::Conn {
    std::unique_ptr<pqxx::connection> db;
    std::vector<std::unique_ptr<Receiver>> receivers;
    ~Conn() {
        // Receivers unregister from the connection, so they go first.
        receivers.clear();
        db.reset();
    }
};

nlohmann::json to_json(const DbWrite& w) {
    return {
        {"kind", w.kind}, {"args", w.args}, {"max_tries", w.max_tries}, {"failures", w.failures}};
}

DbWrite db_write_from_json(const nlohmann::json& j) {
    DbWrite w;
    w.kind = j.at("kind").get<std::string>();
    w.args = j.at("args");
    w.max_tries = j.value("max_tries", 3);
    w.failures = j.value("failures", 0);
    return w;
}

std::string with_connect_timeout(const std::string& url) {
    if (url.find("connect_timeout") != std::string::npos)
        return url;
    if (url.rfind("postgresql://", 0) == 0 || url.rfind("postgres://", 0) == 0) {
        return url + (url.find('?') == std::string::npos ? "?" : "&") + "connect_timeout=5";
    }
    return url.empty() ? "connect_timeout=5" : url + " connect_timeout=5";
}

TaskStore::TaskStore(std::string database_url, int retry_attempts, double retry_delay)
    : m_conninfo{with_connect_timeout(database_url)},
      m_retry_attempts{retry_attempts},
      m_retry_delay{retry_delay} {}

TaskStore::~TaskStore() = default;

bool TaskStore::connected() const {
    return m_conn && m_conn->db && m_conn->db->is_open();
}

int TaskStore::socket() const {
    return connected() ? m_conn->db->sock() : -1;
}

void TaskStore::disconnect() noexcept {
    // Only a real disconnect delays the next attempt; calling this again while
    // already disconnected must not push the reconnect further away.
    if (!m_conn)
        return;
    if (m_conn->db && on_socket_change) {
        int fd = m_conn->db->sock();
        if (fd >= 0)
            on_socket_change(fd, -1);
    }
    m_conn.reset();
    m_next_connect = monotonic_seconds() + kReconnectDelay;
}

void TaskStore::note_error(const char* operation, const std::exception& e,
                           const nlohmann::json& fields) {
    nlohmann::json f = fields;
    f["operation"] = operation;
    f["error_message"] = e.what();
    log::error("Database operation failed", f);
    if (is_connection_error(e) || !connected())
        disconnect();
}

bool TaskStore::ensure_connected() {
    if (connected())
        return true;
    if (m_conn)
        disconnect();
    if (monotonic_seconds() < m_next_connect)
        return false;
    try {
        auto conn = std::make_unique<Conn>();
        conn->db = std::make_unique<pqxx::connection>(m_conninfo);
        // A broken connection must throw so we reconnect (and re-register the
        // socket) ourselves instead of libpqxx doing it behind our back.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
        conn->db->inhibit_reactivation(true);
#pragma GCC diagnostic pop
        {
            pqxx::nontransaction tx(*conn->db);
            // Bound every statement so the single-threaded loop never hangs long.
            tx.exec0("SET statement_timeout = '10s'");
            tx.exec0("SET application_name = 'pv-supervisor'");
        }
        conn->receivers.push_back(std::make_unique<Receiver>(
            *conn->db, "pv_tasks",
            [this](const std::string&) { m_pending_notes.new_tasks = true; }));
        conn->receivers.push_back(std::make_unique<Receiver>(
            *conn->db, "pv_cancel",
            [this](const std::string& id) { m_pending_notes.cancels.push_back(id); }));
        m_conn = std::move(conn);
        if (on_socket_change)
            on_socket_change(-1, m_conn->db->sock());
        // Anything may have happened while we were away.
        m_pending_notes.new_tasks = true;
        m_last_connect_error_log = -1e9;
        if (m_connected_once)
            m_reconnected_at = monotonic_seconds();
        m_connected_once = true;
        log::info("Database connected");
        return true;
    } catch (const std::exception& e) {
        m_conn.reset();
        double now = monotonic_seconds();
        m_next_connect = now + kReconnectDelay;
        // Retried every second during an outage; say so every 30 s, not every time.
        if (now - m_last_connect_error_log >= kConnectErrorLogEvery) {
            m_last_connect_error_log = now;
            log::error("Database connection failed", {{"error_message", e.what()}});
        }
        return false;
    }
}

int TaskStore::migrate() {
    if (!ensure_connected())
        throw pqxx::broken_connection("cannot connect to the database");
    return run_migrations(*m_conn->db);
}

void TaskStore::register_worker(const WorkerInfo& w) {
    if (!ensure_connected())
        throw pqxx::broken_connection("cannot connect to the database");
    pqxx::work tx(*m_conn->db);
    tx.exec_params0(
        "INSERT INTO workers (id, host, pid, version, cgroup_mode, max_children, instance)"
        " VALUES ($1::uuid, $2, $3, $4, $5, $6, $7)",
        w.id, w.host, w.pid, w.version, w.cgroup_mode, w.max_children, w.instance);
    tx.commit();
}

std::vector<TaskInfo> TaskStore::claim(int slots, const WorkerInfo& worker,
                                       double default_timeout) {
    std::vector<TaskInfo> tasks;
    if (slots <= 0 || !ensure_connected())
        return tasks;
    try {
        // One autocommitted statement: the claim and its attempt rows in one round trip.
        pqxx::nontransaction tx(*m_conn->db);
        static const std::string kSql = "WITH " + claim_ctes(1) + " SELECT " + kClaimColumns +
                                        " FROM claimed ORDER BY created_at";
        auto rows = sql::exec_prepared(tx, "pv_claim", kSql, slots, worker.id, worker.host,
                                       worker.cgroup_mode);
        for (const auto& row : rows) tasks.push_back(task_from_row(row, 0, default_timeout));
    } catch (const std::exception& e) {
        note_error("claim", e);
        tasks.clear();
    }
    return tasks;
}

std::vector<TaskInfo> TaskStore::flush_and_claim(int slots, const WorkerInfo& worker,
                                                 double default_timeout) {
    std::vector<DbWrite> held = take_finishes_for_claim(slots);
    flush();
    if (held.empty())
        return claim(slots, worker, default_timeout);
    bool failing = std::any_of(m_queue.begin(), m_queue.end(),
                               [](const DbWrite& w) { return w.failures > 0; });
    std::vector<TaskInfo> tasks;
    if (!failing && ensure_connected()) {
        try {
            // The finishes' CTEs and the claim's in one autocommitted statement: one
            // round trip, and the finishes are committed with (never after) the claim.
            pqxx::nontransaction tx(*m_conn->db);
            static const std::string kSql =
                std::string(finish_attempts_ctes()) + ", " + claim_ctes(2) +
                " SELECT f.answer, c.id::text, c.attempts, c.max_attempts, c.timeout_seconds,"
                " c.request::text FROM f LEFT JOIN claimed c ON true ORDER BY c.created_at";
            std::vector<FinishRecord> records;
            for (const DbWrite& w : held) records.push_back(finish_from_json(to_json(w)));
            auto rows =
                sql::exec_prepared(tx, "pv_finish_claim", kSql, finish_attempts_param(records),
                                   slots, worker.id, worker.host, worker.cgroup_mode);
            std::vector<ApplyResult> applied = parse_finish_answer(rows[0][0].as<std::string>());
            for (std::size_t k = 0; k < held.size() && k < applied.size(); ++k)
                report_applied(held[k], applied[k]);
            for (const auto& row : rows) {
                if (!row[1].is_null())
                    tasks.push_back(task_from_row(row, 1, default_timeout));
            }
            return tasks;
        } catch (const std::exception& e) {
            log::debug("Finishes with the claim failed, writing them on their own",
                       {{"writes", held.size()}, {"error_message", e.what()}});
        }
    }
    // The finishes take the one-at-a-time path (retries, trimming, journal) first.
    for (auto it = held.rbegin(); it != held.rend(); ++it) m_queue.push_front(std::move(*it));
    flush();
    return claim(slots, worker, default_timeout);
}

std::vector<DbWrite> TaskStore::take_finishes_for_claim(int slots) {
    std::vector<DbWrite> held;
    if (slots <= 0 || (m_journal && !m_journal->empty()))
        return held;
    double now = monotonic_seconds();
    for (const DbWrite& w : m_queue) {
        if (w.failures > 0)
            return held;
    }
    // Finishes of different attempts are independent of each other and of the
    // other writes, which flush() applies just before.
    for (auto it = m_queue.begin(); it != m_queue.end();) {
        if (it->kind == "finish" && it->next_try <= now) {
            held.push_back(std::move(*it));
            it = m_queue.erase(it);
        } else {
            ++it;
        }
    }
    return held;
}

Notifications TaskStore::take_notifications() {
    if (connected()) {
        try {
            m_conn->db->get_notifs();
        } catch (const std::exception& e) {
            note_error("receive notifications", e);
        }
    }
    Notifications out = std::move(m_pending_notes);
    m_pending_notes = {};
    return out;
}

std::vector<std::string> TaskStore::cancel_requested(const std::string& worker_id) {
    std::vector<std::string> ids;
    if (!ensure_connected())
        return ids;
    try {
        pqxx::nontransaction tx(*m_conn->db);
        auto rows = tx.exec_params(
            "SELECT id::text FROM tasks WHERE worker_id = $1::uuid AND status = 'inprogress'"
            " AND cancel_requested",
            worker_id);
        for (const auto& row : rows) ids.push_back(row[0].as<std::string>());
    } catch (const std::exception& e) {
        note_error("check cancellations", e);
    }
    return ids;
}

std::optional<double> TaskStore::seconds_until_next_pending() {
    if (!ensure_connected())
        return std::nullopt;
    try {
        pqxx::nontransaction tx(*m_conn->db);
        auto row = tx.exec1(
            "SELECT EXTRACT(EPOCH FROM min(not_before) - now())::float8 FROM tasks"
            " WHERE status = 'pending' AND not_before > now() AND NOT cancel_requested");
        if (row[0].is_null())
            return std::nullopt;
        return std::max(0.0, row[0].as<double>());
    } catch (const std::exception& e) {
        note_error("find next delayed task", e);
        return std::nullopt;
    }
}

std::optional<long> TaskStore::pending_count() {
    if (!ensure_connected())
        return std::nullopt;
    try {
        pqxx::nontransaction tx(*m_conn->db);
        auto row = tx.exec1(
            "SELECT count(*) FROM tasks WHERE status = 'pending' AND NOT cancel_requested");
        return row[0].as<long>();
    } catch (const std::exception& e) {
        note_error("count pending tasks", e);
        return std::nullopt;
    }
}

int TaskStore::recover_expired_workers(const std::string& own_worker_id, double lease_seconds,
                                       const RequeueDelay& requeue_delay) {
    if (!ensure_connected())
        return 0;
    // After an outage every supervisor's heartbeat is stale, not only dead ones':
    // give the others one lease to reconnect and heartbeat before judging them.
    if (monotonic_seconds() - m_reconnected_at < lease_seconds)
        return 0;
    return run_recovery(
        "recover expired workers", "Tasks of lost supervisors recovered", [&](pqxx::work& tx) {
            return recover_expired(tx, std::chrono::seconds(static_cast<long>(lease_seconds)),
                                   own_worker_id, requeue_delay);
        });
}

int TaskStore::recover_untracked_attempts(const std::string& own_worker_id,
                                          std::set<TaskKey> running, double grace_seconds,
                                          const RequeueDelay& requeue_delay) {
    if ((m_journal && !m_journal->empty()) || !ensure_connected())
        return 0;
    // An ended attempt whose final write is still queued is not lost.
    for (const DbWrite& w : m_queue) {
        if (w.kind == "finish")
            running.insert(TaskKey{w.args.value("task_id", ""), w.args.value("attempt", 0)});
    }
    return run_recovery("recover untracked attempts",
                        "Untracked attempts of this supervisor resolved", [&](pqxx::work& tx) {
                            return recover_untracked(
                                tx, own_worker_id, running,
                                std::chrono::seconds(static_cast<long>(grace_seconds)),
                                requeue_delay);
                        });
}

int TaskStore::run_recovery(const char* what, const char* done,
                            const std::function<int(pqxx::work&)>& recover) {
    try {
        pqxx::work tx(*m_conn->db);
        int n = recover(tx);
        tx.commit();
        if (n > 0)
            log::warn(done, {{"count", n}});
        return n;
    } catch (const std::exception& e) {
        note_error(what, e);
        return 0;
    }
}

std::vector<std::string> TaskStore::recover_previous_life(
    const WorkerInfo& worker, const std::map<TaskKey, CgroupStats>& evidence,
    const std::set<std::string>& retry_on, const RequeueDelay& requeue_delay) {
    if (!ensure_connected())
        throw pqxx::broken_connection("cannot connect to the database");
    pqxx::work tx(*m_conn->db);
    auto resolved = recover_own_previous_life(tx, worker.host, worker.instance, worker.id, evidence,
                                              retry_on, requeue_delay);
    tx.commit();
    return resolved;
}

bool TaskStore::attempt_open(const std::string& task_id, int attempt) {
    if (!ensure_connected())
        throw pqxx::broken_connection("cannot connect to the database");
    pqxx::nontransaction tx(*m_conn->db);
    auto rows = tx.exec_params(
        "SELECT 1 FROM task_attempts WHERE task_id = $1::uuid AND attempt = $2"
        " AND ended_at IS NULL",
        task_id, attempt);
    return !rows.empty();
}

bool TaskStore::replay_journal_now() {
    if (!m_journal || m_journal->empty())
        return true;
    if (!ensure_connected())
        return false;
    try {
        auto stats = replay_journal(*m_journal, *m_conn->db);
        log::info(
            "Journal replayed",
            {{"applied", stats.applied}, {"skipped", stats.skipped}, {"rejected", stats.rejected}});
        return true;
    } catch (const std::exception& e) {
        note_error("replay journal", e);
        return false;
    }
}

bool TaskStore::all_writes_exhausted() const {
    return std::all_of(m_queue.begin(), m_queue.end(),
                       [](const DbWrite& w) { return w.failures >= w.max_tries; });
}

void TaskStore::enqueue(DbWrite write, double delay) {
    if (write.kind == "heartbeat") {
        // One pending heartbeat is enough.
        for (const auto& w : m_queue) {
            if (w.kind == "heartbeat")
                return;
        }
    }
    if (write.kind == "finish") {
        const auto& a = write.args;
        std::erase_if(m_queue, [&](const DbWrite& w) {
            return w.kind == "attempt_started" && w.failures == 0 &&
                   w.args.value("task_id", "") == a.value("task_id", "") &&
                   w.args.value("attempt", 0) == a.value("attempt", 0);
        });
    }
    write.next_try = delay > 0 ? monotonic_seconds() + delay : 0;
    m_queue.push_back(std::move(write));
}

std::optional<double> TaskStore::flush() {
    double now = monotonic_seconds();
    // Journaled writes are older than anything queued, so they go first. While
    // they cannot be replayed, queued writes count a failed try without being
    // applied (keeping the order), so they too end in the journal after their
    // retries and a stopping supervisor can exit.
    const bool replay_blocked = m_journal && !m_journal->empty() && !replay_journal_now();
    if (!replay_blocked)
        flush_batch(now);
    for (auto it = m_queue.begin(); it != m_queue.end();) {
        if (it->next_try > now) {
            ++it;
            continue;
        }
        nlohmann::json fields = {{"operation", it->kind}};
        if (it->args.contains("task_id"))
            fields["task_id"] = it->args["task_id"];
        try {
            // Heartbeats need no order; everything else waits for the journal.
            if (replay_blocked && it->kind != "heartbeat")
                throw pqxx::broken_connection("journal not replayed yet");
            if (!ensure_connected())
                throw pqxx::broken_connection("database unreachable");
            apply(*it);
            it = m_queue.erase(it);
            continue;
        } catch (const std::exception& e) {
            ++it->failures;
            fields["error_message"] = e.what();
            fields["failures"] = it->failures;
            if (!replay_blocked && (is_connection_error(e) || !connected()))
                disconnect();
            if (it->kind == "progress" || it->kind == "heartbeat" ||
                it->kind == "attempt_started") {
                // Limitation: progress, heartbeat and pid-at-start writes are not
                // retried; the next one (or the final write) supersedes them.
                log::warn("Database write dropped", fields);
                it = m_queue.erase(it);
                continue;
            }
            if (it->failures < it->max_tries) {
                log::warn("Database write failed, will retry", fields);
            } else if (m_journal) {
                try {
                    m_journal->append(to_json(*it));
                    log::error("Database write failed after retries, journaled", fields);
                    it = m_queue.erase(it);
                    continue;
                } catch (const std::exception& je) {
                    fields["journal_error"] = je.what();
                    log::error("Database write failed and cannot be journaled, kept queued",
                               fields);
                }
            } else {
                log::error("Database write still failing, kept queued", fields);
            }
            it->next_try = now + m_retry_delay;
            ++it;
        }
    }
    if (m_queue.empty())
        return replay_blocked ? std::optional<double>(m_retry_delay) : std::nullopt;
    double next = m_queue.front().next_try;
    for (const auto& w : m_queue) next = std::min(next, w.next_try);
    return std::max(0.0, next - now);
}

void TaskStore::flush_batch(double now) {
    std::vector<std::size_t> due;
    for (std::size_t i = 0; i < m_queue.size(); ++i) {
        if (m_queue[i].next_try <= now)
            due.push_back(i);
    }
    if (due.empty() || !ensure_connected())
        return;
    // Every write is a single fenced, idempotent statement, atomic on its own, so
    // each is autocommitted: no BEGIN and COMMIT round trips around the batch.
    std::vector<ApplyResult> results;
    try {
        pqxx::nontransaction tx(*m_conn->db);
        for (std::size_t i : due) results.push_back(run_write(tx, m_queue[i], nullptr));
    } catch (const std::exception& e) {
        // The writes not applied yet go through the one-at-a-time pass in flush(),
        // with its retries, trimming and journal.
        log::debug("Batched database write failed, applying the rest one at a time",
                   {{"writes", due.size() - results.size()}, {"error_message", e.what()}});
    }
    for (std::size_t k = 0; k < results.size(); ++k) report_applied(m_queue[due[k]], results[k]);
    for (std::size_t k = results.size(); k-- > 0;) {
        m_queue.erase(m_queue.begin() + static_cast<std::ptrdiff_t>(due[k]));
    }
}

void TaskStore::apply(const DbWrite& w) {
    pqxx::work tx(*m_conn->db);
    ApplyResult applied = run_write(tx, w, &tx);
    tx.commit();
    report_applied(w, applied);
}

ApplyResult TaskStore::run_write(pqxx::transaction_base& tx, const DbWrite& w,
                                 pqxx::work* guarded) {
    const auto& a = w.args;
    if (w.kind == "heartbeat") {
        sql::exec_prepared(tx, "pv_heartbeat",
                           "UPDATE workers SET heartbeat_at = now() WHERE id = $1::uuid",
                           a.at("worker_id").get<std::string>());
        return {};
    }
    if (w.kind == "attempt_started") {
        // The pid is known while the child runs (the final write repeats it).
        sql::exec_prepared(
            tx, "pv_attempt_pid",
            "UPDATE task_attempts SET pid = $3 WHERE task_id = $1::uuid AND attempt = $2"
            " AND worker_id = $4::uuid AND ended_at IS NULL",
            a.at("task_id").get<std::string>(), a.at("attempt").get<int>(), a.at("pid").get<int>(),
            a.at("worker_id").get<std::string>());
        return {};
    }
    if (w.kind == "finish" || w.kind == "progress" || w.kind == "worker_stopped") {
        // The same fenced statements the journal replays (status_record.hpp).
        return guarded ? apply_entry(*guarded, to_json(w)) : apply_entry_unguarded(tx, to_json(w));
    }
    log::error("Unknown database write dropped", {{"operation", w.kind}});
    return {};
}

void TaskStore::report_applied(const DbWrite& w, const ApplyResult& applied) {
    const auto& a = w.args;
    if (w.failures > 0) {
        nlohmann::json fields = {{"operation", w.kind}};
        if (a.contains("task_id"))
            fields["task_id"] = a["task_id"];
        log::info("Database write succeeded after retries", fields);
    }
    if (w.kind == "finish" && !applied.task_row) {
        log::warn("Task no longer ours, final state not written",
                  {{"task_id", a.value("task_id", "")},
                   {"attempt", a.value("attempt", 0)},
                   {"status", a.value("status", "")}});
    }
}

}  // namespace pv

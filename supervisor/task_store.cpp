// SPDX-License-Identifier: MIT
#include "task_store.hpp"

#include <pqxx/pqxx>

#include <algorithm>

#include "event_loop.hpp"
#include "log.hpp"
#include "migrations.hpp"

namespace pv {

namespace {

constexpr double kReconnectDelay = 1.0;

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

std::optional<long long> opt_int(const nlohmann::json& j, const char* key) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return std::nullopt;
    return it->get<long long>();
}

std::optional<double> opt_double(const nlohmann::json& j, const char* key) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return std::nullopt;
    return it->get<double>();
}

std::optional<std::string> opt_string(const nlohmann::json& j, const char* key) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return std::nullopt;
    return it->get<std::string>();
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
    return {{"kind", w.kind}, {"args", w.args}, {"max_tries", w.max_tries},
            {"failures", w.failures}};
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
    if (url.find("connect_timeout") != std::string::npos) return url;
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

bool TaskStore::connected() const { return m_conn && m_conn->db && m_conn->db->is_open(); }

int TaskStore::socket() const { return connected() ? m_conn->db->sock() : -1; }

void TaskStore::disconnect() noexcept {
    if (m_conn && m_conn->db && on_socket_change) {
        int fd = m_conn->db->sock();
        if (fd >= 0) on_socket_change(fd, -1);
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
    if (is_connection_error(e) || !connected()) disconnect();
}

bool TaskStore::ensure_connected() {
    if (connected()) return true;
    if (m_conn) disconnect();
    if (monotonic_seconds() < m_next_connect) return false;
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
            *conn->db, "pv_tasks", [this](const std::string&) { m_pending_notes.new_tasks = true; }));
        conn->receivers.push_back(std::make_unique<Receiver>(
            *conn->db, "pv_cancel",
            [this](const std::string& id) { m_pending_notes.cancels.push_back(id); }));
        m_conn = std::move(conn);
        if (on_socket_change) on_socket_change(-1, m_conn->db->sock());
        // Anything may have happened while we were away.
        m_pending_notes.new_tasks = true;
        log::info("Database connected");
        return true;
    } catch (const std::exception& e) {
        m_conn.reset();
        m_next_connect = monotonic_seconds() + kReconnectDelay;
        log::error("Database connection failed", {{"error_message", e.what()}});
        return false;
    }
}

int TaskStore::migrate() {
    if (!ensure_connected()) throw pqxx::broken_connection("cannot connect to the database");
    return run_migrations(*m_conn->db);
}

void TaskStore::register_worker(const WorkerInfo& w) {
    if (!ensure_connected()) throw pqxx::broken_connection("cannot connect to the database");
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
    if (slots <= 0 || !ensure_connected()) return tasks;
    try {
        pqxx::work tx(*m_conn->db);
        auto rows = tx.exec_params(
            "WITH picked AS ("
            "  SELECT id FROM tasks"
            "  WHERE status = 'pending' AND not_before <= now() AND NOT cancel_requested"
            "  ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED)"
            " UPDATE tasks t SET status = 'inprogress', attempts = t.attempts + 1,"
            "   worker_id = $2::uuid, started_at = now(), updated_at = now(),"
            "   progress = 0, stage = NULL, finished_at = NULL"
            " FROM picked WHERE t.id = picked.id"
            " RETURNING t.id::text, t.attempts, t.max_attempts, t.timeout_seconds,"
            "   t.request::text, t.created_at",
            slots, worker.id);
        for (const auto& row : rows) {
            TaskInfo t;
            t.id = row[0].as<std::string>();
            t.attempt = row[1].as<int>();
            t.max_attempts = row[2].as<int>();
            t.timeout_seconds = row[3].is_null() ? default_timeout : row[3].as<double>();
            t.request = row[4].as<std::string>();
            tx.exec_params0(
                "INSERT INTO task_attempts (task_id, attempt, worker_id, host, cgroup_mode,"
                " started_at) VALUES ($1::uuid, $2, $3::uuid, $4, $5, now())",
                t.id, t.attempt, worker.id, worker.host, worker.cgroup_mode);
            tasks.push_back(std::move(t));
        }
        tx.commit();
    } catch (const std::exception& e) {
        note_error("claim", e);
        tasks.clear();
    }
    return tasks;
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
    if (!ensure_connected()) return ids;
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
    if (!ensure_connected()) return std::nullopt;
    try {
        pqxx::nontransaction tx(*m_conn->db);
        auto row = tx.exec1(
            "SELECT EXTRACT(EPOCH FROM min(not_before) - now())::float8 FROM tasks"
            " WHERE status = 'pending' AND not_before > now() AND NOT cancel_requested");
        if (row[0].is_null()) return std::nullopt;
        return std::max(0.0, row[0].as<double>());
    } catch (const std::exception& e) {
        note_error("find next delayed task", e);
        return std::nullopt;
    }
}

std::optional<long> TaskStore::pending_count() {
    if (!ensure_connected()) return std::nullopt;
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

void TaskStore::sweep_lost_workers(
    const std::string& own_worker_id, double lease_seconds,
    const std::function<std::optional<double>(const LostTask&)>& decide) {
    if (!ensure_connected()) return;
    try {
        pqxx::work tx(*m_conn->db);
        auto rows = tx.exec_params(
            "SELECT t.id::text, t.attempts, t.max_attempts, t.worker_id::text,"
            "  EXTRACT(EPOCH FROM now() - w.heartbeat_at)::float8, w.stopped_at IS NOT NULL"
            " FROM tasks t JOIN workers w ON w.id = t.worker_id"
            " WHERE t.status = 'inprogress' AND w.id <> $1::uuid"
            "   AND (w.stopped_at IS NOT NULL"
            "        OR w.heartbeat_at < now() - make_interval(secs => $2))"
            " FOR UPDATE OF t SKIP LOCKED",
            own_worker_id, lease_seconds);
        for (const auto& row : rows) {
            LostTask lost{row[0].as<std::string>(), row[1].as<int>(), row[2].as<int>()};
            std::string old_worker = row[3].as<std::string>();
            std::string error =
                row[5].as<bool>()
                    ? std::string("Worker lost: its supervisor stopped without finishing the task")
                    : "Worker lost: no heartbeat for " +
                          std::to_string(static_cast<long>(row[4].as<double>())) + " s";
            tx.exec_params0(
                "UPDATE task_attempts SET ended_at = now(), outcome = 'worker_lost', error = $3,"
                "  wall_seconds = EXTRACT(EPOCH FROM now() - started_at)"
                " WHERE task_id = $1::uuid AND attempt = $2 AND ended_at IS NULL",
                lost.id, lost.attempt, error);
            auto delay = decide(lost);
            if (delay) {
                tx.exec_params0(
                    "UPDATE tasks SET status = 'pending', worker_id = NULL, error = $3,"
                    "  error_type = 'worker_lost', updated_at = now(),"
                    "  not_before = now() + make_interval(secs => $4)"
                    " WHERE id = $1::uuid AND attempts = $2 AND status = 'inprogress'",
                    lost.id, lost.attempt, error, *delay);
            } else {
                tx.exec_params0(
                    "UPDATE tasks SET status = 'failed', error = $3, error_type = 'worker_lost',"
                    "  finished_at = now(), updated_at = now()"
                    " WHERE id = $1::uuid AND attempts = $2 AND status = 'inprogress'",
                    lost.id, lost.attempt, error);
            }
            log::warn("Task of a lost worker repaired",
                      {{"task_id", lost.id}, {"attempt", lost.attempt},
                       {"error_type", "worker_lost"}, {"error_message", error},
                       {"lost_worker_id", old_worker}, {"requeued", delay.has_value()}});
        }
        tx.commit();
    } catch (const std::exception& e) {
        note_error("sweep lost workers", e);
    }
}

bool TaskStore::all_writes_exhausted() const {
    return std::all_of(m_queue.begin(), m_queue.end(),
                       [](const DbWrite& w) { return w.failures >= w.max_tries; });
}

void TaskStore::enqueue(DbWrite write) {
    if (write.kind == "heartbeat") {
        // One pending heartbeat is enough.
        for (const auto& w : m_queue) {
            if (w.kind == "heartbeat") return;
        }
    }
    write.next_try = 0;
    m_queue.push_back(std::move(write));
}

std::optional<double> TaskStore::flush() {
    double now = monotonic_seconds();
    for (auto it = m_queue.begin(); it != m_queue.end();) {
        if (it->next_try > now) {
            ++it;
            continue;
        }
        nlohmann::json fields = {{"operation", it->kind}};
        if (it->args.contains("task_id")) fields["task_id"] = it->args["task_id"];
        try {
            if (!ensure_connected()) throw pqxx::broken_connection("database unreachable");
            apply(*it);
            if (it->failures > 0) log::info("Database write succeeded after retries", fields);
            it = m_queue.erase(it);
            continue;
        } catch (const std::exception& e) {
            ++it->failures;
            fields["error_message"] = e.what();
            fields["failures"] = it->failures;
            if (is_connection_error(e) || !connected()) disconnect();
            if (it->kind == "progress" || it->kind == "heartbeat") {
                // Superseded by the next one; not worth keeping.
                log::warn("Database write dropped", fields);
                it = m_queue.erase(it);
                continue;
            }
            if (it->failures < it->max_tries) {
                log::warn("Database write failed, will retry", fields);
            } else {
                log::error("Database write still failing, kept queued", fields);
            }
            it->next_try = now + m_retry_delay;
            ++it;
        }
    }
    if (m_queue.empty()) return std::nullopt;
    double next = m_queue.front().next_try;
    for (const auto& w : m_queue) next = std::min(next, w.next_try);
    return std::max(0.0, next - now);
}

void TaskStore::apply(const DbWrite& w) {
    const auto& a = w.args;
    pqxx::work tx(*m_conn->db);
    if (w.kind == "heartbeat") {
        tx.exec_params0("UPDATE workers SET heartbeat_at = now() WHERE id = $1::uuid",
                        a.at("worker_id").get<std::string>());
    } else if (w.kind == "worker_stopped") {
        tx.exec_params0(
            "UPDATE workers SET stopped_at = now(), heartbeat_at = now() WHERE id = $1::uuid",
            a.at("worker_id").get<std::string>());
    } else if (w.kind == "progress") {
        tx.exec_params0(
            "UPDATE tasks SET progress = $4, stage = $5, updated_at = now()"
            " WHERE id = $1::uuid AND attempts = $2 AND worker_id = $3::uuid"
            "   AND status = 'inprogress'",
            a.at("task_id").get<std::string>(), a.at("attempt").get<int>(),
            a.at("worker_id").get<std::string>(), a.at("percent").get<double>(),
            opt_string(a, "stage"));
    } else if (w.kind == "finish") {
        std::string task_id = a.at("task_id").get<std::string>();
        int attempt = a.at("attempt").get<int>();
        std::string worker_id = a.at("worker_id").get<std::string>();
        tx.exec_params0(
            "UPDATE task_attempts SET ended_at = now(), pid = $3, exit_code = $4, signal = $5,"
            "  core_dumped = $6, oom_kills = $7, peak_memory_bytes = $8,"
            "  cpu_user_seconds = $9, cpu_sys_seconds = $10, wall_seconds = $11,"
            "  outcome = $12, error = $13, stderr_tail = $14"
            " WHERE task_id = $1::uuid AND attempt = $2 AND ended_at IS NULL",
            task_id, attempt, opt_int(a, "pid"), opt_int(a, "exit_code"), opt_int(a, "signal"),
            a.value("core_dumped", false), a.value("oom_kills", 0),
            opt_int(a, "peak_memory_bytes"), opt_double(a, "cpu_user_seconds"),
            opt_double(a, "cpu_sys_seconds"), opt_double(a, "wall_seconds"),
            a.at("outcome").get<std::string>(), opt_string(a, "error"),
            opt_string(a, "stderr_tail"));
        std::string status = a.at("status").get<std::string>();
        const char* fence =
            " WHERE id = $1::uuid AND attempts = $2 AND worker_id = $3::uuid"
            "   AND status = 'inprogress'";
        pqxx::result r;
        if (status == "completed") {
            r = tx.exec_params(
                std::string("UPDATE tasks SET status = 'completed', result = $4::jsonb,"
                            "  error = NULL, error_type = NULL, progress = 100,"
                            "  finished_at = now(), updated_at = now()") + fence,
                task_id, attempt, worker_id, opt_string(a, "result"));
        } else if (status == "pending") {
            r = tx.exec_params(
                std::string("UPDATE tasks SET status = 'pending', error = $4, error_type = $5,"
                            "  worker_id = NULL, updated_at = now(),"
                            "  not_before = now() + make_interval(secs => $6)") + fence,
                task_id, attempt, worker_id, opt_string(a, "error"),
                opt_string(a, "error_type"), a.value("retry_delay", 0.0));
        } else {
            r = tx.exec_params(
                std::string("UPDATE tasks SET status = $4, error = $5, error_type = $6,"
                            "  finished_at = now(), updated_at = now()") + fence,
                task_id, attempt, worker_id, status, opt_string(a, "error"),
                opt_string(a, "error_type"));
        }
        if (r.affected_rows() == 0) {
            log::warn("Task no longer ours, final state not written",
                      {{"task_id", task_id}, {"attempt", attempt}, {"status", status}});
        }
    } else {
        log::error("Unknown database write dropped", {{"operation", w.kind}});
    }
    tx.commit();
}

}  // namespace pv

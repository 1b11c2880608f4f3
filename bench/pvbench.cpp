// SPDX-License-Identifier: MIT
// pvbench: the database side of the supervisor benchmarks. It enqueues tasks
// the way a client does (INSERT INTO tasks), watches them through the
// pv_progress notifications (delivered at commit, so "seen" means committed),
// and prints one CSV row per task for bench/report.py.
//
//   pvbench kill-latency DIR N   one task at a time: wait for bench_child to
//                                write DIR/<task-id>, SIGKILL it, wait for the
//                                failed row
//   pvbench latency N GAP_MS     one noop task at a time on an idle system
//   pvbench dispatch N           N noop tasks in one INSERT, wait for all
//   pvbench one                  one task, wait for it, print the row as JSON
//
// DATABASE_URL says where PostgreSQL is. Times are CLOCK_REALTIME nanoseconds,
// comparable with the database's timestamps on the same host.
#include <libpq-fe.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <chrono>
#include <ctime>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr const char* kRequest =
    R"({"scenes":[{"type":"image","image":"bench.jpg","duration":1}],"bench":true})";
constexpr int kWaitTimeoutMs = 60'000;

long long realtime_ns() {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<long long>(ts.tv_sec) * 1'000'000'000LL + ts.tv_nsec;
}

struct PgFree {
    void operator()(PGconn* c) const { PQfinish(c); }
    void operator()(PGresult* r) const { PQclear(r); }
};
using ConnPtr = std::unique_ptr<PGconn, PgFree>;
using ResultPtr = std::unique_ptr<PGresult, PgFree>;

/// One libpq connection that listens on pv_progress and runs plain queries.
class Db {
public:
    Db() {
        const char* url = std::getenv("DATABASE_URL");
        m_conn.reset(PQconnectdb(url ? url : ""));
        if (PQstatus(m_conn.get()) != CONNECTION_OK) {
            throw std::runtime_error(std::string("connect: ") + PQerrorMessage(m_conn.get()));
        }
        exec("LISTEN pv_progress");
    }

    ResultPtr exec(const std::string& sql, const std::vector<std::string>& params = {}) {
        std::vector<const char*> values;
        for (const auto& p : params) values.push_back(p.c_str());
        ResultPtr r(PQexecParams(m_conn.get(), sql.c_str(), static_cast<int>(values.size()),
                                 nullptr, values.data(), nullptr, nullptr, 0));
        auto st = PQresultStatus(r.get());
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
            throw std::runtime_error(sql.substr(0, 60) + ": " + PQerrorMessage(m_conn.get()));
        }
        return r;
    }

    /// Inserts one task (single attempt, so a death is final) and returns its id.
    std::string enqueue() {
        auto r = exec("INSERT INTO tasks (request, max_attempts) VALUES ($1::jsonb, 1) "
                      "RETURNING id",
                      {kRequest});
        return PQgetvalue(r.get(), 0, 0);
    }

    /// Waits up to timeout_ms for notifications; calls on_status(id, status,
    /// received_ns) for each and stops when it returns true.
    template <class F>
    bool wait_status(int timeout_ms, F&& on_status) {
        long long deadline = realtime_ns() + static_cast<long long>(timeout_ms) * 1'000'000;
        for (;;) {
            while (PGnotify* n = PQnotifies(m_conn.get())) {
                long long now = realtime_ns();
                std::string payload = n->extra;
                PQfreemem(n);
                if (on_status(field(payload, "id"), field(payload, "status"), now)) return true;
            }
            long long left_ms = (deadline - realtime_ns()) / 1'000'000;
            if (left_ms <= 0) return false;
            pollfd p{PQsocket(m_conn.get()), POLLIN, 0};
            if (::poll(&p, 1, static_cast<int>(left_ms)) < 0 && errno != EINTR) return false;
            if (!PQconsumeInput(m_conn.get())) {
                throw std::runtime_error(std::string("connection: ") +
                                         PQerrorMessage(m_conn.get()));
            }
        }
    }

private:
    /// Reads a string field of the notification payload, which the trigger
    /// builds with json_build_object (so no escapes occur in ids and states).
    static std::string field(const std::string& json, const std::string& key) {
        std::string needle = "\"" + key + "\" : \"";
        auto at = json.find(needle);
        if (at == std::string::npos) {
            needle = "\"" + key + "\":\"";
            at = json.find(needle);
            if (at == std::string::npos) return {};
        }
        at += needle.size();
        return json.substr(at, json.find('"', at) - at);
    }

    ConnPtr m_conn;
};

bool terminal(const std::string& status) {
    return status == "completed" || status == "failed" || status == "cancelled";
}

/// Waits until task `id` reaches a terminal state; returns when that was seen.
long long wait_done(Db& db, const std::string& id, std::string& status) {
    long long seen = 0;
    bool ok = db.wait_status(kWaitTimeoutMs, [&](const std::string& nid, const std::string& st,
                                                 long long now) {
        if (nid != id || !terminal(st)) return false;
        status = st;
        seen = now;
        return true;
    });
    if (!ok) throw std::runtime_error("task " + id + " did not finish within 60 s");
    return seen;
}

/// Waits for DIR/<id> (written whole by bench_child) and returns the pid in it.
pid_t wait_pid_file(int inotify_fd, const std::string& dir, const std::string& id) {
    std::string path = dir + "/" + id;
    long long deadline = realtime_ns() + kWaitTimeoutMs * 1'000'000LL;
    for (;;) {
        if (FILE* f = std::fopen(path.c_str(), "r")) {
            int pid = 0;
            long long started = 0;
            int got = std::fscanf(f, "%d %lld", &pid, &started);
            std::fclose(f);
            if (got == 2 && pid > 0) return pid;
        }
        if (realtime_ns() > deadline) throw std::runtime_error("no child started for " + id);
        pollfd p{inotify_fd, POLLIN, 0};
        if (::poll(&p, 1, 100) > 0) {
            char buf[4096];
            while (::read(inotify_fd, buf, sizeof buf) > 0) {
            }
        }
    }
}

std::string csv_rows_sql(const std::vector<std::string>& ids, const std::string& columns) {
    std::string list;
    for (const auto& id : ids) list += (list.empty() ? "'" : ",'") + id + "'";
    return "SELECT id, " + columns + " FROM tasks WHERE id IN (" + list + ")";
}

std::map<std::string, std::vector<std::string>> fetch_rows(Db& db,
                                                           const std::vector<std::string>& ids,
                                                           const std::string& columns) {
    std::map<std::string, std::vector<std::string>> rows;
    auto r = db.exec(csv_rows_sql(ids, columns));
    for (int i = 0; i < PQntuples(r.get()); ++i) {
        std::vector<std::string> cols;
        for (int c = 1; c < PQnfields(r.get()); ++c) cols.emplace_back(PQgetvalue(r.get(), i, c));
        rows[PQgetvalue(r.get(), i, 0)] = std::move(cols);
    }
    return rows;
}

std::string csv_quote(const std::string& s) {
    std::string out = "\"";
    for (char c : s) {
        if (c == '"') out += '"';
        out += (c == '\n' || c == '\r') ? ' ' : c;
    }
    return out + "\"";
}

constexpr const char* kEpochNs = "(extract(epoch from {}) * 1e9)::bigint";

std::string epoch_ns(const std::string& column) {
    std::string s = kEpochNs;
    return s.replace(s.find("{}"), 2, column);
}

int kill_latency(const std::string& dir, int count) {
    Db db;
    int ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (ino < 0 || inotify_add_watch(ino, dir.c_str(), IN_MOVED_TO | IN_CLOSE_WRITE) < 0) {
        throw std::runtime_error("inotify on " + dir + ": " + std::strerror(errno));
    }
    std::vector<std::string> ids;
    std::map<std::string, std::pair<long long, long long>> times;  // id -> kill, seen
    for (int i = 0; i < count; ++i) {
        std::string id = db.enqueue();
        pid_t pid = wait_pid_file(ino, dir, id);
        // A short pause so the child is asleep, not still starting.
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        long long t0 = realtime_ns();
        if (::kill(pid, SIGKILL) != 0) {
            throw std::runtime_error("kill " + std::to_string(pid) + ": " + std::strerror(errno));
        }
        std::string status;
        long long seen = wait_done(db, id, status);
        ids.push_back(id);
        times[id] = {t0, seen};
    }
    auto rows = fetch_rows(db, ids, epoch_ns("finished_at") + ", status, error_type, error");
    std::printf("task_id,kill_ns,finished_ns,committed_seen_ns,status,error_type,error\n");
    for (const auto& id : ids) {
        const auto& r = rows[id];
        std::printf("%s,%lld,%s,%lld,%s,%s,%s\n", id.c_str(), times[id].first, r[0].c_str(),
                    times[id].second, r[1].c_str(), r[2].c_str(), csv_quote(r[3]).c_str());
    }
    return 0;
}

int latency(int count, int gap_ms) {
    Db db;
    std::vector<std::string> ids;
    std::map<std::string, std::pair<long long, long long>> times;  // id -> enqueue, seen
    for (int i = 0; i < count; ++i) {
        long long t_enqueue = realtime_ns();
        std::string id = db.enqueue();
        std::string status;
        long long seen = wait_done(db, id, status);
        ids.push_back(id);
        times[id] = {t_enqueue, seen};
        std::this_thread::sleep_for(std::chrono::milliseconds(gap_ms));
    }
    auto rows = fetch_rows(db, ids,
                           epoch_ns("created_at") + ", (result->>'started_ns'), " +
                               epoch_ns("started_at") + ", " + epoch_ns("finished_at") +
                               ", status");
    std::printf("task_id,enqueue_ns,created_ns,child_started_ns,claimed_ns,finished_ns,"
                "committed_seen_ns,status\n");
    for (const auto& id : ids) {
        const auto& r = rows[id];
        std::printf("%s,%lld,%s,%s,%s,%s,%lld,%s\n", id.c_str(), times[id].first, r[0].c_str(),
                    r[1].c_str(), r[2].c_str(), r[3].c_str(), times[id].second, r[4].c_str());
    }
    return 0;
}

int dispatch(int count) {
    Db db;
    long long t_enqueue = realtime_ns();
    auto ins = db.exec("INSERT INTO tasks (request, max_attempts) "
                       "SELECT $1::jsonb, 1 FROM generate_series(1, $2::int) "
                       "RETURNING created_at::text",
                       {kRequest, std::to_string(count)});
    long long t_committed = realtime_ns();
    // One INSERT: every row has the same created_at, which names this batch.
    std::string batch = PQgetvalue(ins.get(), 0, 0);
    std::set<std::string> done;
    bool ok = db.wait_status(
        count * 100 + kWaitTimeoutMs,
        [&](const std::string& id, const std::string& st, long long) {
            if (terminal(st)) done.insert(id);
            return done.size() >= static_cast<std::size_t>(count);
        });
    long long t_done = realtime_ns();
    if (!ok) std::fprintf(stderr, "pvbench: only %zu of %d tasks finished\n", done.size(), count);
    auto r = db.exec("SELECT count(*) FILTER (WHERE status = 'completed'), count(*), " +
                         epoch_ns("min(started_at)") + ", " + epoch_ns("max(finished_at)") +
                         " FROM tasks WHERE created_at = $1::timestamptz",
                     {batch});
    std::printf("count,completed,enqueue_ns,enqueue_committed_ns,all_seen_ns,first_started_ns,"
                "last_finished_ns\n");
    std::printf("%d,%s,%lld,%lld,%lld,%s,%s\n", count, PQgetvalue(r.get(), 0, 0), t_enqueue,
                t_committed, t_done, PQgetvalue(r.get(), 0, 2), PQgetvalue(r.get(), 0, 3));
    return ok ? 0 : 1;
}

int one() {
    Db db;
    long long t_enqueue = realtime_ns();
    std::string id = db.enqueue();
    std::string status;
    long long seen = wait_done(db, id, status);
    auto r = db.exec(
        "SELECT json_build_object('id', t.id, 'status', t.status, 'error_type', t.error_type, "
        "'error', t.error, 'result', t.result, 'enqueue_ns', $2::bigint, 'seen_ns', $3::bigint, "
        "'started_ns', " + epoch_ns("t.started_at") + ", 'finished_ns', " +
            epoch_ns("t.finished_at") +
            ", 'attempts', (SELECT json_agg(a ORDER BY a.attempt) FROM task_attempts a "
            "WHERE a.task_id = t.id)) FROM tasks t WHERE t.id = $1",
        {id, std::to_string(t_enqueue), std::to_string(seen)});
    std::printf("%s\n", PQgetvalue(r.get(), 0, 0));
    return 0;
}

int usage() {
    std::fprintf(stderr, "usage: pvbench kill-latency DIR N | latency N GAP_MS | dispatch N | one\n");
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        std::string cmd = argc > 1 ? argv[1] : "";
        if (cmd == "kill-latency" && argc == 4) return kill_latency(argv[2], std::atoi(argv[3]));
        if (cmd == "latency" && argc == 4) return latency(std::atoi(argv[2]), std::atoi(argv[3]));
        if (cmd == "dispatch" && argc == 3) return dispatch(std::atoi(argv[2]));
        if (cmd == "one" && argc == 2) return one();
        return usage();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "pvbench: %s\n", e.what());
        return 1;
    }
}

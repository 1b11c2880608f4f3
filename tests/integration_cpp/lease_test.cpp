// SPDX-License-Identifier: MIT
// Leases, fencing and journal replay on a real PostgreSQL: a private cluster
// started with scripts/pg.sh in a temporary folder, or DATABASE_URL when set.
// Every run works in its own schema, dropped at the end.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <pqxx/pqxx>

#include "journal.hpp"
#include "lease.hpp"
#include "migrations.hpp"
#include "status_record.hpp"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

std::string run_command(const std::string& cmd) {
    std::string out;
    FILE* p = ::popen(cmd.c_str(), "r");
    REQUIRE(p != nullptr);
    char buf[512];
    while (std::fgets(buf, sizeof buf, p)) out += buf;
    int rc = ::pclose(p);
    if (rc != 0)
        FAIL("command failed: " << cmd << "\n" << out);
    while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
    return out;
}

fs::path source_dir() {
    if (const char* dir = std::getenv("PV_SOURCE_DIR"); dir && *dir)
        return dir;
    return PV_SOURCE_DIR_DEFAULT;
}

// The database for the whole run: started on first use, removed at exit.
class TestDatabase {
public:
    TestDatabase() {
        if (const char* url = std::getenv("DATABASE_URL"); url && *url) {
            m_url = url;
        } else {
            char tmpl[] = "/tmp/pv-lease-test-XXXXXX";
            REQUIRE(::mkdtemp(tmpl) != nullptr);
            m_cluster_dir = tmpl;
            // The cluster runs as `postgres` when we are root; it must reach the folder.
            ::chmod(tmpl, 0755);
            m_url = run_command((source_dir() / "scripts/pg.sh").string() + " start " +
                                m_cluster_dir.string() + " 2>&1");
        }
        m_schema = "pv_lease_test_" + std::to_string(::getpid());
        pqxx::connection admin(m_url);
        pqxx::nontransaction tx(admin);
        tx.exec0("DROP SCHEMA IF EXISTS " + m_schema + " CASCADE");
        tx.exec0("CREATE SCHEMA " + m_schema);
        auto conn = connect();
        pv::run_migrations(*conn);
    }

    ~TestDatabase() {
        try {
            pqxx::connection admin(m_url);
            pqxx::nontransaction tx(admin);
            tx.exec0("DROP SCHEMA IF EXISTS " + m_schema + " CASCADE");
        } catch (const std::exception&) {
            // The cluster may already be gone; nothing else to undo.
        }
        if (!m_cluster_dir.empty()) {
            std::string cmd = (source_dir() / "scripts/pg.sh").string() + " destroy " +
                              m_cluster_dir.string() + " >/dev/null 2>&1";
            if (std::system(cmd.c_str()) != 0)
                std::fprintf(stderr, "pg.sh destroy failed\n");
            std::error_code ec;
            fs::remove_all(m_cluster_dir, ec);
        }
    }

    /// A new session that sees only this run's schema.
    std::unique_ptr<pqxx::connection> connect() {
        auto conn = std::make_unique<pqxx::connection>(m_url);
        pqxx::nontransaction tx(*conn);
        tx.exec0("SET search_path TO " + m_schema + ", public");
        return conn;
    }

private:
    std::string m_url;
    std::string m_schema;
    fs::path m_cluster_dir;
};

TestDatabase& db() {
    static TestDatabase instance;
    return instance;
}

// A fresh connection with empty tables for one test case.
std::unique_ptr<pqxx::connection> fresh() {
    auto conn = db().connect();
    pqxx::work tx(*conn);
    tx.exec0("TRUNCATE task_attempts, tasks, workers CASCADE");
    tx.commit();
    return conn;
}

std::string add_worker(pqxx::connection& conn, const std::string& host, int pid,
                       const std::string& heartbeat_at = "now",
                       const std::string& instance = "default", bool stopped = false) {
    pqxx::work tx(conn);
    auto row = tx.exec_params1(
        "INSERT INTO workers (id, host, pid, version, cgroup_mode, max_children, instance,"
        " heartbeat_at, stopped_at)"
        " VALUES (gen_random_uuid(), $1, $2, 'test', 'v1', 2, $3,"
        " CASE WHEN $4 = 'now' THEN now() ELSE $4::timestamptz END,"
        " CASE WHEN $5 THEN now() END)"
        " RETURNING id::text",
        host, pid, instance, heartbeat_at, stopped);
    tx.commit();
    return row[0].as<std::string>();
}

// A task in progress: attempt `attempt` claimed by `worker_id`, with its open attempt row.
std::string add_claimed_task(pqxx::connection& conn, const std::string& worker_id, int attempt = 1,
                             int max_attempts = 3) {
    pqxx::work tx(conn);
    auto row = tx.exec_params1(
        "INSERT INTO tasks (request, status, attempts, max_attempts, worker_id, started_at,"
        " progress, stage)"
        " VALUES ('{}', 'inprogress', $1, $2, $3::uuid, now(), 40, 'render')"
        " RETURNING id::text",
        attempt, max_attempts, worker_id);
    std::string id = row[0].as<std::string>();
    tx.exec_params0(
        "INSERT INTO task_attempts (task_id, attempt, worker_id, host, pid, started_at)"
        " SELECT $1::uuid, $2, w.id, w.host, 999, now() FROM workers w WHERE w.id = $3::uuid",
        id, attempt, worker_id);
    tx.commit();
    return id;
}

// What a claim does: the next attempt goes to `worker_id`.
void reclaim(pqxx::connection& conn, const std::string& task_id, const std::string& worker_id) {
    pqxx::work tx(conn);
    auto row = tx.exec_params1(
        "UPDATE tasks SET status = 'inprogress', attempts = attempts + 1,"
        " worker_id = $2::uuid, started_at = now(), progress = 0, stage = NULL"
        " WHERE id = $1::uuid RETURNING attempts",
        task_id, worker_id);
    tx.exec_params0(
        "INSERT INTO task_attempts (task_id, attempt, worker_id, host, started_at)"
        " SELECT $1::uuid, $2, w.id, w.host, now() FROM workers w WHERE w.id = $3::uuid",
        task_id, row[0].as<int>(), worker_id);
    tx.commit();
}

struct TaskRow {
    std::string status;
    int attempts = 0;
    std::optional<std::string> worker_id;
    std::optional<std::string> error;
    std::optional<std::string> error_type;
    std::optional<std::string> result;
    double progress = 0;
    bool finished = false;
    double not_before_age = 0;  // seconds since not_before
    std::string updated_at;
};

template <class T>
std::optional<T> opt(const pqxx::field& f) {
    if (f.is_null())
        return std::nullopt;
    return f.as<T>();
}

TaskRow task_row(pqxx::connection& conn, const std::string& id) {
    pqxx::work tx(conn);
    auto r = tx.exec_params1(
        "SELECT status, attempts, worker_id::text, error, error_type, result::text, progress,"
        " finished_at IS NOT NULL, EXTRACT(EPOCH FROM now() - not_before)::float8,"
        " updated_at::text"
        " FROM tasks WHERE id = $1::uuid",
        id);
    TaskRow t;
    t.status = r[0].as<std::string>();
    t.attempts = r[1].as<int>();
    t.worker_id = opt<std::string>(r[2]);
    t.error = opt<std::string>(r[3]);
    t.error_type = opt<std::string>(r[4]);
    t.result = opt<std::string>(r[5]);
    t.progress = r[6].as<double>();
    t.finished = r[7].as<bool>();
    t.not_before_age = r[8].as<double>();
    t.updated_at = r[9].as<std::string>();
    return t;
}

struct AttemptRow {
    bool ended = false;
    std::optional<std::string> outcome;
    std::optional<std::string> error;
    std::optional<std::string> ended_at;  // ISO UTC with microseconds
    std::optional<int> oom_kills;
    std::optional<long long> peak;
    std::optional<int> exit_code;
};

std::optional<AttemptRow> attempt_row(pqxx::connection& conn, const std::string& id, int attempt) {
    pqxx::work tx(conn);
    auto rows = tx.exec_params(
        "SELECT ended_at IS NOT NULL, outcome, error,"
        " to_char(ended_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"
        " oom_kills, peak_memory_bytes, exit_code"
        " FROM task_attempts WHERE task_id = $1::uuid AND attempt = $2",
        id, attempt);
    if (rows.empty())
        return std::nullopt;
    AttemptRow a;
    a.ended = rows[0][0].as<bool>();
    a.outcome = opt<std::string>(rows[0][1]);
    a.error = opt<std::string>(rows[0][2]);
    a.ended_at = opt<std::string>(rows[0][3]);
    a.oom_kills = opt<int>(rows[0][4]);
    a.peak = opt<long long>(rows[0][5]);
    a.exit_code = opt<int>(rows[0][6]);
    return a;
}

int count(pqxx::connection& conn, const std::string& sql) {
    pqxx::work tx(conn);
    return tx.exec1(sql)[0].as<int>();
}

int recover(pqxx::connection& conn, const std::string& my_worker,
            std::chrono::seconds lease = 30s) {
    pqxx::work tx(conn);
    int n = pv::recover_expired(tx, lease, my_worker);
    tx.commit();
    return n;
}

pv::FinishRecord finish_of(const std::string& task_id, int attempt, const std::string& worker_id,
                           pv::FinalStatus status) {
    pv::FinishRecord r;
    r.task_id = task_id;
    r.attempt = attempt;
    r.worker_id = worker_id;
    r.pid = 999;
    r.status = status;
    r.ended_at = pv::parse_iso8601("2026-12-03T10:00:00.250000Z");
    r.wall_seconds = 12.5;
    if (status == pv::FinalStatus::Completed) {
        r.exit_code = 0;
        r.outcome = "completed";
        r.result = json{{"output", "/out/a.mp4"}};
    } else {
        r.exit_code = 3;
        r.outcome = "exit_code";
        r.error = "Process exited with code 3";
        r.error_type = "exit_code";
    }
    return r;
}

pv::ApplyResult apply(pqxx::connection& conn, const pv::FinishRecord& rec) {
    pqxx::work tx(conn);
    auto r = pv::apply_finish(tx, rec);
    tx.commit();
    return r;
}

class TempDir {
public:
    TempDir() {
        char tmpl[] = "/tmp/pv-lease-journal-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        m_path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(m_path, ec);
    }
    fs::path file(const std::string& name) const { return m_path / name; }

private:
    fs::path m_path;
};

}  // namespace

TEST_CASE("task cgroup names parse into task keys") {
    auto key = pv::parse_task_cgroup_name("task-0B6F3C1E-8a4e-4d7b-9c51-2f3a4b5c6d7e-12");
    REQUIRE(key);
    CHECK(key->task_id == "0b6f3c1e-8a4e-4d7b-9c51-2f3a4b5c6d7e");
    CHECK(key->attempt == 12);
    CHECK_FALSE(pv::parse_task_cgroup_name("task-0b6f3c1e-8a4e-4d7b-9c51-2f3a4b5c6d7e"));
    CHECK_FALSE(pv::parse_task_cgroup_name("task-xyz-1"));
    CHECK_FALSE(pv::parse_task_cgroup_name("task-0b6f3c1e-8a4e-4d7b-9c51-2f3a4b5c6d7e-0"));
    CHECK_FALSE(pv::parse_task_cgroup_name("task-0b6f3c1e-8a4e-4d7b-9c51-2f3a4b5c6d7e-1x"));
    CHECK_FALSE(pv::parse_task_cgroup_name("supervisor"));
    CHECK(pv::memory_exceeded_text(2148007936ULL) == "Memory limit exceeded: 2048.5MB");
}

TEST_CASE("an expired supervisor's task is requeued with a worker_lost attempt row") {
    auto conn = fresh();
    std::string dead = add_worker(*conn, "render-01", 111, "2026-01-01T00:00:00Z");
    std::string me = add_worker(*conn, "render-02", 222);
    std::string task = add_claimed_task(*conn, dead, 1, 3);

    CHECK(recover(*conn, me) == 1);

    const std::string text =
        "supervisor render-01/111 stopped heartbeating at 2026-01-01T00:00:00Z";
    auto t = task_row(*conn, task);
    CHECK(t.status == "pending");
    CHECK(t.attempts == 1);
    CHECK_FALSE(t.worker_id.has_value());
    CHECK(t.error == text);
    CHECK(t.error_type == "worker_lost");
    CHECK(t.progress == 0);
    CHECK_FALSE(t.finished);
    CHECK(t.not_before_age >= 0);
    CHECK(t.not_before_age < 60);
    auto a = attempt_row(*conn, task, 1);
    REQUIRE(a);
    CHECK(a->ended);
    CHECK(a->outcome == "worker_lost");
    CHECK(a->error == text);

    // Nothing left to recover.
    CHECK(recover(*conn, me) == 0);
}

TEST_CASE("the last attempt of an expired supervisor fails the task as worker_lost") {
    auto conn = fresh();
    std::string dead = add_worker(*conn, "render-01", 111, "2026-01-01T00:00:00Z");
    std::string me = add_worker(*conn, "render-02", 222);
    std::string task = add_claimed_task(*conn, dead, 3, 3);

    CHECK(recover(*conn, me) == 1);
    auto t = task_row(*conn, task);
    CHECK(t.status == "failed");
    CHECK(t.finished);
    CHECK(t.error_type == "worker_lost");
    CHECK(t.error == "supervisor render-01/111 stopped heartbeating at 2026-01-01T00:00:00Z");
    CHECK(attempt_row(*conn, task, 3)->outcome == "worker_lost");
}

TEST_CASE("live supervisors keep their tasks; stopped ones lose them") {
    auto conn = fresh();
    std::string live = add_worker(*conn, "render-01", 111);
    std::string me = add_worker(*conn, "render-02", 222, "2026-01-01T00:00:00Z");
    std::string stopped = add_worker(*conn, "render-03", 333, "now", "default", true);
    std::string live_task = add_claimed_task(*conn, live);
    std::string my_task = add_claimed_task(*conn, me);
    std::string stopped_task = add_claimed_task(*conn, stopped);

    // My own heartbeat is stale, but a supervisor never recovers its own tasks.
    CHECK(recover(*conn, me) == 1);
    CHECK(task_row(*conn, live_task).status == "inprogress");
    CHECK_FALSE(attempt_row(*conn, live_task, 1)->ended);
    CHECK(task_row(*conn, my_task).status == "inprogress");
    CHECK(task_row(*conn, stopped_task).status == "pending");
    CHECK(task_row(*conn, stopped_task).error_type == "worker_lost");

    // A longer lease than the heartbeat age also spares a worker.
    std::string slow = add_worker(*conn, "render-04", 444);
    {
        pqxx::work tx(*conn);
        tx.exec_params0(
            "UPDATE workers SET heartbeat_at = now() - interval '20 seconds'"
            " WHERE id = $1::uuid",
            slow);
        tx.commit();
    }
    std::string slow_task = add_claimed_task(*conn, slow);
    CHECK(recover(*conn, me, 30s) == 0);
    CHECK(recover(*conn, me, 10s) == 1);
    CHECK(task_row(*conn, slow_task).status == "pending");
}

TEST_CASE("a lost task whose cancellation was requested ends cancelled") {
    auto conn = fresh();
    std::string dead = add_worker(*conn, "render-01", 111, "2026-01-01T00:00:00Z");
    std::string me = add_worker(*conn, "render-02", 222);
    std::string task = add_claimed_task(*conn, dead);
    {
        pqxx::work tx(*conn);
        tx.exec_params0("UPDATE tasks SET cancel_requested = true WHERE id = $1::uuid", task);
        tx.commit();
    }
    CHECK(recover(*conn, me) == 1);
    auto t = task_row(*conn, task);
    CHECK(t.status == "cancelled");
    CHECK(t.error_type == "cancelled");
    CHECK(t.finished);
}

TEST_CASE("two recoverers never recover the same task twice") {
    auto conn = fresh();
    std::string dead = add_worker(*conn, "render-01", 111, "2026-01-01T00:00:00Z");
    std::string a = add_worker(*conn, "render-02", 222);
    std::string b = add_worker(*conn, "render-03", 333);
    std::vector<std::string> tasks;
    for (int i = 0; i < 3; ++i) tasks.push_back(add_claimed_task(*conn, dead));

    SUBCASE("interleaved: the second skips the rows the first holds, without waiting") {
        auto c1 = db().connect();
        auto c2 = db().connect();
        pqxx::work t1(*c1);
        CHECK(pv::recover_expired(t1, 30s, a) == 3);
        auto started = std::chrono::steady_clock::now();
        {
            pqxx::work t2(*c2);
            CHECK(pv::recover_expired(t2, 30s, b) == 0);
            t2.commit();
        }
        CHECK(std::chrono::steady_clock::now() - started < 5s);
        t1.commit();
        // Once committed the tasks are pending: nothing for anyone.
        CHECK(recover(*c2, b) == 0);
    }

    SUBCASE("racing threads on many tasks") {
        for (int i = 0; i < 37; ++i) tasks.push_back(add_claimed_task(*conn, dead));
        std::atomic<int> total{0};
        std::atomic<int> errors{0};
        auto worker = [&](const std::string& me) {
            try {
                auto c = db().connect();
                for (int round = 0; round < 3; ++round) total += recover(*c, me);
            } catch (const std::exception&) {
                ++errors;
            }
        };
        std::thread t1(worker, a), t2(worker, b);
        t1.join();
        t2.join();
        CHECK(errors == 0);
        CHECK(total == 40);
    }

    for (const auto& task : tasks) {
        CHECK(task_row(*conn, task).status == "pending");
    }
    CHECK(count(*conn, "SELECT count(*) FROM task_attempts WHERE outcome = 'worker_lost'") ==
          static_cast<int>(tasks.size()));
    CHECK(count(*conn, "SELECT count(*) FROM task_attempts WHERE ended_at IS NULL") == 0);
}

TEST_CASE("a stale write from a presumed-dead supervisor changes nothing") {
    auto conn = fresh();
    std::string old = add_worker(*conn, "render-01", 111, "2026-01-01T00:00:00Z");
    std::string me = add_worker(*conn, "render-02", 222);
    std::string task = add_claimed_task(*conn, old, 1, 3);
    REQUIRE(recover(*conn, me) == 1);
    auto lost_attempt = attempt_row(*conn, task, 1);

    // The old supervisor wakes up and reports its child's end: the task is pending now.
    auto late = finish_of(task, 1, old, pv::FinalStatus::Completed);
    CHECK_FALSE(apply(*conn, late).applied());
    auto pending = task_row(*conn, task);
    CHECK(pending.status == "pending");
    CHECK_FALSE(pending.result.has_value());

    // Another supervisor claims attempt 2; the old one's writes still do nothing.
    reclaim(*conn, task, me);
    CHECK_FALSE(apply(*conn, late).applied());
    auto failed = finish_of(task, 1, old, pv::FinalStatus::Failed);
    CHECK_FALSE(apply(*conn, failed).applied());
    {
        pqxx::work tx(*conn);
        CHECK_FALSE(pv::apply_progress(tx, {task, 1, old, 99, "mux"}).applied());
        tx.commit();
    }
    auto t = task_row(*conn, task);
    CHECK(t.status == "inprogress");
    CHECK(t.attempts == 2);
    CHECK(t.worker_id == me);
    CHECK(t.progress == 0);
    CHECK_FALSE(t.result.has_value());
    auto a1 = attempt_row(*conn, task, 1);
    CHECK(a1->outcome == "worker_lost");
    CHECK(a1->ended_at == lost_attempt->ended_at);
    CHECK_FALSE(attempt_row(*conn, task, 2)->ended);

    // The rightful owner's write goes through.
    CHECK(apply(*conn, finish_of(task, 2, me, pv::FinalStatus::Completed)).applied());
    CHECK(task_row(*conn, task).status == "completed");
}

TEST_CASE("a recovered task waits out the retry backoff before it can be claimed again") {
    auto conn = fresh();
    std::string dead = add_worker(*conn, "render-01", 111, "2026-01-01T00:00:00Z");
    std::string me = add_worker(*conn, "render-02", 222);
    std::string second = add_claimed_task(*conn, dead, 2, 3);
    std::string last = add_claimed_task(*conn, dead, 3, 3);
    std::vector<int> asked;
    auto delay = [&](int attempt) {
        asked.push_back(attempt);
        return 40.0 * attempt;
    };
    {
        pqxx::work tx(*conn);
        CHECK(pv::recover_expired(tx, 30s, me, delay) == 2);
        tx.commit();
    }
    // Only the task that is retried asks for a delay, with its lost attempt's number.
    CHECK(asked == std::vector<int>{2});
    auto t = task_row(*conn, second);
    CHECK(t.status == "pending");
    CHECK(t.not_before_age < -79);  // not_before is 80 s ahead
    CHECK(t.not_before_age > -81);
    CHECK(task_row(*conn, last).status == "failed");
    CHECK(count(*conn,
                "SELECT count(*) FROM tasks WHERE status = 'pending'"
                " AND not_before <= now()") == 0);
}

TEST_CASE("a supervisor learns which of its running attempts were taken from it") {
    auto conn = fresh();
    std::string me = add_worker(*conn, "render-01", 111, "2026-01-01T00:00:00Z");
    std::string peer = add_worker(*conn, "render-02", 222);
    std::string kept = add_claimed_task(*conn, me);
    std::string taken = add_claimed_task(*conn, me, 2, 3);
    {
        // My heartbeat lapsed: the peer recovers both; then I claim `kept` again.
        pqxx::work tx(*conn);
        CHECK(pv::recover_expired(tx, 30s, peer) == 2);
        tx.commit();
    }
    reclaim(*conn, kept, me);  // attempt 2 of `kept` is mine again
    pqxx::work tx(*conn);
    auto lost = pv::lost_ownership(tx, me, {{kept, 2}, {taken, 2}, {kept, 1}});
    CHECK(lost == std::set<pv::TaskKey>{{taken, 2}, {kept, 1}});
    CHECK(pv::lost_ownership(tx, me, {}).empty());
}

TEST_CASE("a live supervisor resolves claims it is not running") {
    auto conn = fresh();
    std::string me = add_worker(*conn, "render-01", 111);
    std::string other = add_worker(*conn, "render-02", 222);
    std::string running = add_claimed_task(*conn, me);
    std::string forgotten = add_claimed_task(*conn, me, 3, 3);
    std::string fresh_claim = add_claimed_task(*conn, me);
    std::string not_mine = add_claimed_task(*conn, other);
    {
        pqxx::work tx(*conn);
        tx.exec_params0(
            "UPDATE tasks SET started_at = now() - interval '1 minute'"
            " WHERE id <> $1::uuid",
            fresh_claim);
        tx.commit();
    }
    pqxx::work tx(*conn);
    CHECK(pv::recover_untracked(tx, me, {{running, 1}}, 10s) == 1);
    tx.commit();
    auto t = task_row(*conn, forgotten);
    CHECK(t.status == "failed");
    CHECK(t.error_type == "worker_lost");
    CHECK(t.error == "supervisor render-01/111 lost track of the attempt");
    CHECK(attempt_row(*conn, forgotten, 3)->outcome == "worker_lost");
    CHECK(task_row(*conn, running).status == "inprogress");
    CHECK(task_row(*conn, fresh_claim).status == "inprogress");
    CHECK(task_row(*conn, not_mine).status == "inprogress");
}

TEST_CASE("apply_finish records the death time and the final state") {
    auto conn = fresh();
    std::string me = add_worker(*conn, "render-01", 111);

    SUBCASE("completed") {
        std::string task = add_claimed_task(*conn, me);
        auto rec = finish_of(task, 1, me, pv::FinalStatus::Completed);
        auto r = apply(*conn, rec);
        CHECK(r.task_row);
        CHECK(r.attempt_row);
        auto t = task_row(*conn, task);
        CHECK(t.status == "completed");
        CHECK(t.progress == 100);
        CHECK(t.finished);
        CHECK_FALSE(t.error.has_value());
        CHECK(json::parse(*t.result) == *rec.result);
        auto a = attempt_row(*conn, task, 1);
        CHECK(a->ended_at == "2026-12-03T10:00:00.250000Z");
        CHECK(a->outcome == "completed");
        CHECK(a->exit_code == 0);
    }

    SUBCASE("retry at not_before") {
        std::string task = add_claimed_task(*conn, me);
        auto rec = finish_of(task, 1, me, pv::FinalStatus::Retry);
        rec.not_before = std::chrono::system_clock::now() - 10s;
        CHECK(apply(*conn, rec).applied());
        auto t = task_row(*conn, task);
        CHECK(t.status == "pending");
        CHECK_FALSE(t.worker_id.has_value());
        CHECK(t.error == "Process exited with code 3");
        CHECK(t.error_type == "exit_code");
        CHECK(t.not_before_age > 9);
        CHECK(t.not_before_age < 60);
    }

    SUBCASE("a payload the database refuses still ends the attempt") {
        std::string task = add_claimed_task(*conn, me);
        auto rec = finish_of(task, 1, me, pv::FinalStatus::Completed);
        rec.result = json{{"text", std::string("a\0b", 3)}};  // jsonb refuses \u0000
        auto r = apply(*conn, rec);
        CHECK(r.task_row);
        CHECK(r.attempt_row);
        auto t = task_row(*conn, task);
        CHECK(t.status == "completed");
        CHECK_FALSE(t.result.has_value());
        pqxx::work tx(*conn);
        auto tail =
            tx.exec_params1("SELECT stderr_tail FROM task_attempts WHERE task_id = $1::uuid", task);
        CHECK(tail[0].as<std::string>().rfind("result/stderr not stored: ", 0) == 0);
    }

    SUBCASE("a missing attempt row is created for the rightful owner") {
        std::string task = add_claimed_task(*conn, me);
        {
            pqxx::work tx(*conn);
            tx.exec_params0("DELETE FROM task_attempts WHERE task_id = $1::uuid", task);
            tx.commit();
        }
        auto r = apply(*conn, finish_of(task, 1, me, pv::FinalStatus::Failed));
        CHECK(r.task_row);
        CHECK(r.attempt_row);
        auto a = attempt_row(*conn, task, 1);
        REQUIRE(a);
        CHECK(a->outcome == "exit_code");
        CHECK(a->ended_at == "2026-12-03T10:00:00.250000Z");
    }
}

TEST_CASE("several finishes go in one statement, each fenced on its own") {
    auto conn = fresh();
    std::string me = add_worker(*conn, "render-01", 111);
    std::string other = add_worker(*conn, "render-02", 222);
    std::string done = add_claimed_task(*conn, me);
    std::string taken = add_claimed_task(*conn, other);  // not ours: fenced out
    std::string rowless = add_claimed_task(*conn, me);
    {
        pqxx::work tx(*conn);
        tx.exec_params0("DELETE FROM task_attempts WHERE task_id = $1::uuid", rowless);
        tx.commit();
    }
    auto failed = finish_of(rowless, 1, me, pv::FinalStatus::Failed);
    failed.stderr_tail = std::string("bad ") + '\0' + " byte " + '\xff' + " end";
    std::vector<pv::FinishRecord> records = {finish_of(done, 1, me, pv::FinalStatus::Completed),
                                             finish_of(taken, 1, me, pv::FinalStatus::Failed),
                                             failed};
    pqxx::work tx(*conn);
    auto row = tx.exec_params1(std::string(pv::finish_attempts_ctes()) + " SELECT answer FROM f",
                               pv::finish_attempts_param(records));
    tx.commit();
    auto answer = pv::parse_finish_answer(row[0].as<std::string>());
    REQUIRE(answer.size() == 3);
    CHECK(answer[0].task_row);
    CHECK(answer[0].attempt_row);
    CHECK_FALSE(answer[1].task_row);
    CHECK_FALSE(answer[1].attempt_row);
    CHECK(answer[2].task_row);
    CHECK(answer[2].attempt_row);  // inserted for the rightful owner

    CHECK(task_row(*conn, done).status == "completed");
    CHECK(json::parse(*task_row(*conn, done).result) == json{{"output", "/out/a.mp4"}});
    CHECK(task_row(*conn, taken).status == "inprogress");
    CHECK(task_row(*conn, rowless).status == "failed");
    auto a = attempt_row(*conn, rowless, 1);
    REQUIRE(a);
    CHECK(a->outcome == "exit_code");
    pqxx::work read(*conn);
    auto tail = read.exec_params1("SELECT stderr_tail FROM task_attempts WHERE task_id = $1::uuid",
                                  rowless);
    // A NUL and a byte that is not UTF-8 are kept as U+FFFD, not refused.
    CHECK(tail[0].as<std::string>() == "bad \xEF\xBF\xBD byte \xEF\xBF\xBD end");
}

TEST_CASE("journal replay applies an entry once, however often it is replayed") {
    auto conn = fresh();
    TempDir dir;
    std::string me = add_worker(*conn, "render-01", 111);
    std::string task = add_claimed_task(*conn, me);
    auto entry = pv::to_json(finish_of(task, 1, me, pv::FinalStatus::Completed));

    pv::Journal journal(dir.file("journal-default.jsonl"));
    journal.append(entry);
    auto first = pv::replay_journal(journal, *conn);
    CHECK(first.applied == 1);
    CHECK(journal.empty());
    auto after_first = task_row(*conn, task);
    CHECK(after_first.status == "completed");

    // A crash before the journal was emptied: the same entry is replayed again.
    journal.append(entry);
    journal.append(entry);
    auto again = pv::replay_journal(journal, *conn);
    CHECK(again.applied == 0);
    CHECK(again.skipped == 2);
    auto after_again = task_row(*conn, task);
    CHECK(after_again.updated_at == after_first.updated_at);
    CHECK(count(*conn, "SELECT count(*) FROM task_attempts") == 1);
}

TEST_CASE("journal replay never writes over a newer state") {
    auto conn = fresh();
    TempDir dir;
    std::string me = add_worker(*conn, "render-01", 111);
    std::string other = add_worker(*conn, "render-02", 222);
    pv::Journal journal(dir.file("journal-default.jsonl"));

    SUBCASE("the task was completed by someone else") {
        std::string task = add_claimed_task(*conn, me);
        journal.append(pv::to_json(finish_of(task, 1, me, pv::FinalStatus::Failed)));
        {
            pqxx::work tx(*conn);
            tx.exec_params0(
                "UPDATE tasks SET status = 'completed', result = '{\"by\":\"other\"}'"
                " WHERE id = $1::uuid",
                task);
            tx.exec_params0(
                "UPDATE task_attempts SET ended_at = now(), outcome = 'completed'"
                " WHERE task_id = $1::uuid",
                task);
            tx.commit();
        }
        auto stats = pv::replay_journal(journal, *conn);
        CHECK(stats.skipped == 1);
        auto t = task_row(*conn, task);
        CHECK(t.status == "completed");
        CHECK(json::parse(*t.result) == json{{"by", "other"}});
        CHECK(attempt_row(*conn, task, 1)->outcome == "completed");
    }

    SUBCASE("the task was recovered and re-claimed with the next attempt") {
        std::string task = add_claimed_task(*conn, me);
        journal.append(pv::to_json(finish_of(task, 1, me, pv::FinalStatus::Completed)));
        {
            pqxx::work tx(*conn);
            tx.exec_params0(
                "UPDATE workers SET heartbeat_at = now() - interval '1 hour'"
                " WHERE id = $1::uuid",
                me);
            tx.commit();
        }
        REQUIRE(recover(*conn, other) == 1);
        reclaim(*conn, task, me);  // the same supervisor, back, claims attempt 2
        auto stats = pv::replay_journal(journal, *conn);
        CHECK(stats.skipped == 1);
        auto t = task_row(*conn, task);
        CHECK(t.status == "inprogress");
        CHECK(t.attempts == 2);
        CHECK_FALSE(attempt_row(*conn, task, 2)->ended);
        CHECK(attempt_row(*conn, task, 1)->outcome == "worker_lost");
    }

    SUBCASE("an old progress report does not move progress backwards") {
        std::string task = add_claimed_task(*conn, me);  // progress 40
        journal.append(pv::to_json(pv::ProgressRecord{task, 1, me, 20, "fetch"}));
        journal.append(pv::to_json(pv::ProgressRecord{task, 1, me, 60, "encode"}));
        auto stats = pv::replay_journal(journal, *conn);
        CHECK(stats.skipped == 1);
        CHECK(stats.applied == 1);
        CHECK(task_row(*conn, task).progress == 60);
    }

    CHECK(journal.empty());
}

TEST_CASE("journal replay drops entries the database refuses and stops when it is gone") {
    auto conn = fresh();
    TempDir dir;
    std::string me = add_worker(*conn, "render-01", 111);
    std::string task = add_claimed_task(*conn, me);
    pv::Journal journal(dir.file("journal-default.jsonl"));

    auto bad = pv::to_json(finish_of("not-a-uuid", 1, me, pv::FinalStatus::Failed));
    journal.append(bad);
    journal.append(json{{"kind", "no_such_kind"}});
    journal.append(pv::to_json(finish_of(task, 1, me, pv::FinalStatus::Failed)));
    auto stats = pv::replay_journal(journal, *conn);
    CHECK(stats.rejected == 2);
    CHECK(stats.applied == 1);
    CHECK(journal.empty());

    // The session dies under the replay: the entry stays for the next try.
    std::string task2 = add_claimed_task(*conn, me);
    journal.append(pv::to_json(finish_of(task2, 1, me, pv::FinalStatus::Completed)));
    auto victim = db().connect();
    int backend = victim->backendpid();
    {
        pqxx::work tx(*conn);
        tx.exec_params1("SELECT pg_terminate_backend($1)", backend);
        tx.commit();
    }
    std::this_thread::sleep_for(100ms);
    CHECK_THROWS_AS(pv::replay_journal(journal, *victim), pqxx::broken_connection);
    CHECK(journal.entries().size() == 1);
    CHECK(task_row(*conn, task2).status == "inprogress");
    CHECK(pv::replay_journal(journal, *conn).applied == 1);
    CHECK(task_row(*conn, task2).status == "completed");
}

TEST_CASE("startup resolves the tasks of this host and instance's earlier lives") {
    auto conn = fresh();
    // The earlier life heartbeated a moment ago: no lease wait for our own rows.
    std::string before = add_worker(*conn, "render-01", 500, "now", "blue");
    std::string sibling = add_worker(*conn, "render-01", 600, "now", "green");
    std::string elsewhere = add_worker(*conn, "render-02", 500, "now", "blue");
    std::string me = add_worker(*conn, "render-01", 700, "now", "blue");

    std::string oom_task = add_claimed_task(*conn, before, 1, 3);
    std::string plain_task = add_claimed_task(*conn, before, 2, 3);
    std::string sibling_task = add_claimed_task(*conn, sibling);
    std::string elsewhere_task = add_claimed_task(*conn, elsewhere);
    std::string my_task = add_claimed_task(*conn, me);

    std::map<pv::TaskKey, pv::CgroupStats> evidence;
    evidence[{oom_task, 1}] = pv::CgroupStats{1, 2148007936ULL, false};
    evidence[{plain_task, 2}] = pv::CgroupStats{0, 1048576ULL, false};

    SUBCASE("memory_limit is not retried by default") {
        pqxx::work tx(*conn);
        CHECK(pv::recover_own_previous_life(tx, "render-01", "blue", me, evidence).size() == 2);
        tx.commit();
        auto t = task_row(*conn, oom_task);
        CHECK(t.status == "failed");
        CHECK(t.error_type == "memory_limit");
        CHECK(t.error == "Memory limit exceeded: 2048.5MB");
    }

    SUBCASE("memory_limit retried with --retry-on memory_limit") {
        pqxx::work tx(*conn);
        CHECK(pv::recover_own_previous_life(tx, "render-01", "blue", me, evidence, {"memory_limit"})
                  .size() == 2);
        tx.commit();
        CHECK(task_row(*conn, oom_task).status == "pending");
    }

    auto a = attempt_row(*conn, oom_task, 1);
    CHECK(a->outcome == "memory_limit");
    CHECK(a->error == "Memory limit exceeded: 2048.5MB");
    CHECK(a->oom_kills == 1);
    CHECK(a->peak == 2148007936LL);

    auto plain = task_row(*conn, plain_task);
    CHECK(plain.status == "pending");
    CHECK(plain.error_type == "worker_lost");
    CHECK(plain.error == "supervisor render-01/500 restarted");
    auto pa = attempt_row(*conn, plain_task, 2);
    CHECK(pa->outcome == "worker_lost");
    CHECK(pa->peak == 1048576LL);

    CHECK(task_row(*conn, sibling_task).status == "inprogress");
    CHECK(task_row(*conn, elsewhere_task).status == "inprogress");
    CHECK(task_row(*conn, my_task).status == "inprogress");
    CHECK(count(*conn, "SELECT count(*) FROM workers WHERE stopped_at IS NOT NULL") == 1);

    // The earlier life's row is now stopped, so the lease sweep agrees with it.
    CHECK(recover(*conn, me) == 0);
}

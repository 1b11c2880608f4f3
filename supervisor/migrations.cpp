// SPDX-License-Identifier: MIT
#include "migrations.hpp"

#include <array>

namespace pv {

namespace {

struct Migration {
    int version;
    const char* sql;
};

// Never edit a migration that has shipped; append a new one.
constexpr std::array kMigrations{
    Migration{1, R"sql(
CREATE TABLE workers (
    id            uuid PRIMARY KEY,
    host          text NOT NULL,
    pid           integer NOT NULL,
    version       text NOT NULL,
    cgroup_mode   text NOT NULL,
    max_children  integer NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    stopped_at    timestamptz
);

CREATE TABLE tasks (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending','inprogress','completed','failed','cancelled')),
    request          jsonb NOT NULL,
    error            text,
    error_type       text,
    result           jsonb,
    attempts         integer NOT NULL DEFAULT 0,
    max_attempts     integer NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    timeout_seconds  double precision CHECK (timeout_seconds > 0),
    progress         double precision NOT NULL DEFAULT 0,
    stage            text,
    worker_id        uuid REFERENCES workers(id),
    cancel_requested boolean NOT NULL DEFAULT false,
    not_before       timestamptz NOT NULL DEFAULT now(),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz
);
CREATE INDEX tasks_pending_idx ON tasks (not_before, created_at) WHERE status = 'pending';
CREATE INDEX tasks_inprogress_idx ON tasks (worker_id) WHERE status = 'inprogress';

CREATE TABLE task_attempts (
    task_id            uuid NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    attempt            integer NOT NULL,
    worker_id          uuid REFERENCES workers(id),
    host               text NOT NULL,
    pid                integer,
    cgroup_mode        text,
    started_at         timestamptz NOT NULL DEFAULT now(),
    ended_at           timestamptz,
    exit_code          integer,
    signal             integer,
    core_dumped        boolean,
    oom_kills          integer,
    peak_memory_bytes  bigint,
    cpu_user_seconds   double precision,
    cpu_sys_seconds    double precision,
    wall_seconds       double precision,
    outcome            text,
    error              text,
    stderr_tail        text,
    PRIMARY KEY (task_id, attempt)
);

-- New tasks wake every listening supervisor.
CREATE FUNCTION pv_notify_task() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('pv_tasks', NEW.id::text);
    RETURN NEW;
END $$;
CREATE TRIGGER tasks_notify_insert AFTER INSERT ON tasks
    FOR EACH ROW EXECUTE FUNCTION pv_notify_task();
-- A task put back to pending (retry) wakes them too.
CREATE TRIGGER tasks_notify_requeue AFTER UPDATE OF status ON tasks
    FOR EACH ROW WHEN (NEW.status = 'pending' AND OLD.status <> 'pending')
    EXECUTE FUNCTION pv_notify_task();

-- Cancellation: UPDATE tasks SET cancel_requested = true WHERE id = ...
CREATE FUNCTION pv_notify_cancel() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('pv_cancel', NEW.id::text);
    RETURN NEW;
END $$;
CREATE TRIGGER tasks_notify_cancel AFTER UPDATE OF cancel_requested ON tasks
    FOR EACH ROW WHEN (NEW.cancel_requested AND NOT OLD.cancel_requested)
    EXECUTE FUNCTION pv_notify_cancel();

-- Progress and status changes for live views (pvctl watch).
CREATE FUNCTION pv_notify_progress() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('pv_progress', json_build_object(
        'id', NEW.id, 'status', NEW.status, 'progress', NEW.progress,
        'stage', NEW.stage)::text);
    RETURN NEW;
END $$;
CREATE TRIGGER tasks_notify_progress AFTER UPDATE OF progress, stage, status ON tasks
    FOR EACH ROW EXECUTE FUNCTION pv_notify_progress();
)sql"},
    Migration{2, R"sql(
-- Several supervisors may run on one host; startup recovery only resolves the
-- tasks of earlier lives of the same host and instance.
ALTER TABLE workers ADD COLUMN instance text NOT NULL DEFAULT 'default';
CREATE INDEX workers_host_instance_idx ON workers (host, instance);
-- Lease recovery scans live workers by heartbeat age.
CREATE INDEX workers_heartbeat_idx ON workers (heartbeat_at) WHERE stopped_at IS NULL;
)sql"},
    Migration{3, R"sql(
-- The claim takes the oldest runnable pending tasks: walking an index that
-- starts with created_at stops after LIMIT rows, where (not_before, created_at)
-- made every claim sort the whole queue. not_before is checked in the index.
DROP INDEX tasks_pending_idx;
CREATE INDEX tasks_pending_idx ON tasks (created_at, not_before) WHERE status = 'pending';
)sql"},
};

}  // namespace

int latest_schema_version() {
    return kMigrations.back().version;
}

int run_migrations(pqxx::connection& conn) {
    {
        pqxx::work tx(conn);
        tx.exec0(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY,"
            " applied_at timestamptz NOT NULL DEFAULT now())");
        tx.commit();
    }
    int applied = 0;
    for (const auto& m : kMigrations) {
        pqxx::work tx(conn);
        // One migrator at a time across all supervisors and tools.
        tx.exec("SELECT pg_advisory_xact_lock(7270101)");
        auto done = tx.exec_params("SELECT 1 FROM schema_migrations WHERE version = $1", m.version);
        if (!done.empty())
            continue;
        tx.exec0(m.sql);
        tx.exec_params0("INSERT INTO schema_migrations (version) VALUES ($1)", m.version);
        tx.commit();
        ++applied;
    }
    return applied;
}

}  // namespace pv

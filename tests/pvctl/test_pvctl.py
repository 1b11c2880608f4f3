# SPDX-License-Identifier: MIT
# pvctl against a real PostgreSQL: each command's effect on the rows, its text
# and --json output, and its exit code (0 ok, 1 not found / wrong state,
# 2 usage or invalid request, 3 database unreachable).
import json
import os
import signal
import subprocess
import time
import uuid

import pytest

GOOD_REQUEST = {
    "output_filename": "hello.mp4",
    "scenes": [
        {"type": "image", "image": "/srv/media/Aqua.jpg", "duration": 3,
         "text": {"content": "Don't blink: it's spring", "position": "bottom"}},
        {"type": "image", "image": "/srv/media/LadyBird.jpg", "duration": 3},
    ],
}


def insert_task(db, status="pending", **columns):
    columns.setdefault("request", json.dumps(GOOD_REQUEST))
    columns["status"] = status
    names = ", ".join(columns)
    marks = ", ".join(["%s"] * len(columns))
    with db.cursor() as cur:
        cur.execute(f"INSERT INTO tasks ({names}) VALUES ({marks}) RETURNING id::text",
                    list(columns.values()))
        return cur.fetchone()[0]


def task_row(db, task_id):
    with db.cursor() as cur:
        cur.execute("SELECT status, error_type, error, cancel_requested, attempts, max_attempts, "
                    "timeout_seconds, request FROM tasks WHERE id = %s", (task_id,))
        row = cur.fetchone()
    keys = ["status", "error_type", "error", "cancel_requested", "attempts", "max_attempts",
            "timeout_seconds", "request"]
    return dict(zip(keys, row)) if row else None


def add_failed_attempt(db, task_id):
    worker = str(uuid.uuid4())
    with db.cursor() as cur:
        cur.execute("INSERT INTO workers (id, host, pid, version, cgroup_mode, max_children) "
                    "VALUES (%s, 'render-1', 4242, '0.1.0', 'v1', 2)", (worker,))
        cur.execute(
            "INSERT INTO task_attempts (task_id, attempt, worker_id, host, pid, cgroup_mode, "
            "ended_at, signal, oom_kills, peak_memory_bytes, cpu_user_seconds, cpu_sys_seconds, "
            "wall_seconds, outcome, error, stderr_tail) VALUES (%s, 1, %s, 'render-1', 31337, "
            "'v1', now(), 9, 1, 64172851, 1.25, 0.5, 3.4, 'memory_limit', "
            "'Memory limit exceeded: 61.2MB', 'last words')", (task_id, worker))
        cur.execute("UPDATE tasks SET status = 'failed', attempts = 1, error_type = "
                    "'memory_limit', error = 'Memory limit exceeded: 61.2MB' WHERE id = %s",
                    (task_id,))


# --- enqueue -------------------------------------------------------------------

def test_enqueue_prints_the_id_and_inserts_a_pending_task(pvctl, db, tmp_path):
    path = tmp_path / "req.json"
    path.write_text(json.dumps(GOOD_REQUEST))
    r = pvctl("enqueue", str(path), "--max-attempts", "5", "--timeout", "42.5")
    assert r.returncode == 0, r.stderr
    task_id = r.stdout.strip()
    uuid.UUID(task_id)
    row = task_row(db, task_id)
    assert row["status"] == "pending"
    assert row["max_attempts"] == 5
    assert row["timeout_seconds"] == 42.5
    assert row["request"] == GOOD_REQUEST


def test_enqueue_reads_stdin_and_uses_column_defaults(pvctl, db):
    r = pvctl("enqueue", "-", "--json", stdin=json.dumps(GOOD_REQUEST))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert set(doc) == {"id", "status", "max_attempts", "timeout_seconds"}
    assert doc["status"] == "pending"
    assert doc["max_attempts"] == 3
    assert doc["timeout_seconds"] is None
    assert task_row(db, doc["id"])["timeout_seconds"] is None


def test_enqueue_refuses_an_invalid_request_with_the_validators_message(pvctl, db):
    bad = {"scenes": [{"type": "image", "image": "/srv/a.jpg", "duration": -3}]}
    r = pvctl("enqueue", "-", stdin=json.dumps(bad))
    assert r.returncode == 2
    assert "invalid request" in r.stderr
    assert "scenes[0].duration" in r.stderr
    assert "Traceback" not in r.stderr and "terminate called" not in r.stderr
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM tasks")
        assert cur.fetchone()[0] == 0


def test_enqueue_refuses_text_that_is_not_json(pvctl, db):
    r = pvctl("enqueue", "-", "--json", stdin="{not json")
    assert r.returncode == 2
    assert "not valid JSON" in r.stderr
    assert json.loads(r.stdout)["exit_code"] == 2


def test_enqueue_missing_file_is_a_usage_error(pvctl, tmp_path):
    r = pvctl("enqueue", str(tmp_path / "nope.json"))
    assert r.returncode == 2
    assert "cannot read" in r.stderr


def test_enqueue_no_validate_inserts_what_the_renderer_must_refuse(pvctl, db):
    bad = {"scenes": [{"type": "image", "image": "/srv/a.jpg", "duration": -3}]}
    r = pvctl("enqueue", "-", "--no-validate", stdin=json.dumps(bad))
    assert r.returncode == 0, r.stderr
    assert task_row(db, r.stdout.strip())["request"] == bad


# --- show ----------------------------------------------------------------------

def test_show_text_names_the_signal_and_memory(pvctl, db):
    task_id = insert_task(db)
    add_failed_attempt(db, task_id)
    r = pvctl("show", task_id)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "failed (memory_limit)" in out
    assert "Memory limit exceeded: 61.2MB" in out
    assert "SIGKILL (9)" in out
    assert "61.2 MB" in out
    assert "1.75 s (1.25 user + 0.50 sys)" in out
    assert "pid 31337 on render-1" in out
    assert "oom kills 1" in out
    assert "wall 3.4 s" in out
    assert "last words" not in out
    assert "last words" in pvctl("show", task_id, "--stderr").stdout


def test_show_json_shape(pvctl, db):
    task_id = insert_task(db, result=json.dumps({"output": "/out/hello.mp4"}))
    add_failed_attempt(db, task_id)
    r = pvctl("show", task_id, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    for key in ["id", "status", "error_type", "error", "progress", "stage", "output", "result",
                "attempt_count", "max_attempts", "timeout_seconds", "cancel_requested",
                "created_at", "started_at", "finished_at", "updated_at", "attempts"]:
        assert key in doc, key
    assert doc["id"] == task_id
    assert doc["output"] == "/out/hello.mp4"
    [attempt] = doc["attempts"]
    assert attempt["signal"] == 9 and attempt["signal_name"] == "SIGKILL"
    assert attempt["peak_memory_mb"] == 61.2
    assert attempt["oom_kills"] == 1
    assert attempt["outcome"] == "memory_limit"
    assert "stderr_tail" not in attempt


def test_show_accepts_a_unique_prefix(pvctl, db):
    task_id = insert_task(db)
    r = pvctl("show", task_id[:8], "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["id"] == task_id


def test_show_unknown_task_is_exit_1_and_garbage_is_exit_2(pvctl):
    r = pvctl("show", str(uuid.uuid4()))
    assert r.returncode == 1
    assert "no task" in r.stderr
    r = pvctl("show", "not-a-task!")
    assert r.returncode == 2


# --- list ----------------------------------------------------------------------

def test_list_filters_by_status_and_limits(pvctl, db):
    pending = [insert_task(db) for _ in range(3)]
    failed = insert_task(db, "failed", error_type="asset", error="scenes[0].image: not found")
    r = pvctl("list", "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert {row["id"] for row in rows} == set(pending) | {failed}
    for key in ["id", "status", "progress", "stage", "error_type", "error", "attempt_count",
                "max_attempts", "output_filename", "output", "created_at"]:
        assert key in rows[0], key

    rows = json.loads(pvctl("list", "--status", "failed", "--json").stdout)
    assert [row["id"] for row in rows] == [failed]
    assert len(json.loads(pvctl("list", "--limit", "2", "--json").stdout)) == 2

    text = pvctl("list").stdout
    assert failed in text and "asset: scenes[0].image: not found" in text


def test_list_rejects_an_unknown_status(pvctl):
    assert pvctl("list", "--status", "sleeping").returncode == 2


def test_list_of_an_empty_queue(pvctl):
    r = pvctl("list")
    assert r.returncode == 0
    assert "no tasks" in r.stdout
    assert json.loads(pvctl("list", "--json").stdout) == []


# --- cancel and retry ----------------------------------------------------------

def test_cancel_pending_is_immediate(pvctl, db):
    task_id = insert_task(db)
    r = pvctl("cancel", task_id, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"id": task_id, "result": "cancelled"}
    row = task_row(db, task_id)
    assert row["status"] == "cancelled"
    assert row["error_type"] == "cancelled"
    assert row["error"] == "Cancelled by request"
    r = pvctl("cancel", task_id)
    assert r.returncode == 1
    assert "already cancelled" in r.stderr


def test_cancel_running_sets_the_flag_for_the_supervisor(pvctl, db):
    task_id = insert_task(db, "inprogress")
    r = pvctl("cancel", task_id)
    assert r.returncode == 0, r.stderr
    assert "cancel requested" in r.stdout
    row = task_row(db, task_id)
    assert row["status"] == "inprogress"
    assert row["cancel_requested"] is True


def test_cancel_completed_is_refused(pvctl, db):
    task_id = insert_task(db, "completed")
    r = pvctl("cancel", task_id, "--json")
    assert r.returncode == 1
    assert "already completed" in json.loads(r.stdout)["error"]


def test_retry_puts_an_exhausted_task_back_with_one_more_attempt(pvctl, db):
    task_id = insert_task(db, max_attempts=1)
    add_failed_attempt(db, task_id)
    with db.cursor() as cur:
        cur.execute("UPDATE tasks SET cancel_requested = true, not_before = now() + "
                    "interval '1 hour' WHERE id = %s", (task_id,))
    r = pvctl("retry", task_id, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"id": task_id, "status": "pending", "attempt_count": 1,
                                    "max_attempts": 2}
    row = task_row(db, task_id)
    assert row["status"] == "pending"
    assert row["error"] is None and row["error_type"] is None
    assert row["cancel_requested"] is False
    with db.cursor() as cur:
        cur.execute("SELECT not_before <= now() FROM tasks WHERE id = %s", (task_id,))
        assert cur.fetchone()[0] is True


def test_retry_keeps_a_larger_allowance(pvctl, db):
    task_id = insert_task(db, "cancelled", max_attempts=5)
    assert pvctl("retry", task_id).returncode == 0
    assert task_row(db, task_id)["max_attempts"] == 5


def test_retry_refuses_pending_and_completed(pvctl, db):
    for status in ["pending", "inprogress", "completed"]:
        task_id = insert_task(db, status)
        r = pvctl("retry", task_id)
        assert r.returncode == 1, status
        assert task_row(db, task_id)["status"] == status


# --- migrate, help, database errors ---------------------------------------------

def test_migrate_is_idempotent(pvctl):
    r = pvctl("migrate", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["applied"] == 0
    assert doc["schema_version"] >= 1


@pytest.mark.parametrize("command", ["", "enqueue", "show", "list", "cancel", "retry", "migrate",
                                     "watch"])
def test_help(pvctl, command):
    r = pvctl(*([command] if command else []), "--help")
    assert r.returncode == 0
    assert "Usage" in r.stdout


def test_missing_arguments_are_usage_errors(pvctl):
    assert pvctl().returncode == 2
    assert pvctl("show").returncode == 2
    assert pvctl("enqueue", "-", "--max-attempts", "0").returncode == 2


def test_unreachable_database_is_exit_3_with_a_clear_message(pvctl_path, tmp_path):
    env = dict(os.environ, DATABASE_URL=f"postgresql:///protovideo?host={tmp_path}")
    for args in (["list"], ["show", str(uuid.uuid4())], ["migrate"], ["enqueue", "-"]):
        stdin = json.dumps(GOOD_REQUEST) if args[0] == "enqueue" else None
        r = subprocess.run([pvctl_path, *args], env=env, input=stdin, capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 3, args
        assert r.stderr.startswith("pvctl: cannot connect to the database: "), r.stderr
        assert r.stderr.rstrip().endswith("(set DATABASE_URL)")
        assert r.stderr.count("\n") == 1  # one line, no stack trace
    r = subprocess.run([pvctl_path, "list", "--json"], env=env, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 3
    assert json.loads(r.stdout)["exit_code"] == 3


# --- watch ---------------------------------------------------------------------

def read_json_line(proc, deadline):
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line:
            return json.loads(line)
    raise AssertionError("watch printed nothing in time")


def test_watch_follows_notifications_and_exits_0_on_ctrl_c(pvctl, db):
    task_id = insert_task(db, "inprogress")
    proc = subprocess.Popen([pvctl.path, "watch", "--json", "--refresh", "60"], env=pvctl.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        snap = read_json_line(proc, deadline)
        assert snap["event"] == "snapshot"
        assert [t["id"] for t in snap["running"]] == [task_id]
        with db.cursor() as cur:
            cur.execute("UPDATE tasks SET progress = 42.5, stage = 'render' WHERE id = %s",
                        (task_id,))
        event = read_json_line(proc, deadline)
        assert event == {"event": "progress", "id": task_id, "status": "inprogress",
                         "progress": 42.5, "stage": "render"}
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_watch_text_view_exits_0_on_sigterm(pvctl, db):
    insert_task(db, "inprogress", progress=30, stage="encode")
    proc = subprocess.Popen([pvctl.path, "watch"], env=pvctl.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert "1 running" in first
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        assert "\x1b[" not in first + out  # no ANSI when stdout is not a terminal
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

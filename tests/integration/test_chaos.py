# SPDX-License-Identifier: MIT
"""Kill-a-child chaos: many short tasks, random children SIGKILLed from outside
while the supervisor runs them. Every task must end terminal with the right
reason, and nothing may be left behind."""

import os
import re
import signal
import time

from conftest import TERMINAL, proc_cmdline, proc_stat, wait_until, zombie_children

SIGKILL_TEXT = "Process terminated by signal: SIGKILL (SIG9)"

TASKS = 40
KILLS = 15


def running_children(pv, sup):
    """(task_id, pid) of main children running right now, found in /proc: the
    fault_child processes of this test whose parent is the supervisor."""
    found = []
    for pid in pv.child_pids():
        st = proc_stat(pid)
        if not st or st[1] != sup.pid:
            continue
        m = re.search(r"--task-id (\S+)", proc_cmdline(pid))
        if m:
            found.append((m.group(1), pid))
    return found


def is_our_child(pv, pid, task_id):
    """True when `pid` is still the fault_child running `task_id` (not a reused pid,
    not the supervisor's fork before exec, not a zombie)."""
    cmd = proc_cmdline(pid)
    st = proc_stat(pid)
    return (st is not None and st[0] not in ("Z", "X") and pv.marker in cmd
            and f"--task-id {task_id}" in cmd)


def test_kill_random_children(pv, rng):
    seconds = [round(rng.uniform(1.0, 3.0), 2) for _ in range(TASKS)]
    ids = pv.insert_many([{"fault": "sleep_then_succeed", "seconds": s} for s in seconds])
    sup = pv.start(max_children=4)

    killed = {}
    deadline = time.monotonic() + 120
    while len(killed) < KILLS and time.monotonic() < deadline:
        candidates = [(t, p) for t, p in running_children(pv, sup)
                      if t not in killed and is_our_child(pv, p, t)]
        if not candidates:
            if not pv.sql("SELECT 1 FROM tasks WHERE status IN ('pending', 'inprogress')"):
                break
            time.sleep(0.05)
            continue
        task_id, pid = rng.choice(candidates)
        # Let it run a moment so kills land at different points of its life.
        time.sleep(rng.uniform(0.0, 0.4))
        if not is_our_child(pv, pid, task_id):
            continue
        os.kill(pid, signal.SIGKILL)
        killed[task_id] = pid
        time.sleep(rng.uniform(0.1, 0.5))

    def all_terminal():
        rows = pv.sql("SELECT count(*) AS n FROM tasks WHERE status = ANY(%s)",
                      (list(TERMINAL),))
        return rows[0]["n"] == TASKS
    wait_until(all_terminal, 180, interval=0.2, what="every task to end")
    assert len(killed) >= 10, f"only {len(killed)} children could be killed"

    # The supervisor must not keep zombies while idle.
    wait_until(lambda: not zombie_children(sup.pid), 5, what="no zombie children")
    assert sup.alive(), sup.tail()

    raced = []
    for tid in ids:
        task = pv.task(tid)
        attempts = pv.attempts(tid)
        assert len(attempts) == 1, (task, attempts)
        a = attempts[0]
        if tid in killed and not (task["status"] == "completed" and a["signal"] is None):
            assert task["status"] == "failed", task
            assert task["error"] == SIGKILL_TEXT, task
            assert task["error_type"] == "signal", task
            assert a["signal"] == 9 and a["exit_code"] is None, a
            assert a["outcome"] == "signal", a
            assert a["pid"] == killed[tid], a
            assert a["oom_kills"] == 0, a
        elif tid in killed:
            # The kill reached a child that had already exited by itself.
            raced.append(tid)
        else:
            assert task["status"] == "completed", task
            assert task["error"] is None and task["error_type"] is None, task
            assert a["outcome"] == "completed" and a["exit_code"] == 0, a
    print(f"killed {len(killed)} children, {len(raced)} kills raced with a normal exit")
    assert len(raced) <= 2, f"too many kills raced with normal exits: {raced}"

    assert sup.stop() == 0, sup.tail()
    pv.assert_clean()


def test_two_supervisors_share_one_queue(pv):
    """Two supervisors (distinct instances, as on two hosts) drain one queue: every
    task is claimed exactly once and both take work."""
    ids = pv.insert_many([{"fault": "sleep_then_succeed", "seconds": 1.0} for _ in range(20)])
    first = pv.start(max_children=3)
    second = pv.start("--instance", pv.instance + "-b", max_children=3)
    wait_until(lambda: pv.sql(
        "SELECT count(*) AS n FROM tasks WHERE status = 'completed'")[0]["n"] == len(ids),
        120, interval=0.2, what="all tasks to complete")
    for tid in ids:
        attempts = pv.attempts(tid)
        assert len(attempts) == 1, attempts
        assert pv.task(tid)["attempts"] == 1
    workers = {a["worker_id"] for tid in ids for a in pv.attempts(tid)}
    assert len(workers) == 2, "both supervisors should have taken work"
    assert first.stop() == 0, first.tail()
    assert second.stop() == 0, second.tail()
    pv.assert_clean()


# (request, expected status, expected error_type, expected error: text, regex or None)
MIXED = [
    ({"fault": "succeed"}, "completed", None, None),
    ({"fault": "sleep_then_succeed", "seconds": 1.5}, "completed", None, None),
    ({"fault": "exit", "code": 3}, "failed", "exit_code", "Process exited with code 3"),
    ({"fault": "sigsegv"}, "failed", "signal", "Process terminated by signal: SIGSEGV (SIG11)"),
    ({"fault": "abort"}, "failed", "signal", "Process terminated by signal: SIGABRT (SIG6)"),
    ({"fault": "alloc", "mb": 1024}, "failed", "memory_limit",
     re.compile(r"^Memory limit exceeded: \d+\.\dMB$")),
    ({"fault": "hang"}, "failed", "timeout", None),
    ({"fault": "ignore_sigterm"}, "failed", "timeout", None),
    ({"fault": "exit0_no_result"}, "failed", "protocol", None),
    ({"fault": "grandchild", "close_fds": True}, "completed", None, None),
    ({"fault": "stderr_flood", "bytes": 2_000_000}, "completed", None, None),
    ({"fault": "error", "error_type": "asset", "message": "HTTP 404"}, "failed", "asset",
     "HTTP 404"),
]


def test_mixed_faults_with_outside_kills(pv, rng):
    """Every kind of death at once, four at a time, plus SIGKILLs from outside on
    the sleeping ones: each task still ends with the reason its fault implies."""
    sleeper = next(p for p in MIXED if p[0]["fault"] == "sleep_then_succeed")
    plan = [rng.choice(MIXED) for _ in range(24)] + [sleeper] * 12
    rng.shuffle(plan)
    ids = pv.insert_many([p[0] for p in plan])
    expected = dict(zip(ids, plan))
    sleepers = {tid for tid, p in expected.items() if p[0]["fault"] == "sleep_then_succeed"}
    sup = pv.start("--task-timeout", "3", "--term-grace", "1", max_children=4,
                   env={"MEMORY_CRITICAL_THRESHOLD": 64, "MEMORY_WARNING_THRESHOLD": 32})

    killed = {}
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        if not pv.sql("SELECT 1 FROM tasks WHERE status IN ('pending', 'inprogress')"):
            break
        for task_id, pid in running_children(pv, sup):
            if task_id in sleepers and task_id not in killed and rng.random() < 0.6 \
                    and is_our_child(pv, pid, task_id):
                os.kill(pid, signal.SIGKILL)
                killed[task_id] = pid
        time.sleep(rng.uniform(0.1, 0.4))

    def all_terminal():
        return pv.sql("SELECT count(*) AS n FROM tasks WHERE status = ANY(%s)",
                      (list(TERMINAL),))[0]["n"] == len(ids)
    wait_until(all_terminal, 60, interval=0.2, what="every task to end")

    for tid in ids:
        request, status, error_type, error = expected[tid]
        task = pv.task(tid)
        if tid in killed and task["status"] == "failed":
            status, error_type, error = "failed", "signal", SIGKILL_TEXT
        where = f"{request} -> {task}"
        assert task["status"] == status, where
        assert task["error_type"] == error_type, where
        if isinstance(error, re.Pattern):
            assert error.match(task["error"] or ""), where
        elif error is not None:
            assert task["error"] == error, where
        elif status == "failed":
            assert task["error"], where
        assert len(pv.attempts(tid)) == 1, where
    print(f"{len(ids)} tasks, {len(killed)} killed from outside")

    wait_until(lambda: not zombie_children(sup.pid), 5, what="no zombie children")
    assert sup.stop() == 0, sup.tail()
    pv.assert_clean()

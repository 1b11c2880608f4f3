# SPDX-License-Identifier: MIT
"""The supervisor itself dies or loses its database: children must not outlive it,
and the next supervisor (or the same one, once the database is back) must bring
every task to a known state and leave nothing behind."""

import json
import signal
import time

import pytest

from conftest import TERMINAL, pid_alive, wait_until


def test_sigkilled_supervisor_takes_its_children_and_is_recovered(pv):
    tid = pv.insert({"fault": "hang"}, max_attempts=1)
    first = pv.start()
    child = pv.wait_running(tid)
    first.kill()

    # The parent-death signal must take the child down with the supervisor.
    wait_until(lambda: not pid_alive(child), 10, what=f"child {child} to die with its supervisor")

    # A new life of the same instance resolves the task at startup.
    pv.run(timeout=60)
    task = pv.task(tid)
    assert task["status"] == "failed", task
    assert task["error_type"] == "worker_lost", task
    assert task["error"], task
    attempts = pv.attempts(tid)
    assert len(attempts) == 1
    assert attempts[0]["outcome"] == "worker_lost", attempts[0]
    assert attempts[0]["ended_at"] is not None
    pv.assert_clean()


def test_sigkilled_supervisor_task_is_retried_by_next_life(pv):
    tid = pv.insert({"fault": "succeed", "on_attempt": {"1": "hang"}}, max_attempts=2)
    first = pv.start()
    pv.wait_running(tid)
    first.kill()
    pv.run(timeout=60)
    task = pv.task(tid)
    assert task["status"] == "completed", task
    assert task["attempts"] == 2, task
    assert [a["outcome"] for a in pv.attempts(tid)] == ["worker_lost", "completed"]
    pv.assert_clean()


def test_signal_handling_disabled_dies_at_once(pv):
    tid = pv.insert({"fault": "hang"}, max_attempts=1)
    sup = pv.start(env={"ENABLE_SIGNAL_HANDLING": "false"})
    child = pv.wait_running(tid)
    sup.send(signal.SIGTERM)
    rc = sup.proc.wait(timeout=10)
    assert rc == -signal.SIGTERM, f"expected death by SIGTERM, got {rc}"
    wait_until(lambda: not pid_alive(child), 10, what="the child to follow its supervisor")
    pv.run(timeout=60)
    assert pv.task(tid)["error_type"] == "worker_lost"
    pv.assert_clean()


def test_database_outage_while_child_runs(pv, postgres):
    tid = pv.insert({"fault": "sleep_then_succeed", "seconds": 2})
    sup = pv.start("--db-retry-attempts", "2", "--db-retry-delay", "0.5")
    child = pv.wait_running(tid)
    postgres.pause()
    try:
        # The child finishes while the database is away; its outcome must survive.
        wait_until(lambda: not pid_alive(child), 20, what="the child to finish")
        time.sleep(2)
        assert sup.alive(), f"supervisor died during the outage:\n{sup.tail()}"
    finally:
        postgres.resume()
    task = pv.wait_status(tid, TERMINAL, timeout=60)
    assert task["status"] == "completed", task
    assert pv.attempts(tid)[0]["outcome"] == "completed"
    pv.assert_clean()
    assert sup.stop() == 0, sup.tail()


def test_database_restart_while_idle(pv, postgres):
    sup = pv.start("--poll-interval", "5", "--db-retry-delay", "0.5")
    wait_until(lambda: pv.sql("SELECT 1 FROM workers WHERE stopped_at IS NULL"), 20,
               what="worker registration")
    pv.conn.close()
    postgres.restart()
    pv.reconnect()
    tid = pv.insert({"fault": "succeed"})
    task = pv.wait_status(tid, TERMINAL, timeout=60)
    assert task["status"] == "completed", task
    assert sup.alive(), sup.tail()
    assert sup.stop() == 0, sup.tail()
    pv.assert_clean()


@pytest.mark.parametrize("fault", ["hang", "grandchild"])
def test_leftovers_of_a_dead_supervisor_are_cleaned_at_startup(pv, fault):
    request = {"fault": fault, "then": "hang", "close_fds": True,
               "pid_file": str(pv.shared / "grandchild.pid")}
    tid = pv.insert(request, max_attempts=1)
    first = pv.start()
    pv.wait_running(tid)
    if fault == "grandchild":
        wait_until(lambda: (pv.shared / "grandchild.pid").exists(), 10, what="grandchild")
    first.kill()
    # The grandchild left the session and has no parent-death signal: only the
    # cgroup still holds it, and the next life must kill it.
    pv.run(timeout=60)
    if fault == "grandchild":
        gc = int((pv.shared / "grandchild.pid").read_text())
        wait_until(lambda: not pid_alive(gc), 10, what=f"grandchild {gc} to be killed")
    assert pv.task(tid)["status"] == "failed"
    pv.assert_clean()


def test_peer_recovers_tasks_of_a_dead_supervisor_after_lease(pv):
    tid = pv.insert({"fault": "hang"}, max_attempts=1)
    dead = pv.start("--heartbeat", "1", "--lease", "3")
    child = pv.wait_running(tid)
    peer = pv.start("--instance", pv.instance + "-peer", "--heartbeat", "1", "--lease", "3",
                    "--poll-interval", "1")
    dead.kill()
    wait_until(lambda: not pid_alive(child), 10, what="the child to die with its supervisor")
    started = time.monotonic()
    task = pv.wait_status(tid, TERMINAL, timeout=60)
    assert task["status"] == "failed", task
    assert task["error_type"] == "worker_lost", task
    assert time.monotonic() - started < 30
    attempts = pv.attempts(tid)
    assert len(attempts) == 1 and attempts[0]["outcome"] == "worker_lost", attempts
    assert peer.stop() == 0, peer.tail()
    # The dead instance's cgroups go when that instance starts again.
    pv.run(timeout=60)
    pv.assert_clean()


def test_a_claim_its_live_supervisor_lost_track_of_is_resolved_and_retried(pv):
    sup = pv.start()
    worker = wait_until(
        lambda: pv.sql("SELECT id::text AS id, host FROM workers"
                       " WHERE pid = %s AND stopped_at IS NULL", (sup.pid,)),
        10, what="the supervisor's workers row")[0]
    # A claim of this supervisor that no child runs (as if its start had been cut
    # short), made ten minutes ago, with no attempt row yet.
    tid = pv.sql(
        "INSERT INTO tasks (request, max_attempts, status, attempts, worker_id, started_at,"
        " updated_at) VALUES (%s, 2, 'inprogress', 1, %s::uuid, now() - interval '10 minutes',"
        " now() - interval '10 minutes') RETURNING id::text AS id",
        (json.dumps({"fault": "succeed", "marker": pv.marker}), worker["id"]))[0]["id"]

    # The supervisor's sweep (every poll) resolves it as lost and runs it again.
    task = pv.wait_status(tid, TERMINAL, timeout=30)
    assert task["status"] == "completed", task
    assert task["attempts"] == 2, task
    attempts = pv.attempts(tid)
    assert [a["outcome"] for a in attempts] == ["worker_lost", "completed"], attempts
    assert attempts[0]["error"] == (
        f"supervisor {worker['host']}/{sup.pid} lost track of the attempt")
    assert sup.stop() == 0, sup.tail()
    pv.assert_clean()


def test_outcome_survives_outage_and_restart_through_the_journal(pv, postgres):
    # The child finishes while the database is away, then the supervisor is told
    # to stop before it could write: the next life must replay the outcome.
    tid = pv.insert({"fault": "sleep_then_succeed", "seconds": 1.5})
    first = pv.start("--db-retry-attempts", "2", "--db-retry-delay", "0.5",
                     "--shutdown-grace", "5")
    child = pv.wait_running(tid)
    postgres.pause()
    try:
        wait_until(lambda: not pid_alive(child), 20, what="the child to finish")
        time.sleep(1)
        first.stop(signal.SIGTERM, timeout=60)
    finally:
        postgres.resume()
    pv.run(timeout=60)
    task = pv.task(tid)
    assert task["status"] == "completed", task
    attempts = pv.attempts(tid)
    assert len(attempts) == 1 and attempts[0]["outcome"] == "completed", attempts
    assert attempts[0]["exit_code"] == 0
    pv.assert_clean()

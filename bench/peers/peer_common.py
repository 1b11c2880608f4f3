# SPDX-License-Identifier: MIT
"""What the Python peer drivers (rq_bench.py, celery_bench.py) share: worker
processes, polling, the pid files of killed jobs, and the result files, whose
columns are the ones bench/report.py reads for every peer."""
import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import timezone

HERE = os.path.dirname(os.path.abspath(__file__))

DISPATCH_COLUMNS = ["count", "completed", "enqueue_ns", "enqueue_committed_ns", "all_seen_ns",
                    "first_started_ns", "last_finished_ns"]
LATENCY_COLUMNS = ["task_id", "enqueue_ns", "child_started_ns", "committed_seen_ns", "status"]
KILL_COLUMNS = ["task_id", "kill_ns", "finished_ns", "committed_seen_ns", "status",
                "error_type", "error"]


def start_workers(argvs, results, prefix):
    """Starts one process per argv (python -m ...), logging to RESULTS/PREFIX-I.log."""
    env = dict(os.environ, PYTHONPATH=HERE, PYTHONDONTWRITEBYTECODE="1")
    procs = []
    for i, argv in enumerate(argvs):
        log = open(os.path.join(results, f"{prefix}-{i}.log"), "w")
        procs.append(subprocess.Popen([sys.executable, "-m"] + argv, cwd=HERE, env=env,
                                      stdout=log, stderr=subprocess.STDOUT))
    return procs


def stop_workers(procs):
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def wait_until(predicate, timeout, step=0.001):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


def one_line(text, limit=300):
    return " ".join((text or "").split())[:limit]


def ns(dt):
    """A datetime (or None) as CLOCK_REALTIME ns, "" when missing. Naive ones
    are UTC (RQ 1.13's started_at and ended_at, Celery 5.2's date_done)."""
    if not dt:
        return ""
    return int((dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp() * 1e9)


def write_csv(results, name, header, rows):
    with open(os.path.join(results, name), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def write_json(results, name, obj):
    with open(os.path.join(results, name), "w") as f:
        json.dump(obj, f, default=str)


def dispatch_row(n, completed, t_enqueue, t_committed, t_done, started_ns, finished_ns):
    return [n, completed, t_enqueue, t_committed, t_done,
            min(started_ns) if started_ns else "", max(finished_ns) if finished_ns else ""]


def latency_run(n, run_one, results, name):
    """One job at a time, 20 ms apart; run_one() enqueues a no-op, waits for its
    result and returns (job id, the job's start time in ns, status)."""
    rows = []
    for _ in range(n):
        t_enqueue = time.time_ns()
        job_id, started, status = run_one()
        rows.append([job_id, t_enqueue, started, time.time_ns(), status])
        time.sleep(0.02)
    write_csv(results, name, LATENCY_COLUMNS, rows)


def kill_run(n, enqueue, recorded, record, results, name, who):
    """One job at a time: enqueue(dir) a sleep_until_killed job, SIGKILL the pid
    it writes, poll recorded(job) every 0.5 ms; record(job) -> (finished_ns,
    status, error_type, error) as the peer's store has it."""
    directory = tempfile.mkdtemp(prefix=f"pv-bench-{name}.")

    def pid_files():
        return {f for f in os.listdir(directory) if not f.startswith(".")}

    rows = []
    for _ in range(n):
        before = pid_files()
        job = enqueue(directory)
        if not wait_until(lambda: pid_files() - before, 60):
            raise SystemExit(f"{who}: the job did not start")
        pid = int((pid_files() - before).pop())
        time.sleep(0.005)
        t0 = time.time_ns()
        os.kill(pid, signal.SIGKILL)
        ok = wait_until(lambda: recorded(job), 60, step=0.0005)
        t_rec = time.time_ns()
        finished, status, error_type, error = record(job)
        rows.append([job.id, t0, finished, t_rec if ok else "", status, error_type,
                     one_line(error)])
    write_csv(results, name, KILL_COLUMNS, rows)

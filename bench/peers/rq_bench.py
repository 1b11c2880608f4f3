# SPDX-License-Identifier: MIT
"""RQ side of bench/run.sh --with-peers: the same no-op, kill and memory runs
as bench/supervisor.sh, against RQ workers (one forked work horse per job).

  rq_bench.py REDIS_URL RESULTS_DIR N_DISPATCH N_LATENCY N_KILL WORKERS
Writes rq-dispatch.csv, rq-latency.csv, rq-kill.csv and rq-memory.json.
"""
import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

from redis import Redis
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry, FinishedJobRegistry
from rq.results import Result

import rq_jobs

HERE = os.path.dirname(os.path.abspath(__file__))


def start_workers(url, count, results, name):
    env = dict(os.environ, PYTHONPATH=HERE)
    procs = []
    for i in range(count):
        log = open(os.path.join(results, f"rq-worker-{name}-{i}.log"), "w")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "rq.cli", "worker", "-u", url, "bench"],
            env=env, stdout=log, stderr=subprocess.STDOUT))
    time.sleep(2.0)  # workers register and block on the queue
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


def dispatch(redis, q, n, results):
    finished = FinishedJobRegistry(queue=q)
    before = finished.count
    t_enqueue = time.time_ns()
    with redis.pipeline() as pipe:
        jobs = q.enqueue_many([Queue.prepare_data(rq_jobs.noop, result_ttl=3600)
                               for _ in range(n)], pipeline=pipe)
        pipe.execute()
    t_committed = time.time_ns()
    ok = wait_until(lambda: finished.count - before >= n, timeout=n * 0.1 + 60, step=0.01)
    t_done = time.time_ns()
    fetched = Job.fetch_many([j.id for j in jobs], connection=redis)
    started = [j.started_at.timestamp() for j in fetched if j and j.started_at]
    ended = [j.ended_at.timestamp() for j in fetched if j and j.ended_at]
    with open(os.path.join(results, "rq-dispatch.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["count", "completed", "enqueue_ns", "enqueue_committed_ns", "all_seen_ns",
                    "first_started_ns", "last_finished_ns"])
        w.writerow([n, finished.count - before, t_enqueue, t_committed, t_done,
                    int(min(started) * 1e9) if started else "", int(max(ended) * 1e9) if ended else ""])
    return ok


def wait_result(redis, job, timeout):
    """Blocks on the job's result stream (RQ 1.13 has no waiting API)."""
    redis.xread({Result.get_key(job.id): "0-0"}, count=1, block=int(timeout * 1000))
    return job.latest_result()


def latency(redis, q, n, results):
    rows = []
    for _ in range(n):
        t_enqueue = time.time_ns()
        job = q.enqueue(rq_jobs.noop, result_ttl=3600)
        res = wait_result(redis, job, 60)
        t_seen = time.time_ns()
        started = res.return_value if res is not None else ""
        rows.append([job.id, t_enqueue, started, t_seen, job.get_status()])
        time.sleep(0.02)
    with open(os.path.join(results, "rq-latency.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["task_id", "enqueue_ns", "child_started_ns", "committed_seen_ns", "status"])
        w.writerows(rows)


def kill_latency(redis, q, n, results):
    failed = FailedJobRegistry(queue=q)
    directory = tempfile.mkdtemp(prefix="pv-bench-rq-kill.")
    rows = []
    def pid_files():
        return {f for f in os.listdir(directory) if not f.startswith(".")}

    for _ in range(n):
        before = pid_files()
        job = q.enqueue(rq_jobs.sleep_until_killed, directory, job_timeout=3600)
        if not wait_until(lambda: pid_files() - before, 60):
            raise SystemExit("rq: no work horse started")
        pid = int((pid_files() - before).pop())
        time.sleep(0.005)
        t0 = time.time_ns()
        os.kill(pid, signal.SIGKILL)
        ok = wait_until(lambda: job.id in failed.get_job_ids(), 60, step=0.0005)
        t_rec = time.time_ns()
        job.refresh()
        res = job.latest_result()
        text = res.exc_string if res is not None and res.exc_string else (job.exc_info or "")
        ended = int(job.ended_at.timestamp() * 1e9) if job.ended_at else ""
        rows.append([job.id, t0, ended, t_rec if ok else "", job.get_status(), "",
                     " ".join(text.split())[:300]])
    with open(os.path.join(results, "rq-kill.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["task_id", "kill_ns", "finished_ns", "committed_seen_ns", "status",
                    "error_type", "error"])
        w.writerows(rows)


def memory(redis, q, results):
    t0 = time.time_ns()
    job = q.enqueue(rq_jobs.allocate, 200, result_ttl=3600)
    res = wait_result(redis, job, 120)
    t1 = time.time_ns()
    job.refresh()
    out = {
        "status": job.get_status(),
        "result": res.return_value if res is not None else None,
        "error": res.exc_string if res is not None else None,
        "enqueue_ns": t0, "seen_ns": t1,
        "note": "RQ has no memory limit: the job runs to completion whatever it allocates",
    }
    with open(os.path.join(results, "rq-memory.json"), "w") as f:
        json.dump(out, f, default=str)


def main():
    url, results, n_dispatch, n_latency, n_kill, workers = sys.argv[1:7]
    redis = Redis.from_url(url)
    redis.flushdb()
    q = Queue("bench", connection=redis)
    procs = start_workers(url, int(workers), results, "main")
    try:
        print(f"rq: dispatch {n_dispatch} with {workers} workers", file=sys.stderr)
        dispatch(redis, q, int(n_dispatch), results)
        time.sleep(2)
        print(f"rq: latency {n_latency}", file=sys.stderr)
        latency(redis, q, int(n_latency), results)
        print(f"rq: kill {n_kill}", file=sys.stderr)
        kill_latency(redis, q, int(n_kill), results)
        print("rq: memory", file=sys.stderr)
        memory(redis, q, results)
    finally:
        stop_workers(procs)


if __name__ == "__main__":
    main()

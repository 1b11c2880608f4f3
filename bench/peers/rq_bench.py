# SPDX-License-Identifier: MIT
"""RQ side of bench/run.sh --with-peers: the same no-op, kill and memory runs
as bench/supervisor.sh, against RQ workers (one forked work horse per job).

  rq_bench.py REDIS_URL RESULTS_DIR N_DISPATCH N_LATENCY N_KILL WORKERS
Writes rq-dispatch.csv, rq-latency.csv, rq-kill.csv and rq-memory.json.
"""
import os
import sys
import time

from redis import Redis
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry, FinishedJobRegistry
from rq.results import Result

import peer_common as pc
import peer_jobs


def dispatch(redis, q, n, results, runs):
    """`runs` batches of n no-op jobs, one after another: one row each."""
    rows = []
    ok = True
    for _ in range(runs):
        finished = FinishedJobRegistry(queue=q)
        before = finished.count
        t_enqueue = time.time_ns()
        with redis.pipeline() as pipe:
            jobs = q.enqueue_many([Queue.prepare_data(peer_jobs.noop, result_ttl=3600)
                                   for _ in range(n)], pipeline=pipe)
            pipe.execute()
        t_committed = time.time_ns()
        ok = pc.wait_until(lambda: finished.count - before >= n, timeout=n * 0.1 + 60,
                           step=0.01) and ok
        t_done = time.time_ns()
        fetched = [j for j in Job.fetch_many([j.id for j in jobs], connection=redis) if j]
        rows.append(pc.dispatch_row(
            n, finished.count - before, t_enqueue, t_committed, t_done,
            [pc.ns(j.started_at) for j in fetched if j.started_at],
            [pc.ns(j.ended_at) for j in fetched if j.ended_at]))
    pc.write_csv(results, "rq-dispatch.csv", pc.DISPATCH_COLUMNS, rows)
    return ok


def wait_result(redis, job, timeout):
    """Blocks on the job's result stream (RQ 1.13 has no waiting API)."""
    redis.xread({Result.get_key(job.id): "0-0"}, count=1, block=int(timeout * 1000))
    return job.latest_result()


def latency(redis, q, n, results):
    def run_one():
        job = q.enqueue(peer_jobs.noop, result_ttl=3600)
        res = wait_result(redis, job, 60)
        return job.id, (res.return_value if res is not None else ""), job.get_status()
    pc.latency_run(n, run_one, results, "rq-latency.csv")


def kill_latency(q, n, results):
    failed = FailedJobRegistry(queue=q)

    def record(job):
        job.refresh()
        res = job.latest_result()
        text = res.exc_string if res is not None and res.exc_string else (job.exc_info or "")
        return pc.ns(job.ended_at), job.get_status(), "", text

    pc.kill_run(n, lambda d: q.enqueue(peer_jobs.sleep_until_killed, d, job_timeout=3600),
                lambda job: job.id in failed.get_job_ids(), record, results, "rq-kill.csv", "rq")


def memory(redis, q, results):
    t0 = time.time_ns()
    job = q.enqueue(peer_jobs.allocate, 200, result_ttl=3600)
    res = wait_result(redis, job, 120)
    t1 = time.time_ns()
    job.refresh()
    pc.write_json(results, "rq-memory.json", {
        "status": job.get_status(),
        "result": res.return_value if res is not None else None,
        "error": res.exc_string if res is not None else None,
        "enqueue_ns": t0, "seen_ns": t1,
        "note": "RQ has no memory limit: the job runs to completion whatever it allocates",
    })


def main():
    url, results, n_dispatch, n_latency, n_kill, workers = sys.argv[1:7]
    redis = Redis.from_url(url)
    redis.flushdb()
    q = Queue("bench", connection=redis)
    procs = pc.start_workers([["rq.cli", "worker", "-u", url, "bench"]] * int(workers),
                             results, "rq-worker-main")
    time.sleep(2.0)  # workers register and block on the queue
    try:
        print(f"rq: dispatch {n_dispatch} with {workers} workers", file=sys.stderr)
        runs = int(os.environ.get("N_DISPATCH_RUNS", "3"))
        dispatch(redis, q, int(n_dispatch), results, runs)
        time.sleep(2)
        print(f"rq: latency {n_latency}", file=sys.stderr)
        latency(redis, q, int(n_latency), results)
        print(f"rq: kill {n_kill}", file=sys.stderr)
        kill_latency(q, int(n_kill), results)
        print("rq: memory", file=sys.stderr)
        memory(redis, q, results)
    finally:
        pc.stop_workers(procs)


if __name__ == "__main__":
    main()

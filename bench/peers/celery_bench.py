# SPDX-License-Identifier: MIT
"""Celery side of bench/run.sh --with-peers: the same no-op, kill and memory
runs as rq_bench.py, against one Celery worker with the prefork pool (WORKERS
long-lived pool processes; jobs run in them, not in a process per job).

  celery_bench.py REDIS_URL RESULTS_DIR N_DISPATCH N_LATENCY N_KILL WORKERS
REDIS_URL is the broker and the result backend (a database of its own).
Writes celery-dispatch.csv, celery-latency.csv, celery-kill.csv and
celery-memory.json.
"""
import json
import os
import sys
import time
from datetime import datetime

URL = sys.argv[1]
os.environ["CELERY_BENCH_URL"] = URL  # read by celery_app, here and in the workers

from celery.result import AsyncResult  # noqa: E402
from redis import Redis  # noqa: E402

import celery_app as ca  # noqa: E402
import peer_common as pc  # noqa: E402

MEMORY_LIMIT_KIB = 100 * 1024  # worker_max_memory_per_child, as ours is given 100 MB


def start_worker(results, name, workers, extra=()):
    proc, = pc.start_workers([["celery", "-A", "celery_app", "worker", "--pool", "prefork",
                               "--concurrency", str(workers), "--queues", "bench",
                               "--hostname", f"bench-{name}@%h", *extra]],
                             results, f"celery-worker-{name}")
    if not pc.wait_until(lambda: ca.app.control.ping(timeout=0.5), 60, step=0.1):
        pc.stop_workers([proc])
        raise SystemExit("celery: the worker did not answer a ping within 60 s")
    return proc


def meta(redis, task_id):
    raw = redis.get(ca.app.backend.get_key_for_task(task_id))
    return json.loads(raw) if raw else None


def done_ns(m):
    """date_done: an ISO time, naive UTC in Celery 5.2."""
    return pc.ns(datetime.fromisoformat(m["date_done"])) if m and m.get("date_done") else ""


def dispatch(redis, n, results):
    """Published to a queue nobody consumes, then the worker is told to consume
    it (add_consumer): all N are in the queue at t_committed, as for RQ's one
    pipeline and our one INSERT."""
    # A long-lived pool is measured warm: each pool process has run a task and
    # holds its result-backend connection, as it would in service.
    for r in [ca.noop.apply_async() for _ in range(8)]:
        r.get(timeout=60)
    t_enqueue = time.time_ns()
    with ca.app.producer_or_acquire() as producer:
        ids = [ca.noop.apply_async(queue="bench-dispatch", producer=producer).id
               for _ in range(n)]
    t_committed = time.time_ns()
    ca.app.control.add_consumer("bench-dispatch", reply=True, limit=1, timeout=10)
    # The worker's redis transport blocks in BRPOP on its old queue list for up
    # to 1 s before it reads the new one: a no-op on "bench" ends that wait.
    ca.noop.apply_async()
    keys = [ca.app.backend.get_key_for_task(i) for i in ids]
    first_missing = 0

    def all_done():
        # Results come back nearly in order: check a window from the first missing one.
        nonlocal first_missing
        while first_missing < n:
            window = keys[first_missing:first_missing + 500]
            got = redis.mget(window)
            first_missing += next((k for k, v in enumerate(got) if v is None), len(window))
            if any(v is None for v in got):
                return False
        return True

    pc.wait_until(all_done, timeout=n * 0.1 + 60, step=0.01)
    t_done = time.time_ns()
    metas = [json.loads(v) for v in redis.mget(keys) if v]
    ok = [m for m in metas if m.get("status") == "SUCCESS"]
    pc.write_csv(results, "celery-dispatch.csv", pc.DISPATCH_COLUMNS, [pc.dispatch_row(
        n, len(ok), t_enqueue, t_committed, t_done,
        [m["result"] for m in ok], [done_ns(m) for m in ok])])


def latency(n, results):
    def run_one():
        r = ca.noop.apply_async()
        started = r.get(timeout=60)
        return r.id, started, r.status
    pc.latency_run(n, run_one, results, "celery-latency.csv")


def kill_latency(redis, n, results):
    def recorded(r):
        m = meta(redis, r.id)
        return m is not None and m.get("status") == "FAILURE"

    def record(r):
        m = meta(redis, r.id)
        exc = AsyncResult(r.id, app=ca.app).result
        return (done_ns(m), (m or {}).get("status", ""),
                type(exc).__name__ if isinstance(exc, BaseException) else "", str(exc))

    pc.kill_run(n, lambda d: ca.sleep_until_killed.apply_async((d,)), recorded, record,
                results, "celery-kill.csv", "celery")


def pool_children(pid):
    kids = set()
    for p in os.listdir("/proc"):
        try:
            with open(f"/proc/{p}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    kids.add(int(p))
        except (OSError, ValueError, IndexError):
            pass
    return kids


def memory(redis, results, workers):
    """A worker of its own with --max-memory-per-child, Celery's only memory
    setting: billiard checks the child's peak RSS after each task returns."""
    proc = start_worker(results, "memory", workers,
                        ["--max-memory-per-child", str(MEMORY_LIMIT_KIB)])
    try:
        children = pool_children(proc.pid)
        t0 = time.time_ns()
        r = ca.allocate.apply_async((200,))
        try:
            value, error = r.get(timeout=120, propagate=False), None
        except Exception as e:  # a timeout: nothing recorded
            value, error = None, f"{type(e).__name__}: {e}"
        t1 = time.time_ns()
        m = meta(redis, r.id) or {}
        pid = value.get("pid") if isinstance(value, dict) else None
        replaced = pc.wait_until(lambda: pid not in pool_children(proc.pid), 10, step=0.05)
        time.sleep(0.5)  # the worker's log line
    finally:
        pc.stop_workers([proc])
    with open(os.path.join(results, "celery-worker-memory-0.log")) as f:
        said = [pc.one_line(line) for line in f if "memory limit" in line]
    pc.write_json(results, "celery-memory.json", {
        "status": m.get("status"),
        "result": value if error is None and not isinstance(value, BaseException) else None,
        "error": error or (str(value) if isinstance(value, BaseException) else None),
        "enqueue_ns": t0, "seen_ns": t1, "limit_kib": MEMORY_LIMIT_KIB,
        "pool_children_before": sorted(children), "job_pid": pid,
        "child_replaced_after": replaced, "worker_log": said,
        "note": f"worker_max_memory_per_child={MEMORY_LIMIT_KIB} KiB is checked only after "
                "a task returns: the job runs to completion and its result is stored; the "
                "pool process is then replaced" + ("" if replaced else " (not seen here)"),
    })


def main():
    _, results, n_dispatch, n_latency, n_kill, workers = sys.argv[1:7]
    redis = Redis.from_url(URL)
    redis.flushdb()
    proc = start_worker(results, "main", int(workers))
    try:
        print(f"celery: dispatch {n_dispatch} with {workers} prefork processes", file=sys.stderr)
        dispatch(redis, int(n_dispatch), results)
        time.sleep(2)
        print(f"celery: latency {n_latency}", file=sys.stderr)
        latency(int(n_latency), results)
        print(f"celery: kill {n_kill}", file=sys.stderr)
        kill_latency(redis, int(n_kill), results)
    finally:
        pc.stop_workers([proc])
    print("celery: memory", file=sys.stderr)
    memory(redis, results, int(workers))


if __name__ == "__main__":
    main()

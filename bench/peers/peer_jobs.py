# SPDX-License-Identifier: MIT
"""Jobs for the Python peers (RQ, Celery): the same work bench_child does for
ours. Plain functions; celery_app.py registers them as Celery tasks."""
import os
import resource
import time


def noop():
    """Returns the wall-clock time the job started (CLOCK_REALTIME ns)."""
    return time.time_ns()


def sleep_until_killed(directory):
    """Writes <directory>/<pid> so the driver can SIGKILL the process running it."""
    started = time.time_ns()
    tmp = os.path.join(directory, f".{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(f"{os.getpid()} {started}\n")
    os.rename(tmp, os.path.join(directory, str(os.getpid())))
    time.sleep(3600)
    return "never killed"


def allocate(mib):
    """Touches `mib` MiB, 4 MiB at a time, like bench_child alloc."""
    chunks = []
    for _ in range(0, mib, 4):
        chunks.append(bytearray(b"\xa5" * (4 << 20)))
    return {"allocated_mib": mib, "started_ns": time.time_ns(), "pid": os.getpid(),
            "max_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}

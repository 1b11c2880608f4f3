# SPDX-License-Identifier: MIT
"""The Celery app for bench/peers/celery_bench.py: peer_jobs' functions as
tasks, redis (CELERY_BENCH_URL) as broker and result backend. Otherwise
Celery's defaults (prefork pool, acks on receipt, prefetch multiplier 4)."""
import os

from celery import Celery

import peer_jobs

URL = os.environ["CELERY_BENCH_URL"]
app = Celery("bench", broker=URL, backend=URL)
app.conf.update(task_default_queue="bench", result_expires=3600)

noop = app.task(name="noop")(peer_jobs.noop)
sleep_until_killed = app.task(name="sleep_until_killed")(peer_jobs.sleep_until_killed)
allocate = app.task(name="allocate")(peer_jobs.allocate)

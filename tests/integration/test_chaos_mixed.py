# SPDX-License-Identifier: MIT
"""Mixed chaos: two supervisors on one queue while a seeded fault injector
SIGKILLs, SIGTERMs and SIGSEGVs running children, SIGKILLs one supervisor and
starts it again (same instance), restarts PostgreSQL and stops it for a while.
The queue mixes sleepers, memory bombs and real renders: fault_child's "render"
fault execs protovideo-render (`--renderer`) in the same process, with the
supervisor's stdin and event fd, so one --child-command serves both. Small
renders (180x320, one or two 1-2 s scenes of the shared photographs) must
complete with a published MP4 of the planned duration; 1080x1920 renders must
fail as memory_limit; a render hit by a fault carries that fault's reason, and
nothing is published in OUTPUT_DIR for a render that did not complete.

Afterwards every invariant is checked by machine, per attempt: nothing stuck,
nothing completed twice, each injected fault recorded with its own reason on
the attempt it hit, journals replayed, nothing left behind. A JSON + Markdown
report goes to the test folder (and to PV_CHAOS_REPORT when set) and is printed.

Short run by default (about 40 tasks, well under 3 minutes); the long run:
tests/chaos/run.sh (PV_CHAOS_TASKS=10000, PV_CHAOS_REPORT; see README.md). Long runs
use more children and shorter sleepers, and repeat the supervisor kill, the
outage and the database restart every CYCLE_SECONDS until the queue is drained.
"""

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest

from conftest import (TERMINAL, has_marker, proc_argv, proc_cmdline, proc_stat, wait_until,
                      zombie_children)
from test_real_renderer import MEDIA, RENDERER, probe, renderer_env  # noqa: F401 (fixture)

TASKS = int(os.environ.get("PV_CHAOS_TASKS", "40"))
LONG = TASKS > 100 or os.environ.get("PV_CHAOS_LONG") not in (None, "", "0")
PAUSE_SECONDS = float(os.environ.get("PV_CHAOS_PAUSE", "20"))
REPORT = os.environ.get("PV_CHAOS_REPORT")
MAX_CHILDREN = 4 if LONG else 2            # per supervisor
SLEEP_SECONDS = (0.5, 1.5) if LONG else (1.0, 3.0)
CYCLE_SECONDS = 240                        # long runs: infrastructure faults again
SMALL_PHOTOS = ("FreshFlower.jpg", "GreenMeadow.jpg", "Storm.jpg", "Elephants.jpg")

SIG_TEXT = {
    "sigkill": "Process terminated by signal: SIGKILL (SIG9)",
    "sigterm": "Process terminated by signal: SIGTERM (SIG15)",
    "sigsegv": "Process terminated by signal: SIGSEGV (SIG11)",
}
SIGNO = {"sigkill": signal.SIGKILL, "sigterm": signal.SIGTERM, "sigsegv": signal.SIGSEGV}
MEMORY = re.compile(r"^Memory limit exceeded: \d+\.\dMB$")

LEASE_BUG = (
    "after a database outage longer than --lease, the first "
    "supervisor back recovers a live peer's running attempts as worker_lost "
    "('stopped heartbeating'): the heartbeat age is counted through the outage; "
    "the peer's journaled true outcome (signal, or completed) is then fenced off "
    "and the task re-run")

RECONNECT_BUG = (
    "after PostgreSQL comes back (restart or pause/resume) a "
    "supervisor with journaled writes may stay disconnected for 5-12 s or more "
    "(kReconnectDelay is 1 s; heartbeats meanwhile 'dropped: journal not replayed "
    "yet'); stopped with SIGTERM in that state it exits 0 with its journal not "
    "replayed although the database is up")

SUP_FLAGS = ["--lease", "4", "--heartbeat", "1", "--db-retry-delay", "0.5",
             "--retry-base-delay", "0.2", "--poll-interval", "0.5",
             "--term-grace", "1", "--shutdown-grace", "10"]
# A 180x320 render peaks near 35 MB (cgroup); a 1080x1920 one near 250 MB.
SUP_ENV = {"MEMORY_CRITICAL_THRESHOLD": 64, "MEMORY_WARNING_THRESHOLD": 48}


def render_request(rng, big=False):
    """A real request for protovideo-render (through fault_child's "render")."""
    scenes = [{"type": "image", "image": str(MEDIA / "images" / rng.choice(SMALL_PHOTOS)),
               "duration": rng.choice((1.0, 1.5, 2.0))} for _ in range(rng.choice((1, 2)))]
    if rng.random() < 0.5:
        scenes[0]["text"] = {"content": "chaos", "position": "bottom", "fontsize": 36}
    width, height = (1080, 1920) if big else (180, 320)
    return {"fault": "render", "output_filename": "chaos.mp4", "width": width,
            "height": height, "fps": 24, "crossfade": 0.5, "scenes": scenes}


def planned_duration(req):
    """Sum of the scenes minus one crossfade per join, capped at half the
    shortest scene (child/render/README.md)."""
    d = [s["duration"] for s in req["scenes"]]
    return sum(d) - (len(d) - 1) * min(req["crossfade"], min(d) / 2)


def check_renders(tasks, renders, out_dir):
    """Problems with the real renders: a completed one must have published its
    MP4 (and poster) with the planned size and duration; OUTPUT_DIR holds
    nothing else (no partial file of a failed or killed render)."""
    problems, expected = [], set()
    for t in renders:
        r = tasks[t]
        if r["status"] != "completed":
            continue
        req, res = r["request"], r["result"] or {}
        video = out_dir / f"{t}.mp4"
        expected |= {video.name, f"{t}.jpg"}
        if res.get("output") != str(video) or not video.exists():
            problems.append({"task": t, "why": "no published output", "result": res})
            continue
        v = probe(video)["video"]
        frame = 1 / req["fps"]
        want = planned_duration(req)
        if ((v["width"], v["height"]) != (req["width"], req["height"])
                or abs(float(v["duration"]) - want) > frame
                or abs(res.get("duration", -1) - want) > frame):
            problems.append({"task": t, "why": "wrong video", "planned_s": want,
                             "probed": {k: v[k] for k in ("width", "height", "duration")},
                             "result": res})
    published = {p.name for p in out_dir.iterdir()}
    for name in sorted(published - expected):
        problems.append({"file": name, "why": "published for a render that did not complete"})
    for name in sorted(expected - published):
        problems.append({"file": name, "why": "missing for a completed render"})
    return problems


def journal_path(pv, instance):
    return Path(pv.state_dir) / f"journal-{instance}.jsonl"


def child_attempt(pid):
    """PV_ATTEMPT of a running child (None when unreadable)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read().split(b"\0")
    except OSError:
        return None
    for kv in env:
        if kv.startswith(b"PV_ATTEMPT="):
            try:
                return int(kv.split(b"=", 1)[1])
            except ValueError:
                return None
    return None


def running_children(pv, sups):
    """[(task_id, pid, supervisor)] of main children (exec'd fault_child) right now."""
    parents = {s.pid: s for s in sups if s.alive()}
    found = []
    for pid in pv.child_pids():
        st = proc_stat(pid)
        if not st or st[0] in ("Z", "X") or st[1] not in parents:
            continue
        m = re.search(r"--task-id (\S+)", proc_cmdline(pid))
        if m:
            found.append((m.group(1), pid, parents[st[1]]))
    return found


def still_child(pv, pid, task_id):
    st = proc_stat(pid)
    argv = proc_argv(pid)
    return (st is not None and st[0] not in ("Z", "X") and has_marker(pid, pv.marker)
            and f"--task-id {task_id}" in " ".join(argv))


def percentiles(values):
    if not values:
        return {}
    v = sorted(values)

    def p(q):
        return round(v[min(len(v) - 1, int(round(q * (len(v) - 1))))], 3)
    return {"n": len(v), "p50": p(0.5), "p90": p(0.9), "p99": p(0.99), "max": round(v[-1], 3)}


class Injector:
    def __init__(self, pv, postgres, rng, sups, start_sup):
        self.pv, self.pg, self.rng = pv, postgres, rng
        self.sups = sups              # name -> Supervisor (current life)
        self.start_sup = start_sup
        self.faults = []              # dicts: kind, task_id, pid, attempt, t, supervisor
        self.events = []              # supervisor / database faults
        self.killed_tasks = set()

    def kill_child(self, kind, targets):
        cands = [(t, p, s) for t, p, s in running_children(self.pv, self.sups.values())
                 if t in targets and t not in self.killed_tasks]
        if not cands:
            return False
        task_id, pid, sup = self.rng.choice(cands)
        attempt = child_attempt(pid)
        if not still_child(self.pv, pid, task_id):
            return False
        t = time.time()
        os.kill(pid, SIGNO[kind])
        self.killed_tasks.add(task_id)
        self.faults.append({"kind": kind, "task_id": task_id, "pid": pid, "attempt": attempt,
                            "t": t, "supervisor": sup.argv[sup.argv.index("--instance") + 1]})
        return True

    def kill_supervisor(self, name, restart_after):
        sup = self.sups[name]
        victims = [(t, p, child_attempt(p)) for t, p, s in running_children(self.pv, [sup])]
        t = time.time()
        sup.kill()
        self.events.append({"kind": "supervisor_sigkill", "t": t, "instance": name,
                            "tasks": len(victims)})
        for task_id, pid, attempt in victims:
            self.killed_tasks.add(task_id)
            self.faults.append({"kind": "worker_lost", "task_id": task_id, "pid": pid,
                                "attempt": attempt, "t": t, "supervisor": name})
        time.sleep(restart_after)
        self.sups[name] = self.start_sup(name)
        self.events.append({"kind": "supervisor_restart", "t": time.time(), "instance": name})

    def pg_restart(self):
        t = time.time()
        self.pg.restart()
        self.events.append({"kind": "pg_restart", "t": t, "seconds": round(time.time() - t, 2),
                            "up": time.time()})

    def pg_pause(self):
        """Stops the database; the caller goes on killing children meanwhile and
        calls pg_resume() (also in a finally) after the pause."""
        self.paused_at = time.time()
        self.pg.pause()

    def pg_resume(self):
        if getattr(self, "paused_at", None) is None:
            return
        self.pg.resume()
        t, self.paused_at = self.paused_at, None
        self.events.append({"kind": "pg_pause", "t": t, "seconds": round(time.time() - t, 2),
                            "up": time.time()})


def queue_open(pv):
    try:
        return bool(pv.sql("SELECT 1 FROM tasks WHERE status IN ('pending', 'inprogress') LIMIT 1"))
    except Exception:   # database away: the queue is certainly not drained yet
        return True


def finished_share(pv, total):
    """The share of the queue in a terminal state (0 while the database is away)."""
    try:
        n = pv.sql("SELECT count(*) AS n FROM tasks WHERE status = ANY(%s)",
                   (list(TERMINAL),))[0]["n"]
    except Exception:
        return 0.0
    return n / total if total else 1.0


def fault_cycle(rng, base):
    """One round of infrastructure faults, in seconds after the start: a
    supervisor SIGKILL, then the outage (while children run), then the restart
    (after a database restart supervisors take a few seconds to claim again)."""
    pause_at = base + rng.uniform(8, 10)
    return sorted([
        (base + rng.uniform(4, 6), "kill_supervisor"),
        (pause_at, "pg_pause"),
        (pause_at + PAUSE_SECONDS + rng.uniform(6, 8), "pg_restart"),
    ])


def test_mixed_chaos(pv, postgres, rng, tmp_path, renderer_env):
    t0 = time.time()
    # --- the queue: sleepers (most), memory bombs, real renders (small ones and
    # 1080x1920 ones that cannot fit the memory limit) ---
    n_bombs = max(2, TASKS // 10)
    n_renders = max(8, TASKS // 10)
    n_render_bombs = max(2, TASKS // 100)
    plan = (["alloc"] * n_bombs + ["render"] * n_renders + ["render_bomb"] * n_render_bombs)
    plan += ["sleep"] * (TASKS - len(plan))
    rng.shuffle(plan)
    requests = []
    for kind in plan:
        if kind == "alloc":
            requests.append({"fault": "alloc", "mb": 1024})
        elif kind in ("render", "render_bomb"):
            requests.append(render_request(rng, big=kind == "render_bomb"))
        else:
            requests.append({"fault": "sleep_then_succeed",
                             "seconds": round(rng.uniform(*SLEEP_SECONDS), 2)})
    ids = []
    for i in range(0, len(requests), 500):
        chunk = [dict(r, marker=pv.marker) for r in requests[i:i + 500]]
        rows = pv.sql(
            "INSERT INTO tasks (request, max_attempts)"
            " SELECT r, 2 FROM jsonb_array_elements(%s::jsonb) AS r"
            " RETURNING id::text AS id, request", (json.dumps(chunk),))
        ids.extend(r["id"] for r in rows)

    def task_kind(req):
        if req["fault"] == "render":
            return "render_bomb" if req["width"] > 180 else "render"
        return "alloc" if req["fault"] == "alloc" else "sleep"
    kinds = {r["id"]: task_kind(r["request"])
             for r in pv.sql("SELECT id::text AS id, request FROM tasks")}
    sleepers = {t for t, k in kinds.items() if k == "sleep"}
    renders = {t for t, k in kinds.items() if k == "render"}
    bombs = {t for t, k in kinds.items() if k in ("alloc", "render_bomb")}

    names = [pv.instance + "-a", pv.instance + "-b"]
    env, out_dir = renderer_env
    child_command = pv.child_command(renderer=RENDERER)

    def start_sup(name):
        return pv.start("--instance", name, *SUP_FLAGS, max_children=MAX_CHILDREN,
                        child_command=child_command, env={**SUP_ENV, **env})

    sups = {n: start_sup(n) for n in names}
    inj = Injector(pv, postgres, rng, sups, start_sup)

    # --- the fault schedule (seconds after start); child kills run throughout ---
    schedule = fault_cycle(rng, 0)
    next_cycle = CYCLE_SECONDS
    # Kills per signal outside outages, for sleepers and renders apart: renders
    # last well under a second, so one is taken whenever it is seen running.
    child_kills = {"sleep": dict.fromkeys(SIGNO, 0), "render": dict.fromkeys(SIGNO, 0)}
    quota = {"sleep": max(3, TASKS // 40) if not LONG else max(3, TASKS // 100),
             "render": max(1, TASKS // 400)}
    pools = {"sleep": sleepers, "render": renders}
    this_outage = dict.fromkeys(SIGNO, 0)
    deadline = time.monotonic() + (150 if not LONG else max(600, TASKS * 1.5))
    start = time.monotonic()
    resume_at = None
    try:
        while time.monotonic() < deadline:
            elapsed = time.monotonic() - start
            if resume_at is not None and elapsed >= resume_at:
                inj.pg_resume()
                resume_at = None
            if schedule and elapsed >= schedule[0][0]:
                _, what = schedule.pop(0)
                if what == "kill_supervisor":
                    inj.kill_supervisor(rng.choice(names), restart_after=rng.uniform(0.5, 1.5))
                elif what == "pg_restart":
                    inj.pg_restart()
                else:
                    inj.pg_pause()
                    this_outage = dict.fromkeys(this_outage, 0)
                    resume_at = time.monotonic() - start + PAUSE_SECONDS
                continue
            if not schedule and resume_at is None:
                if not queue_open(pv):
                    break
                if LONG and elapsed >= next_cycle:
                    schedule = fault_cycle(rng, elapsed)
                    next_cycle = elapsed + CYCLE_SECONDS
            # Children die during the outage too: their outcomes go to the journal.
            # One more of each kind is kept for each outage.
            if resume_at is not None:
                want = [k for k, n in this_outage.items() if n < 1]
                if want and rng.random() < 0.5:
                    kind = rng.choice(want)
                    this_outage[kind] += inj.kill_child(kind, sleepers | renders)
            else:
                # A long run spreads its kills over the whole run: a quota opens in
                # step with the share of the queue already finished.
                share = finished_share(pv, len(ids)) if LONG else 1.0
                for pool in ("render", "sleep"):
                    want = [k for k, n in child_kills[pool].items()
                            if n < quota[pool] and n < 1 + quota[pool] * share]
                    if want and (pool == "render" or rng.random() < 0.5):
                        kind = rng.choice(want)
                        if inj.kill_child(kind, pools[pool]):
                            child_kills[pool][kind] += 1
                            break
            if os.environ.get("PV_CHAOS_DEBUG"):
                print("dbg", round(time.monotonic() - start, 1), resume_at, child_kills,
                      len(running_children(pv, inj.sups.values())))
            # A small render lasts about 0.3 s: until one has been hit, look often
            # enough not to miss them all (the short run has only a few).
            if resume_at is None and not sum(child_kills["render"].values()):
                time.sleep(0.05)
            else:
                time.sleep(rng.uniform(0.2, 0.6))
    finally:
        inj.pg_resume()

    # --- drain ---
    def all_terminal():
        try:
            return pv.sql("SELECT count(*) AS n FROM tasks WHERE status = ANY(%s)",
                          (list(TERMINAL),))[0]["n"] == len(ids)
        except Exception:
            return False
    drain_deadline = time.monotonic() + (60 if not LONG else 600)
    while time.monotonic() < drain_deadline and not all_terminal():
        time.sleep(0.2)
    drained = all_terminal()

    # Supervisors alive and without zombies while idle, then a clean stop.
    dead = [n for n, s in inj.sups.items() if not s.alive()]
    for s in inj.sups.values():
        if s.alive():
            wait_until(lambda: not zombie_children(s.pid), 5, what="no zombie children")
    stop_rc = {n: s.stop(timeout=60) for n, s in inj.sups.items()}

    # --- invariants, by machine ---
    tasks = {r["id"]: r for r in pv.sql("SELECT *, id::text AS id FROM tasks")}
    attempts = {}
    for a in pv.sql("SELECT *, task_id::text AS task_id FROM task_attempts ORDER BY attempt"):
        attempts.setdefault(a["task_id"], {})[a["attempt"]] = a

    stuck = [t for t, r in tasks.items() if r["status"] not in TERMINAL]
    open_attempts = [(t, n) for t, aa in attempts.items() for n, a in aa.items()
                     if a["ended_at"] is None]
    duplicates = []
    for t, r in tasks.items():
        done = [n for n, a in attempts.get(t, {}).items() if a["outcome"] == "completed"]
        if len(done) > 1 or (r["status"] == "completed" and len(done) != 1):
            duplicates.append({"task": t, "completed_attempts": done, "status": r["status"]})
        if r["attempts"] != len(attempts.get(t, {})):
            duplicates.append({"task": t, "tasks.attempts": r["attempts"],
                               "attempt_rows": sorted(attempts.get(t, {}))})

    wrong, raced, latencies, reaped, lease_takeovers = [], [], {}, {}, []
    for f in inj.faults:
        aa = attempts.get(f["task_id"], {})
        a = aa.get(f["attempt"]) if f["attempt"] else None
        if a is None:   # attempt unknown from /proc: find it by pid
            a = next((x for x in aa.values() if x["pid"] == f["pid"]), None)
        task = tasks.get(f["task_id"])
        f["outcome"] = a and a["outcome"]
        f["error"] = a and a["error"]
        if a is None:
            wrong.append(dict(f, why="no attempt row for the injected fault"))
            continue
        f["attempt"] = a["attempt"]
        if a["outcome"] == "completed" and f["kind"] != "worker_lost" and a["ended_at"] \
                and a["ended_at"].timestamp() <= f["t"] + 0.05:
            raced.append(f)       # the child had finished by itself
            continue
        if f["kind"] == "worker_lost":
            ok = a["outcome"] == "worker_lost"
            if a["outcome"] == "completed":   # finished before the supervisor died
                raced.append(f)
                continue
        else:
            ok = (a["outcome"] == "signal" and a["signal"] == SIGNO[f["kind"]]
                  and a["error"] == SIG_TEXT[f["kind"]] and a["pid"] == f["pid"])
            if ok and a["attempt"] == max(aa) and task["status"] == "failed":
                ok = task["error_type"] == "signal" and task["error"] == SIG_TEXT[f["kind"]]
        if not ok and f["kind"] != "worker_lost" and a["outcome"] == "worker_lost" \
                and "stopped heartbeating" in (a["error"] or "") \
                and any(e["kind"] == "pg_pause" for e in inj.events):
            # SUPERVISOR BUG (see LEASE_BUG): a peer took the attempt over after
            # the outage although its supervisor was alive and had journaled the
            # real outcome, which was then fenced off.
            lease_takeovers.append(dict(f, attempt_error=a["error"]))
        elif not ok:
            wrong.append(dict(f, why="wrong reason", attempt_row={
                k: a[k] for k in ("outcome", "signal", "exit_code", "error", "pid")},
                task_error_type=task["error_type"]))
        elif a["ended_at"] is not None:
            reaped.setdefault(f["kind"], []).append(a["ended_at"].timestamp() - f["t"])
            # Recorded: when the outcome reached the database. A lost
            # supervisor's attempt is closed by the recovering write (ended_at is
            # that statement's now()); a killed child's by the final task write
            # (updated_at = now()), known only while that write is the task's last.
            if f["kind"] == "worker_lost":
                latencies.setdefault(f["kind"], []).append(a["ended_at"].timestamp() - f["t"])
            elif a["attempt"] == task["attempts"] and task["status"] in TERMINAL:
                latencies.setdefault(f["kind"], []).append(
                    task["updated_at"].timestamp() - f["t"])

    for t in bombs:
        r = tasks[t]
        last = attempts.get(t, {}).get(r["attempts"])
        if r["status"] != "failed" or r["error_type"] != "memory_limit" \
                or not MEMORY.match(r["error"] or "") or last is None:
            if t not in inj.killed_tasks:
                wrong.append({"kind": "memory_bomb", "task_id": t, "status": r["status"],
                              "error_type": r["error_type"], "error": r["error"]})
    lost = [t for t in sleepers | renders if t not in inj.killed_tasks
            and tasks[t]["status"] != "completed"
            and not any(a["outcome"] == "worker_lost" for a in attempts.get(t, {}).values())]
    render_problems = check_renders(tasks, renders, out_dir)
    render_peaks = [a["peak_memory_bytes"] / 2**20 for t in renders
                    for a in attempts.get(t, {}).values()
                    if a["outcome"] == "completed" and a["peak_memory_bytes"]]

    # How long after the database came back the first new attempt started, and
    # how many attempts ended worker_lost without an injected supervisor kill
    # (an outage longer than --lease makes every supervisor look dead).
    starts = sorted(a["started_at"].timestamp() for aa in attempts.values() for a in aa.values())
    for e in inj.events:
        if "up" in e:
            later = [x for x in starts if x >= e["up"]]
            e["first_claim_after_up_s"] = round(later[0] - e["up"], 2) if later else None
            e["up"] = round(e["up"] - t0, 2)
    injected = {(f["task_id"], f["attempt"]) for f in inj.faults}
    collateral = [(t, n) for t, aa in attempts.items() for n, a in aa.items()
                  if a["outcome"] == "worker_lost" and (t, n) not in injected]

    journals = {}
    for n in names:
        p = journal_path(pv, n)
        journals[n] = p.stat().st_size if p.exists() else 0
    leaks = pv.leftovers()
    log_counts = {}
    for s in pv.supervisors:   # every life of every instance
        out = s.output()
        for key, text in (("journaled", "Database write failed after retries, journaled"),
                          ("not_journaled", "cannot be journaled"),
                          ("replays", "Journal replay started"),
                          ("fenced", "Journal entry fenced off"),
                          ("rejected", "Journal entry rejected")):
            log_counts[key] = log_counts.get(key, 0) + out.count(text)

    statuses = {}
    for r in tasks.values():
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    by_kind, on_renders = {}, {}
    for f in inj.faults:
        by_kind[f["kind"]] = by_kind.get(f["kind"], 0) + 1
        if f["task_id"] in renders:
            on_renders[f["kind"]] = on_renders.get(f["kind"], 0) + 1
    completed_renders = sum(tasks[t]["status"] == "completed" for t in renders)
    report = {
        "seed_note": "replay with PV_TEST_SEED printed above",
        "tasks": len(ids), "sleepers": len(sleepers), "memory_bombs": n_bombs,
        "renders": len(renders), "render_bombs": n_render_bombs,
        "renders_completed_and_probed": completed_renders,
        "faults_on_renders": on_renders,
        "render_peak_memory_mb": percentiles(render_peaks),
        "supervisors": f"2 x --max-children {MAX_CHILDREN}",
        "statuses": statuses, "seconds": round(time.time() - t0, 1), "drained": drained,
        "faults_by_kind": by_kind,
        "infrastructure_faults": [{k: (round(v - t0, 2) if k == "t" else v)
                                   for k, v in e.items()} for e in inj.events],
        "lost": lost, "stuck": stuck, "open_attempts": open_attempts,
        "wrong_reasons": wrong, "duplicates": duplicates,
        "raced_with_normal_exit": [(f["kind"], f["task_id"]) for f in raced],
        "collateral_worker_lost": collateral, "lease_takeover_after_outage": lease_takeovers,
        "journal_bytes": journals, "journal_log": log_counts, "leaks": leaks,
        "render_problems": render_problems, "supervisors_dead_at_end": dead,
        "stop_exit_codes": stop_rc,
        "death_to_record_latency_s": {k: percentiles(v) for k, v in latencies.items()},
        "death_to_reap_latency_s": {k: percentiles(v) for k, v in reaped.items()},
    }
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t0))
    md = ["# Mixed chaos report", "",
          f"Run {started} on {os.cpu_count()} cores; PV_TEST_SEED="
          f"{os.environ.get('PV_TEST_SEED', '(random, printed in the log)')}; "
          f"outage {PAUSE_SECONDS:g} s" + (f", faults again every {CYCLE_SECONDS} s" if LONG
                                            else "") + ".",
          "", "| metric | value |", "|---|---|"]
    for k in ("tasks", "sleepers", "memory_bombs", "renders", "render_bombs", "supervisors",
              "statuses", "seconds", "drained", "faults_by_kind", "faults_on_renders",
              "renders_completed_and_probed", "render_peak_memory_mb", "journal_bytes",
              "journal_log", "stop_exit_codes"):
        md.append(f"| {k} | `{json.dumps(report[k], default=str)}` |")
    for k in ("lost", "stuck", "open_attempts", "wrong_reasons", "duplicates",
              "raced_with_normal_exit", "collateral_worker_lost",
              "lease_takeover_after_outage", "leaks", "render_problems",
              "supervisors_dead_at_end"):
        md.append(f"| {k} | {len(report[k])} |")
    md += ["", "## Infrastructure faults (s after start)", ""]
    md += [f"- {json.dumps(e)}" for e in report["infrastructure_faults"]]
    md += ["", "## Death-to-record latency (s after the injection)", "",
           "*recorded*: the outcome's write reached the database (`tasks.updated_at` of the"
           " final write, by the database's clock; for `worker_lost`, the recovering write"
           " that closed the attempt). A death during an outage is recorded when the journal"
           " is replayed. *reaped*: the supervisor saw the death (`task_attempts.ended_at`,"
           " its own clock, kept through the journal).", "",
           "| kind | measure | n | p50 | p90 | p99 | max |", "|---|---|---|---|---|---|---|"]
    for k in report["death_to_reap_latency_s"]:
        for label, key in (("recorded", "death_to_record_latency_s"),
                           ("reaped", "death_to_reap_latency_s")):
            p = report[key].get(k)
            if p:
                md.append(f"| {k} | {label} | {p['n']} | {p['p50']} | {p['p90']} | {p['p99']}"
                          f" | {p['max']} |")
    for k in ("wrong_reasons", "lease_takeover_after_outage", "duplicates", "lost", "stuck",
              "leaks", "render_problems"):
        if report[k]:
            md += ["", f"## {k}", "", "```", json.dumps(report[k], indent=1, default=str)[:20000],
                   "```"]
    text = "\n".join(md) + "\n"
    (tmp_path / "chaos-report.json").write_text(json.dumps(
        dict(report, faults=inj.faults), indent=1, default=str))
    (tmp_path / "chaos-report.md").write_text(text)
    if REPORT:
        Path(REPORT).write_text(text)
    print(text)
    print(f"report: {tmp_path / 'chaos-report.md'}")

    # --- verdict ---
    assert drained and not stuck and not open_attempts, report
    assert not duplicates, duplicates
    assert not wrong, wrong
    assert not lost, lost
    assert not render_problems, render_problems
    assert completed_renders >= 1, "no render completed"
    # Both were supervisor bugs once (fixed); they are hard failures now.
    assert not lease_takeovers, LEASE_BUG + f" ({len(lease_takeovers)} faults affected)"
    assert not sum(journals.values()), RECONNECT_BUG + f" (journal bytes left: {journals})"
    assert log_counts.get("rejected", 0) == 0, log_counts
    assert not dead, [inj.sups[n].tail() for n in dead]
    assert all(rc == 0 for rc in stop_rc.values()), stop_rc
    assert sum(child_kills["sleep"].values()) >= 3, child_kills
    assert sum(child_kills["render"].values()) >= 1, child_kills
    assert len(raced) <= max(2, len(inj.faults) // 10), raced
    pv.assert_clean()

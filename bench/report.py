#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Turns the raw results of bench/run.sh into bench/report.md and PNG plots.

  report.py RESULTS_DIR OUT_DIR

Reads what is there and says what is missing; it never fails for a missing
section, so a partial run still gives a partial report. Goals are compared,
never asserted: these machines are shared and noisy.
"""
import csv
import json
import os
import re
import shutil
import subprocess
import sys

RESULTS, OUT = sys.argv[1], sys.argv[2]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLOTS = os.path.join(OUT, "plots")
PEERS = [("rq", "RQ"), ("celery", "Celery"), ("graphile", "graphile-worker")]


def path(name):
    return os.path.join(RESULTS, name)


def read_csv(name):
    try:
        with open(path(name), newline="") as f:
            return list(csv.DictReader(f))
    except FileNotFoundError:
        return None


def read_json(name):
    try:
        with open(path(name)) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def read_text(name, default=""):
    try:
        with open(path(name)) as f:
            return f.read().strip()
    except FileNotFoundError:
        return default


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def percentile(values, p):
    """Linear interpolation between closest ranks (as numpy's default)."""
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def median(values):
    return percentile(values, 50)


def fmt(v, digits=2):
    if v is None:
        return "–"
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.{digits}f}"


def diffs_ms(rows, end, start):
    out = []
    for r in rows or []:
        a, b = num(r.get(end)), num(r.get(start))
        if a is not None and b is not None:
            out.append((a - b) / 1e6)
    return out


def stats_row(label, values, goal=None):
    if not values:
        return f"| {label} | 0 | – | – | – | – | {goal or ''} |"
    return (f"| {label} | {len(values)} | {fmt(percentile(values, 50))} | "
            f"{fmt(percentile(values, 90))} | {fmt(percentile(values, 99))} | "
            f"{fmt(max(values))} | {goal or ''} |")


def verdict(ok):
    if ok is None:
        return "not measured"
    return "met" if ok else "**not met**"


GOALS = []  # (goal, measured, verdict) for the summary at the top


def goal(name, measured, ok):
    GOALS.append((name, measured, verdict(ok)))


def dispatch_rates(rows):
    """Per batch: (tasks per second from the committed enqueue to the last
    completion seen, tasks per second from the first start to the last end)."""
    out = []
    for r in rows or []:
        n = num(r["completed"]) or 0
        span = (num(r["all_seen_ns"]) - num(r["enqueue_committed_ns"])) / 1e9
        first, last = num(r.get("first_started_ns")), num(r.get("last_finished_ns"))
        inner = n / ((last - first) / 1e9) if first and last and last > first else None
        out.append((n / span if span > 0 else None, inner))
    return out


def dispatch_rate(rows):
    """The median of the batches' rates (and inner rates)."""
    rates = dispatch_rates(rows)
    if not rates:
        return None, None
    outer = [r for r, _ in rates if r is not None]
    inner = [i for _, i in rates if i is not None]
    return (median(outer) if outer else None), (median(inner) if inner else None)


def dispatch_runs_text(rows):
    """"median of 3 (a, b, c)" when there were several batches, else ""."""
    rates = [r for r, _ in dispatch_rates(rows) if r is not None]
    if len(rates) < 2:
        return ""
    return f"median of {len(rates)} ({', '.join(fmt(r, 0) for r in rates)})"


def write_dat(name, series):
    with open(os.path.join(PLOTS, name), "w") as f:
        for values in series:
            s = sorted(values)
            for i, v in enumerate(s):
                f.write(f"{v:.4f} {(i + 1) / len(s):.5f}\n")
            f.write("\n\n")


def plot(script, png):
    if not shutil.which("gnuplot"):
        return False
    full = (f'set terminal pngcairo noenhanced size 900,540 font "DejaVu Sans,11"\n'
            f'set output "{png}"\n' + script)
    try:
        subprocess.run(["gnuplot"], input=full, text=True, cwd=PLOTS, check=True,
                       capture_output=True)
        return True
    except (subprocess.CalledProcessError, FileNotFoundError) as e:
        print(f"report.py: gnuplot failed for {png}: {getattr(e, 'stderr', e)}", file=sys.stderr)
        return False


def cdf_plot(png, title, xlabel, series):
    """series: [(label, values)] with at least one non-empty."""
    series = [(label, v) for label, v in series if v]
    if not series:
        return None
    dat = png.replace(".png", ".dat")
    write_dat(dat, [v for _, v in series])
    lines = ", ".join(f'"{dat}" index {i} using 1:2 with steps lw 2 title "{label}"'
                      for i, (label, _) in enumerate(series))
    script = (f'set title "{title}"\nset xlabel "{xlabel}"\nset ylabel "fraction of tasks"\n'
              'set logscale x\nset grid\nset key bottom right\nset yrange [0:1.02]\n'
              f"plot {lines}\n")
    return "plots/" + png if plot(script, png) else None


def bar_plot(png, title, ylabel, bars):
    bars = [(label, v) for label, v in bars if v is not None]
    if not bars:
        return None
    dat = png.replace(".png", ".dat")
    with open(os.path.join(PLOTS, dat), "w") as f:
        for label, v in bars:
            f.write(f'"{label}" {v:.4f}\n')
    script = (f'set title "{title}"\nset ylabel "{ylabel}"\nset style fill solid 0.7\n'
              'set boxwidth 0.6\nset grid ytics\nset yrange [0:*]\nunset key\n'
              f'plot "{dat}" using 0:2:xtic(1) with boxes, '
              f'"{dat}" using 0:2:(sprintf("%.3g", $2)) with labels offset 0,1\n')
    return "plots/" + png if plot(script, png) else None


def strace_summary(text):
    """Returns {syscall: calls} from strace -c output."""
    calls = {}
    for line in text.splitlines():
        m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", line)
        if m and m.group(2) != "total":
            calls[m.group(2)] = int(m.group(1))
    return calls


# How each peer runs (the sentence after "Versions" in section b).
PEER_SETUP = {
    "rq": "2 `rq worker` processes (a forked work horse per job, like our child per task), "
          "own redis-server on loopback without persistence",
    "celery": "one `celery worker` with the prefork pool, concurrency 2 (two long-lived pool "
              "processes run the jobs, no process per job; acks on receipt, prefetch 4), the "
              "same redis (database 1) as broker and result backend. Its dispatch tasks go to a "
              "queue the worker does not consume yet, which it is then told to consume "
              "(`add_consumer`), so all are queued at the start as with our one INSERT; the "
              "pool has run 8 tasks before",
    "graphile": "one Node.js process, concurrency 2, jobs run in-process (no process per job), "
                "same PostgreSQL",
}
# Python peers' kill runs: (what is SIGKILLed, where the failure is recorded,
# the record's own end time).
PEER_KILL = {
    "rq": ("work horse", "in the failed job registry", "ended_at"),
    "celery": ("pool process", "as a FAILURE result in the backend", "date_done"),
}


def ratio(num_v, den_v):
    return f"{num_v / den_v:.2f}×" if num_v and den_v else "–"


def peers_section(add, rates, ours_start, ours_kill_seen, mem):
    """Section b: the peers that left results, beside ours."""
    add("## b. Peers: the same no-op job\n")
    peers = [(p, label) for p, label in PEERS
             if read_csv(f"{p}-dispatch.csv") or read_json(f"{p}-memory.json")]
    if not peers:
        add("Not measured in this run (`bench/run.sh --with-peers` installs and runs them).\n")
        return
    start = {p: diffs_ms(read_csv(f"{p}-latency.csv"), "child_started_ns", "enqueue_ns")
             for p, _ in peers}
    kills = {p: read_csv(f"{p}-kill.csv") for p, _ in peers}
    kill_seen = {p: diffs_ms(kills[p], "committed_seen_ns", "kill_ns") for p, _ in peers}
    versions = ", ".join(f"{label} {read_text(p + '-version.txt', '?')}" for p, label in peers)
    add(f"Versions: {versions}. " +
        " ".join(f"{label}: {PEER_SETUP[p]}." for p, label in peers) + "\n")
    our_rate = rates.get(min(rates))[0] if rates else None
    add("Ratios are oriented so that > 1 means ours is better: rates ours ÷ peer, "
        "times peer ÷ ours.\n")
    add("| measure | ours | " + " | ".join(label for _, label in peers) + " | " +
        " | ".join(f"ratio vs {label}" for _, label in peers) + " |")
    add("|---|---|" + "---|" * (2 * len(peers)))

    def row(measure, ours_v, cells, ratios):
        add(f"| {measure} | {ours_v} | " + " | ".join(cells[p] for p, _ in peers) + " | " +
            " | ".join(ratios[p] for p, _ in peers) + " |")

    rate = {p: dispatch_rate(read_csv(f"{p}-dispatch.csv"))[0] for p, _ in peers}
    row("dispatch, tasks/s (2 slots)", fmt(our_rate, 0),
        {p: fmt(rate[p], 0) for p, _ in peers}, {p: ratio(our_rate, rate[p]) for p, _ in peers})
    for q, label in ((50, "p50"), (99, "p99")):
        ours_v = percentile(ours_start, q)
        v = {p: percentile(start[p], q) for p, _ in peers}
        row(f"enqueue → start {label}, ms", fmt(ours_v), {p: fmt(v[p]) for p, _ in peers},
            {p: ratio(v[p], ours_v) for p, _ in peers})
    gk = read_json("graphile-kill.json")
    for q, label in ((50, "p50"), (99, "p99")):
        ours_v = percentile(ours_kill_seen, q)
        v = {p: percentile(kill_seen[p], q) for p, _ in peers}
        cells = {p: fmt(v[p]) for p, _ in peers}
        if "graphile" in cells and gk and not kills["graphile"]:
            cells["graphile"] = ("recorded (see below)" if gk.get("recorded") else
                                 f"not within {gk.get('watch_seconds')} s (see below)")
        row(f"SIGKILL → failure recorded and seen {label}, ms", fmt(ours_v), cells,
            {p: ratio(v[p], ours_v) for p, _ in peers})
    add("")
    if our_rate and rate.get("rq"):
        goal("dispatch ≥ 3× RQ", f"{our_rate / rate['rq']:.2f}×", our_rate >= 3 * rate["rq"])
        add(f"Goal dispatch ≥ 3× RQ: {verdict(our_rate >= 3 * rate['rq'])} "
            f"({our_rate / rate['rq']:.2f}×).\n")
        batches = []
        for name, f in (("ours", "ours-dispatch-2.csv"), ("RQ", "rq-dispatch.csv"),
                        ("Celery", "celery-dispatch.csv"),
                        ("graphile-worker", "graphile-dispatch.csv")):
            runs = dispatch_runs_text(read_csv(f))
            if runs:
                batches.append(f"{name} {runs}")
        if batches:
            add("Dispatch rates with several batches of the same size, run one after "
                "another, are their median: " + "; ".join(batches) + ".\n")
    png = bar_plot("dispatch.png", "no-op dispatch rate (2 slots)", "tasks per second",
                   [("ours", our_rate)] + [(label, rate[p]) for p, label in peers])
    if png:
        add(f"![dispatch]({png})\n")

    add("### Death of the process running a job\n")
    timed = [(p, label) for p, label in peers if kills[p] and p in PEER_KILL]
    if timed:
        add("One job at a time, the process running it SIGKILLed at t0; *seen* is when the "
            "driver, polling every 0.5 ms, first finds the failure recorded; the record's own "
            "end time is the peer's timestamp (its clock, like our `finished_at`).\n")
        add("| ms after SIGKILL | n | p50 | p90 | p99 | max | |")
        add("|---|---|---|---|---|---|---|")
        add(stats_row("ours: commit seen by a listener", ours_kill_seen))
        for p, label in timed:
            add(stats_row(f"{label}: failure seen", kill_seen[p]))
            add(stats_row(f"{label}: `{PEER_KILL[p][2]}`",
                          diffs_ms(kills[p], "finished_ns", "kill_ns")))
        add("")
    for p, label in timed:
        what, where, _ = PEER_KILL[p]
        texts = {}
        for r in kills[p]:
            # Celery's message names the pool's job number; one line for them all.
            err = re.sub(r"Job: \d+", "Job: N", r["error"])
            key = (r["status"], r.get("error_type", ""), err)
            texts[key] = texts.get(key, 0) + 1
        add(f"- **{label}** ({what} SIGKILLed, {len(kills[p])} jobs): recorded {where} after "
            f"p50 {fmt(percentile(kill_seen[p], 50))} ms, "
            f"p99 {fmt(percentile(kill_seen[p], 99))} ms. What the job says:")
        for (st, et, err), n in sorted(texts.items(), key=lambda kv: -kv[1])[:3]:
            add(f"  - {n}× status `{st}`" + (f", {et}" if et else "") + f": `{err}`")
    if gk and "graphile" in dict(peers):
        final = gk.get("final_row") or {}
        add(f"- **graphile-worker** (worker process SIGKILLed): after "
            f"{gk.get('watch_seconds')} s the job row has locked_at "
            f"`{final.get('locked_at')}`, attempts {final.get('attempts')}, last_error "
            f"`{final.get('last_error')}`; recorded: {gk.get('recorded')}. A second healthy "
            "worker started halfway did not take it. " + gk.get("note", ""))
    add("- **ours**: see (i); the row is `failed` with the signal named, "
        "within milliseconds.\n")

    add("### A job allocating past 100 MB\n")
    if mem:
        add(f"- **ours**: `{mem.get('status')}` / `{mem.get('error_type')}`: {mem.get('error')}")
    rqm = read_json("rq-memory.json")
    if rqm:
        add(f"- **RQ**: `{rqm.get('status')}` — {rqm.get('note')}.")
    cm = read_json("celery-memory.json")
    if cm:
        res = cm.get("result") or {}
        peak = (f", the pool process's peak RSS {res['max_rss_kib'] / 1024:.0f} MiB"
                if res.get("max_rss_kib") else "")
        add(f"- **Celery** (`--max-memory-per-child {cm.get('limit_kib')}`, KiB): "
            f"`{cm.get('status')}`{peak}" +
            (f", error `{cm.get('error')}`" if cm.get("error") else "") +
            f" — {cm.get('note')}.")
    gwm = read_json("graphile-memory.json")
    if gwm:
        add(f"- **graphile-worker**: `{gwm.get('status')}` (worker max RSS "
            f"{gwm.get('worker_max_rss_mb')} MB) — {gwm.get('note')}.")
    add("")


def main():
    os.makedirs(PLOTS, exist_ok=True)
    md = []
    add = md.append
    machine = read_text("machine.txt", "(machine details missing)")

    add("# ProtoVideo benchmarks\n")
    add("Generated by `bench/run.sh` (raw data in `" + os.path.relpath(RESULTS, ROOT) + "/`). "
        "These machines are "
        "shared by several people at once, so every number carries that noise; the "
        "comparisons are side by side in one run. Goals are reported, never asserted.\n")
    add("## Machine and run\n")
    add("```\n" + machine + "\n```\n")
    settings = read_text("settings.txt")
    if settings:
        add("Settings: `" + settings + "`\n")
    stale = read_text("stale-builds.txt")
    if stale:
        add("Built earlier than the run (the tree did not build at run time): " +
            "; ".join(stale.splitlines()) + "\n")

    summary_at = len(md)

    # ---- supervisor ------------------------------------------------------
    add("## a. Supervisor\n")
    kill = read_csv("ours-kill.csv")
    lat = read_csv("ours-latency.csv")
    if kill is None and lat is None:
        add("Not measured in this run: " +
            (read_text("supervisor-skipped.txt") or "no supervisor results.") + "\n")
    ours_kill = diffs_ms(kill, "finished_ns", "kill_ns")
    ours_kill_seen = diffs_ms(kill, "committed_seen_ns", "kill_ns")
    ours_start = diffs_ms(lat, "child_started_ns", "enqueue_ns")
    peer_start = {p: diffs_ms(read_csv(f"{p}-latency.csv"), "child_started_ns", "enqueue_ns")
                  for p, _ in PEERS}
    peer_kill_seen = {p: diffs_ms(read_csv(f"{p}-kill.csv"), "committed_seen_ns", "kill_ns")
                      for p, _ in PEERS}

    if kill is not None:
        add("### (i) SIGKILL of a child → committed failed row\n")
        add("One task at a time (2 child slots); the child is killed from outside at t0 "
            "(CLOCK_REALTIME). *finished_at* is the task's `finished_at` as the supervisor "
            "writes it (its `now()` or its own clock when it reaped the child); *committed, "
            "seen* is when a listener got the NOTIFY of the commit, the stricter measure.\n")
        add("| ms after SIGKILL | n | p50 | p90 | p99 | max | goal |")
        add("|---|---|---|---|---|---|---|")
        add(stats_row("finished_at", ours_kill, "p99 ≤ 10 ms: " +
                      verdict(percentile(ours_kill, 99) <= 10 if ours_kill else None)))
        add(stats_row("committed, seen by a listener", ours_kill_seen, "p99 ≤ 10 ms: " +
                      verdict(percentile(ours_kill_seen, 99) <= 10 if ours_kill_seen else None)))
        if ours_kill:
            goal("SIGKILL → failed row, p99 ≤ 10 ms",
                 f"{fmt(percentile(ours_kill, 99))} ms to finished_at, "
                 f"{fmt(percentile(ours_kill_seen, 99))} ms to commit seen",
                 percentile(ours_kill, 99) <= 10)
        types = {}
        for r in kill:
            key = (r.get("status"), r.get("error_type"), r.get("error"))
            types[key] = types.get(key, 0) + 1
        add("\nWhat the rows say:\n")
        for (st, et, err), n in sorted(types.items(), key=lambda kv: -kv[1])[:5]:
            add(f"- {n}× status `{st}`, error_type `{et}`, error `{err}`")
        add("")
        png = cdf_plot("kill-latency.png", "SIGKILL -> death recorded", "milliseconds",
                       [("ours: finished_at", ours_kill), ("ours: commit seen", ours_kill_seen)]
                       + [(f"{label}: failure recorded, seen", peer_kill_seen[p])
                          for p, label in PEERS])
        if png:
            add(f"![kill latency]({png})\n")

    add("### (ii) Dispatch rate and enqueue → start latency\n")
    rates = {}
    for f in sorted(os.listdir(RESULTS)):
        m = re.match(r"ours-dispatch-(\d+)\.csv$", f)
        if m:
            rates[int(m.group(1))] = dispatch_rate(read_csv(f))
    if rates:
        add("No-op child (`bench/bench_child noop`: one result line on fd 3, exit 0), all "
            "tasks inserted by one INSERT while the supervisor runs (N_DISPATCH_RUNS batches, "
            "one after another: the median is shown). Rate = tasks ÷ (last "
            "completion seen − INSERT committed); *inner* = tasks ÷ (last `finished_at` − "
            "first `started_at`).\n")
        add("| --max-children | tasks | tasks/s | inner tasks/s | supervisor VmHWM | goal |")
        add("|---|---|---|---|---|---|")
        for c, (rate, inner) in sorted(rates.items()):
            rows = read_csv(f"ours-dispatch-{c}.csv")
            rss = read_csv(f"ours-rss-dispatch-{c}.csv")
            hwm = num(rss[0]["vm_hwm_kb"]) / 1024 if rss and rss[0].get("vm_hwm_kb") else None
            goal_cell = ("≥ 1,000 tasks/s on 2 cores: " + verdict(rate >= 1000 if rate else None)
                         if c == min(rates) else "")
            if c == min(rates) and rate:
                goal("dispatch ≥ 1,000 tasks/s on 2 cores", f"{fmt(rate, 0)} tasks/s "
                     f"({c} slots)", rate >= 1000)
            runs = dispatch_runs_text(rows)
            add(f"| {c} | {rows[0]['completed']}/{rows[0]['count']} | {fmt(rate, 0)}"
                f"{' — ' + runs if runs else ''} | {fmt(inner, 0)} | {fmt(hwm, 1)} MB | "
                f"{goal_cell} |")
        add("")
    if lat is not None:
        add("Enqueue → child started, one task at a time with 20 ms between tasks (idle "
            "system apart from the other users of the machine). The child takes "
            "CLOCK_REALTIME first thing in `main`; enqueue time is taken by the client "
            "just before its INSERT.\n")
        add("| ms | n | p50 | p90 | p99 | max | goal |")
        add("|---|---|---|---|---|---|---|")
        add(stats_row("enqueue → child started", ours_start, "p50 ≤ 5 ms: " +
                      verdict(median(ours_start) <= 5 if ours_start else None)))
        if ours_start:
            goal("enqueue → child started, p50 ≤ 5 ms",
                 f"p50 {fmt(median(ours_start))} ms, p99 {fmt(percentile(ours_start, 99))} ms",
                 median(ours_start) <= 5)
        add(stats_row("enqueue → claimed (started_at)",
                      diffs_ms(lat, "claimed_ns", "enqueue_ns")))
        add(stats_row("enqueue → completion committed, seen",
                      diffs_ms(lat, "committed_seen_ns", "enqueue_ns")))
        add("")
        png = cdf_plot("start-latency.png", "enqueue -> job started", "milliseconds",
                       [("ours", ours_start)] + [(label, peer_start[p]) for p, label in PEERS])
        if png:
            add(f"![start latency]({png})\n")

    idle = read_csv("ours-idle.csv")
    if idle:
        r = idle[0]
        secs = num(r["seconds"])
        add("### (iii) Memory and idle wakeups\n")
        hwm, rss = num(r["vm_hwm_kb"]) / 1024, num(r["vm_rss_kb"]) / 1024
        add(f"- After the dispatch and latency runs: VmHWM {fmt(hwm, 1)} MB, VmRSS "
            f"{fmt(rss, 1)} MB (goal ≤ 10 MB: {verdict(hwm <= 10)}).")
        if r.get("private_kb"):
            private, pss = num(r["private_kb"]) / 1024, num(r["pss_kb"]) / 1024
            add(f"- Of that RSS, {fmt(private, 1)} MB is the supervisor's own (private pages; "
                f"{fmt(num(r['anon_kb']) / 1024, 1)} MB anonymous) and the rest shared library "
                f"pages; PSS {fmt(pss, 1)} MB. The goal is judged on VmHWM.")
        goal("supervisor RSS ≤ 10 MB", f"VmHWM {fmt(hwm, 1)} MB", hwm <= 10)
        vol = num(r["voluntary"])
        add(f"- Idle for {secs:.0f} s: {vol:.0f} voluntary and {r['nonvoluntary']} "
            f"involuntary context switches ({vol / secs:.2f}/s). Each heartbeat and poll is "
            "a blocking libpq round trip (send, wait for the answer), which counts as a "
            "context switch of its own.")
        # Loop wakeups: the timers due in the window, a heartbeat every 5 s and a
        # safety-net poll every 10 s (the supervisor's defaults).
        expected = secs / 5 + secs / 10
        calls = strace_summary(read_text("ours-idle-strace.txt"))
        if calls:
            top = ", ".join(f"{k} {v}" for k, v in sorted(calls.items(), key=lambda kv: -kv[1])[:8])
            wakeups = calls.get("epoll_wait", 0)
            add(f"- `strace -c -f` over another {secs:.0f} s: {sum(calls.values())} system "
                f"calls ({top}); `epoll_wait` returned {wakeups} times.")
            goal("idle: no wakeups beyond heartbeats and polls",
                 f"{wakeups} event-loop wakeups in {secs:.0f} s, {expected:.0f} timers due",
                 wakeups <= expected + 1)
        add("- Expected from timers alone: a heartbeat every 5 s and a safety-net poll "
            f"every 10 s, {expected:.0f} event-loop wakeups in {secs:.0f} s (goal: none "
            "beyond heartbeats and polls; judged on `epoll_wait` returns under strace, one "
            "more allowed for the window's edges).\n")

    mem = read_json("ours-memory.json")
    if mem:
        add("### Memory limit (ours)\n")
        add("A child touching 200 MiB with `MEMORY_CRITICAL_THRESHOLD=100`:\n")
        add(f"- status `{mem.get('status')}`, error_type `{mem.get('error_type')}`, "
            f"error `{mem.get('error')}`")
        if mem.get("finished_ns") and mem.get("enqueue_ns"):
            add(f"- enqueue → failure recorded: "
                f"{(mem['finished_ns'] - mem['enqueue_ns']) / 1e6:.0f} ms")
        for a in mem.get("attempts") or []:
            add(f"- attempt {a.get('attempt')}: outcome `{a.get('outcome')}`, signal "
                f"{a.get('signal')}, oom_kills {a.get('oom_kills')}, peak memory "
                f"{fmt((a.get('peak_memory_bytes') or 0) / 2**20, 1)} MiB, "
                f"cgroup `{a.get('cgroup_mode')}`")
        add("")

    # ---- peers -------------------------------------------------------------
    peers_section(add, rates, ours_start, ours_kill_seen, mem)

    # ---- renderer ----------------------------------------------------------
    add("## c. Renderer vs the ffmpeg command line\n")
    render = read_csv("render.csv")
    if not render:
        add("Not measured in this run: " +
            (read_text("render-skipped.txt") or "no renderer results.") + "\n")
    else:
        add("The same 13 s 1080x1920 reel (three images, zoom to 1.5, darken 0.5, a text "
            "overlay, 1 s crossfades, music at 0.3; libx264 veryfast crf 23), median of "
            "the runs, interleaved. *x264 alone* encodes our own frames from a raw yuv420p "
            "file (encoding only). `/usr/bin/time -v` gives wall time and peak RSS.\n")
        names = [("ours", "ours (protovideo-render)"), ("cli", "ffmpeg CLI (zoompan+xfade+amix)"),
                 ("x264", "x264 alone on our frames")]
        med = {}
        add("| pipeline | runs ok | median wall s | all runs, wall s | "
            "median CPU s (user+sys) | median peak RSS MB |")
        add("|---|---|---|---|---|---|")
        cpu = {}
        for key, label in names:
            ok = [r for r in render if r["name"] == key and r["exit"] == "0"]
            walls = [num(r["wall_s"]) for r in ok]
            rss = [num(r["max_rss_kb"]) / 1024 for r in ok]
            med[key] = (median(walls), median(rss))
            cpu[key] = median([c for c in (num(r.get("cpu_s")) for r in ok) if c is not None])
            add(f"| {label} | {len(ok)}/{len([r for r in render if r['name'] == key])} | "
                f"{fmt(med[key][0])} | {', '.join(fmt(w) for w in walls)} | {fmt(cpu[key])} | "
                f"{fmt(med[key][1], 0)} |")
        add("")
        ow, cw, xw = med["ours"][0], med["cli"][0], med["x264"][0]
        if ow and cw:
            goal("renderer ≥ 2.5× faster than the ffmpeg CLI", f"{cw / ow:.2f}× (wall, median)",
                 cw / ow >= 2.5)
        if ow and xw:
            goal("renderer ≤ 1.15× the time of x264 alone", f"{ow / xw:.2f}× (wall, median)",
                 ow / xw <= 1.15)
        if med["ours"][1]:
            goal("renderer peak RSS ≤ 300 MB", f"{med['ours'][1]:.0f} MB", med["ours"][1] <= 300)
        if ow and cw:
            add(f"- ffmpeg CLI ÷ ours = **{cw / ow:.2f}×** wall (goal ≥ 2.5×: "
                f"{verdict(cw / ow >= 2.5)})" +
                (f"; {cpu['cli'] / cpu['ours']:.2f}× in CPU time"
                 if cpu["ours"] and cpu["cli"] else ""))
        if ow and xw:
            add(f"- ours ÷ x264 alone = **{ow / xw:.2f}×** wall (goal ≤ 1.15×: "
                f"{verdict(ow / xw <= 1.15)})" +
                (f"; {cpu['ours'] / cpu['x264']:.2f}× in CPU time"
                 if cpu["ours"] and cpu["x264"] else ""))
        if med["ours"][1]:
            add(f"- our peak RSS {med['ours'][1]:.0f} MB (goal ≤ 300 MB: "
                f"{verdict(med['ours'][1] <= 300)})" +
                (f"; x264 alone with the same settings peaks at {med['x264'][1]:.0f} MB, "
                 "a floor for any pipeline that encodes this way" if med["x264"][1] else ""))
        stream = read_text("render-ours-stream.txt")
        if stream:
            add(f"- our output: {' '.join(stream.split())}")
        add("")
        png = bar_plot("render.png", "13 s reel, median wall time", "seconds",
                       [(label.split(" (")[0], med[k][0]) for k, label in names])
        if png:
            add(f"![render]({png})\n")

    if GOALS:
        table = ["## Goals at a glance\n", "| goal | this run | |", "|---|---|---|"]
        table += [f"| {g} | {m} | {v} |" for g, m, v in GOALS]
        md[summary_at:summary_at] = table + [""]

    with open(os.path.join(OUT, "report.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print(f"report.py: wrote {os.path.join(OUT, 'report.md')}", file=sys.stderr)


if __name__ == "__main__":
    main()

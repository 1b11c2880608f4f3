// SPDX-License-Identifier: MIT
// graphile-worker side of bench/run.sh --with-peers: the same no-op, kill and
// memory runs as bench/supervisor.sh. graphile-worker runs jobs as async
// functions inside one Node.js process (no process per job).
//
//   node graphile_bench.mjs worker CONN           a worker process for the kill run
//   node graphile_bench.mjs bench CONN RESULTS N_DISPATCH N_LATENCY CONCURRENCY WATCH_S
//
// Writes graphile-dispatch.csv, graphile-latency.csv, graphile-kill.json and
// graphile-memory.json into RESULTS.
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

// graphile-worker is installed beside the build, not here: resolve it from
// NODE_PATH-like PEERS_NODE_DIR.
const require = createRequire(path.join(process.env.PEERS_NODE_DIR ?? ".", "package.json"));
const { run, makeWorkerUtils } = require("graphile-worker");
const pg = require("pg");

const nowNs = () => BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function makeLogger() {
    // graphile-worker logs every job at info; keep warnings and errors only, as
    // the supervisor's benchmark keeps its log in a file.
    const { Logger } = require("graphile-worker");
    return new Logger((scope) => (level, message) => {
        if (level === "error" || level === "warning") console.error(`[${level}] ${message}`);
    });
}

const tasks = {
    noop: async (_payload, helpers) => {
        started.set(String(helpers.job.id), nowNs());
    },
    sleeper: async (payload) => {
        const file = path.join(payload.dir, String(process.pid));
        fs.writeFileSync(file + ".tmp", `${process.pid}\n`);
        fs.renameSync(file + ".tmp", file);
        await sleep(3600 * 1000);
    },
    allocate: async (payload, helpers) => {
        const chunks = [];
        for (let i = 0; i < payload.mib; i += 4) chunks.push(Buffer.alloc(4 << 20, 0xa5));
        started.set(String(helpers.job.id), nowNs());
        return chunks.length;
    },
};
const started = new Map();
const completed = new Map();  // job id -> { t, error }, from job:complete
const waiters = new Map();    // job id -> resolve
let allWaiter = null;         // { n, resolve }

function track(runner) {
    runner.events.on("job:complete", ({ job, error }) => {
        const id = String(job.id);
        completed.set(id, { t: nowNs(), error });
        waiters.get(id)?.();
        if (allWaiter && completed.size >= allWaiter.n) allWaiter.resolve();
    });
}

function completion(id) {
    if (completed.has(id)) return Promise.resolve(completed.get(id));
    return new Promise((r) => waiters.set(id, () => r(completed.get(id))));
}

async function workerMain(conn) {
    const runner = await run({ connectionString: conn, concurrency: 1, taskList: tasks,
                               logger: makeLogger() });
    await runner.promise;
}

function csv(file, header, rows) {
    fs.writeFileSync(file, [header, ...rows.map((r) => r.join(","))].join("\n") + "\n");
}

async function dispatch(client, n, results) {
    completed.clear();
    const all = new Promise((resolve) => (allWaiter = { n, resolve }));
    const tEnqueue = nowNs();
    await client.query(
        "SELECT graphile_worker.add_job('noop', json_build_object('i', g)) " +
            "FROM generate_series(1, $1::int) g",
        [n]);
    const tCommitted = nowNs();
    await all;
    const tDone = nowNs();
    allWaiter = null;
    const starts = [...started.values()];
    const first = starts.reduce((a, b) => (b < a ? b : a), starts[0]);
    csv(path.join(results, "graphile-dispatch.csv"),
        "count,completed,enqueue_ns,enqueue_committed_ns,all_seen_ns,first_started_ns,last_finished_ns",
        [[n, completed.size, tEnqueue, tCommitted, tDone, first, ""]]);
}

async function latency(runner, n, results) {
    const rows = [];
    for (let i = 0; i < n; i++) {
        const tEnqueue = nowNs();
        const job = await runner.addJob("noop", {});
        const id = String(job.id);
        const { t } = await completion(id);
        rows.push([id, tEnqueue, started.get(id), t, "completed"]);
        await sleep(20);
    }
    csv(path.join(results, "graphile-latency.csv"),
        "task_id,enqueue_ns,child_started_ns,committed_seen_ns,status", rows);
}

async function killRun(conn, client, results, watchSeconds) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pv-bench-gw-kill."));
    const self = fileURLToPath(import.meta.url);
    const worker = spawn(process.execPath, [self, "worker", conn],
                         { stdio: ["ignore", "inherit", "inherit"], env: process.env });
    await sleep(2000);
    const utils = await makeWorkerUtils({ connectionString: conn, logger: makeLogger() });
    const job = await utils.addJob("sleeper", { dir });
    while (fs.readdirSync(dir).filter((f) => !f.endsWith(".tmp")).length === 0) await sleep(1);
    await sleep(5);
    const t0 = nowNs();
    process.kill(worker.pid, "SIGKILL");
    // Watch the job row: does anything record the death, and when?
    const samples = [];
    const deadline = Date.now() + watchSeconds * 1000;
    let replacement = null;
    while (Date.now() < deadline) {
        const { rows } = await client.query(
            "SELECT locked_at, locked_by, attempts, last_error, " +
                "extract(epoch from now() - locked_at) AS locked_for_s " +
                "FROM graphile_worker.jobs WHERE id = $1", [job.id]);
        samples.push({ t_ms: Number(nowNs() - t0) / 1e6, row: rows[0] ?? null });
        // Halfway, start a healthy worker: does it pick the job up again?
        if (!replacement && Date.now() > deadline - watchSeconds * 500) {
            replacement = spawn(process.execPath, [self, "worker", conn],
                                { stdio: ["ignore", "inherit", "inherit"], env: process.env });
        }
        await sleep(500);
    }
    if (replacement) replacement.kill("SIGKILL");
    await utils.release();
    const last = samples[samples.length - 1]?.row;
    fs.writeFileSync(path.join(results, "graphile-kill.json"), JSON.stringify({
        job_id: String(job.id), kill_ns: String(t0), watch_seconds: watchSeconds,
        final_row: last,
        recorded: Boolean(last && (last.last_error || !last.locked_at)),
        note: "graphile-worker runs jobs inside the worker process; after that process is " +
              "SIGKILLed the job stays locked by the dead worker and no error is recorded. " +
              "get_job only takes such a job again once locked_at is 4 hours old.",
        samples: samples.filter((_, i) => i % 10 === 0),
    }, null, 1));
}

async function memoryRun(runner, results) {
    const t0 = nowNs();
    const job = await runner.addJob("allocate", { mib: 200 });
    const { t, error } = await completion(String(job.id));
    fs.writeFileSync(path.join(results, "graphile-memory.json"), JSON.stringify({
        status: error ? "failed" : "completed", error: error ? String(error) : null,
        enqueue_ns: String(t0), seen_ns: String(t), job_id: String(job.id),
        worker_max_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
        note: "graphile-worker has no per-job memory limit: the job shares the worker " +
              "process and runs to completion",
    }, null, 1));
}

async function benchMain(conn, results, nDispatch, nLatency, concurrency, watchSeconds) {
    const client = new pg.Client({ connectionString: conn });
    await client.connect();
    const runner = await run({ connectionString: conn, concurrency, taskList: tasks,
                               logger: makeLogger(), noHandleSignals: true });
    track(runner);
    await sleep(1000);
    console.error(`graphile: dispatch ${nDispatch}, concurrency ${concurrency}`);
    await dispatch(client, nDispatch, results);
    await sleep(2000);
    started.clear();
    console.error(`graphile: latency ${nLatency}`);
    await latency(runner, nLatency, results);
    console.error("graphile: memory");
    await memoryRun(runner, results);
    await runner.stop();
    console.error(`graphile: kill (watching ${watchSeconds} s)`);
    await killRun(conn, client, results, watchSeconds);
    await client.end();
}

const [mode, ...args] = process.argv.slice(2);
if (mode === "worker") {
    await workerMain(args[0]);
} else if (mode === "bench") {
    const [conn, results, nDispatch, nLatency, concurrency, watch] = args;
    await benchMain(conn, results, Number(nDispatch), Number(nLatency), Number(concurrency),
                    Number(watch));
    process.exit(0);
} else {
    console.error("usage: graphile_bench.mjs worker CONN | bench CONN RESULTS N_DISPATCH " +
                  "N_LATENCY CONCURRENCY WATCH_S");
    process.exit(2);
}

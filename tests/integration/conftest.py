# SPDX-License-Identifier: MIT
"""Fixtures for the supervisor integration and chaos tests.

One private PostgreSQL per session (scripts/pg.sh in a temp state folder), the
schema from `supervisor --migrate`, clean tables per test, and a harness (`pv`)
that inserts tasks, runs supervisors with flags and environment, reads the rows
back and checks that nothing is left behind: no task cgroup, no work folder, no
process of the test's children.

The build folder comes from PV_BUILD_DIR (set by `meson test`); without it the
first of build/, build-*/ holding both programs is used.
"""

import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import psycopg2
import psycopg2.extras
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

# Environment variables the supervisor reads (supervisor/CLI.md); the caller's
# values must not leak into a test run.
SUPERVISOR_ENV = [
    "MAX_CHILDREN", "CHILD_COMMAND", "CHILD_USER", "TASK_TIMEOUT", "TERM_GRACE",
    "SHUTDOWN_GRACE", "MEMORY_WARNING_THRESHOLD", "MEMORY_CRITICAL_THRESHOLD",
    "ENABLE_SIGNAL_HANDLING", "DB_RETRY_ATTEMPTS", "DB_RETRY_DELAY", "POLL_INTERVAL",
    "WORK_ROOT", "STATE_DIR", "SUPERVISOR_INSTANCE", "CGROUP_MODE", "RETRY_BASE_DELAY",
    "RETRY_ON", "LEASE_SECONDS", "HEARTBEAT_SECONDS", "LOG_FORMAT", "LOG_LEVEL",
    "EXIT_WHEN_IDLE", "DATABASE_URL", "PGHOST", "PGPORT", "PGUSER", "PGDATABASE",
    "PGPASSWORD", "PGSERVICE",
]

TERMINAL = ("completed", "failed", "cancelled")


def wait_until(predicate, timeout, interval=0.05, what="condition"):
    """Polls `predicate` until it returns a truthy value; fails after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def _find_build_dir():
    env = os.environ.get("PV_BUILD_DIR")
    if env:
        return Path(env)
    for cand in [REPO_ROOT / "build", *sorted(REPO_ROOT.glob("build-*"))]:
        built = cand / "supervisor" / "supervisor", cand / "tests" / "fault_child"
        if all(p.exists() for p in built):
            return cand
    return REPO_ROOT / "build"


BUILD_DIR = _find_build_dir()
SUPERVISOR = BUILD_DIR / "supervisor" / "supervisor"
FAULT_CHILD = BUILD_DIR / "tests" / "fault_child"


# --- processes and cgroups -------------------------------------------------

def _proc_pids():
    for name in os.listdir("/proc"):
        if name.isdigit():
            yield int(name)


def proc_stat(pid):
    """(state, ppid, comm) of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    comm = data[data.index("(") + 1:data.rindex(")")]
    rest = data[data.rindex(")") + 2:].split()
    return rest[0], int(rest[1]), comm


def proc_argv(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0")[:-1]]


def proc_cmdline(pid):
    return " ".join(proc_argv(pid))


def has_marker(pid, marker):
    """Whether the process was started with the arguments `--marker MARKER`, or
    carries FAULT_CHILD_MARKER=MARKER in its environment (the renderer that
    fault_child's "render" becomes takes no --marker argument)."""
    argv = proc_argv(pid)
    if any(a == "--marker" and b == marker for a, b in zip(argv, argv[1:])):
        return True
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read().split(b"\0")
    except OSError:
        return False
    return f"FAULT_CHILD_MARKER={marker}".encode() in env


def processes_with(marker):
    """Live (non-zombie) processes marked by `has_marker`: the test's children
    and their descendants, not the supervisor (whose --child-command value
    merely contains the marker)."""
    found = []
    for pid in _proc_pids():
        if pid == os.getpid():
            continue
        if has_marker(pid, marker):
            st = proc_stat(pid)
            if st and st[0] != "Z":
                found.append(pid)
    return found


def zombie_children(ppid):
    found = []
    for pid in _proc_pids():
        st = proc_stat(pid)
        if st and st[1] == ppid and st[0] == "Z":
            found.append(pid)
    return found


def pid_alive(pid):
    st = proc_stat(pid)
    return st is not None and st[0] != "Z"


def _own_cgroups():
    """[(controllers, path)] of this process: one entry per v1 hierarchy, and
    (("",), path) for the unified one."""
    own = []
    with open("/proc/self/cgroup") as f:
        for line in f:
            hid, controllers, path = line.rstrip("\n").split(":", 2)
            own.append((tuple(controllers.split(",")) if hid != "0" else ("",), path))
    return own


def _cgroup_mountpoint(controllers):
    """Mount point of the hierarchy with exactly these controllers (("",) = v2)."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.rstrip("\n").split(" - ", 1)
            mountpoint = left.split()[4]
            fstype, _source, options = right.split(" ", 2)
            if controllers == ("",):
                if fstype == "cgroup2":
                    return mountpoint
            elif fstype == "cgroup" and set(controllers) <= set(options.split(",")):
                return mountpoint
    return None


def instance_cgroup_dirs(instance):
    """Every folder where a supervisor with `instance` may keep task cgroups: the
    instance folder below this process's cgroup in each hierarchy (memory, pids,
    the unified tracking tree, ...)."""
    dirs = set()
    for controllers, path in _own_cgroups():
        mountpoint = _cgroup_mountpoint(controllers)
        if not mountpoint:
            continue
        base = Path(mountpoint + path)
        dirs.add(base / f"protovideo-{instance}")
        # On cgroup v2 the supervisor may move itself into a "supervisor" leaf
        # and keep the instance folder beside it.
        if controllers == ("",) and path != "/":
            dirs.add(base.parent / f"protovideo-{instance}")
    return sorted(dirs)


def task_cgroups(instance):
    found = []
    for d in instance_cgroup_dirs(instance):
        if d.is_dir():
            found.extend(str(p) for p in d.glob("task-*") if p.is_dir())
    return found


def _force_remove_cgroups(instance):
    """Teardown only: kill what is left in the test's cgroups and remove them."""
    for d in instance_cgroup_dirs(instance):
        if not d.is_dir():
            continue
        for cg in sorted(d.glob("**/"), key=lambda p: -len(p.parts)):
            procs = cg / "cgroup.procs"
            for _ in range(50):
                try:
                    pids = [int(x) for x in procs.read_text().split()]
                except OSError:
                    pids = []
                if not pids:
                    break
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                time.sleep(0.05)
            try:
                os.rmdir(cg)
            except OSError:
                pass


# --- JSON logs ---------------------------------------------------------------

def parse_log_lines(text):
    records, bad = [], []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            bad.append(line)
            continue
        if isinstance(obj, dict):
            records.append(obj)
        else:
            bad.append(line)
    return records, bad


class Supervisor:
    """One supervisor subprocess; stdout and stderr go to files in the test folder."""

    def __init__(self, argv, env, log_dir, name):
        self.argv = argv
        self.out_path = log_dir / f"{name}.stdout"
        self.err_path = log_dir / f"{name}.stderr"
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        self.proc = subprocess.Popen(argv, env=env, stdout=self._out, stderr=self._err,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid = self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def wait(self, timeout):
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"supervisor {self.pid} still running after {timeout}s\n{self.tail()}")
        self._close()
        return rc

    def send(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Sends `sig` and waits; SIGKILLs (and fails) if it does not exit in time."""
        if self.alive():
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self._close()
                pytest.fail(f"supervisor {self.pid} ignored signal {sig} for {timeout}s")
        self._close()
        return self.proc.returncode

    def kill(self):
        if self.alive():
            self.proc.kill()
            self.proc.wait()
        self._close()

    def _close(self):
        for f in (self._out, self._err):
            if not f.closed:
                f.close()

    def output(self):
        text = ""
        for p in (self.out_path, self.err_path):
            try:
                text += p.read_text(errors="replace")
            except OSError:
                pass
        return text

    def logs(self):
        """JSON log records from stdout and stderr."""
        return parse_log_lines(self.output())[0]

    def non_json_lines(self):
        return parse_log_lines(self.output())[1]

    def tail(self, n=40):
        return "\n".join(self.output().splitlines()[-n:])


# --- the harness ---------------------------------------------------------------

class Harness:
    def __init__(self, database_url, tmp, test_name):
        self.database_url = database_url
        self.tmp = tmp
        slug = re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-")[:24]
        self.instance = f"it-{slug}-{uuid.uuid4().hex[:6]}"
        self.marker = f"pvit-{uuid.uuid4().hex[:12]}"
        self.work_root = tmp / "work"
        self.state_dir = tmp / "state"
        # Children may run as an unprivileged user; give them a folder they can
        # write pid files into.
        self.shared = tmp / "shared"
        for d in (self.work_root, self.state_dir, self.shared):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(tmp, 0o755)
        os.chmod(self.shared, 0o777)
        self.supervisors = []
        self.instances = {self.instance}
        self.conn = psycopg2.connect(database_url)
        self.conn.autocommit = True
        self.host = socket.gethostname()

    # database

    def sql(self, query, args=None):
        """Runs one statement (autocommit); reconnects once if a test restarted
        PostgreSQL under the connection."""
        for attempt in (1, 2):
            try:
                if self.conn.closed:
                    self.reconnect()
                with self.conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                    cur.execute(query, args)
                    if cur.description is None:
                        return []
                    return [dict(r) for r in cur.fetchall()]
            except (psycopg2.OperationalError, psycopg2.InterfaceError):
                if attempt == 2:
                    raise
                self.reconnect()
        return []

    def reconnect(self):
        if not self.conn.closed:
            self.conn.close()
        self.conn = psycopg2.connect(self.database_url)
        self.conn.autocommit = True

    def clean_tables(self):
        self.sql("TRUNCATE task_attempts, tasks, workers CASCADE")

    def insert(self, request, max_attempts=1, timeout_seconds=None):
        if "fault" in request:
            request = dict(request)
            request.setdefault("marker", self.marker)
        rows = self.sql(
            "INSERT INTO tasks (request, max_attempts, timeout_seconds)"
            " VALUES (%s, %s, %s) RETURNING id::text AS id",
            (json.dumps(request), max_attempts, timeout_seconds))
        return rows[0]["id"]

    def insert_many(self, requests, max_attempts=1):
        return [self.insert(r, max_attempts=max_attempts) for r in requests]

    def task(self, task_id):
        rows = self.sql("SELECT *, id::text AS id FROM tasks WHERE id = %s", (task_id,))
        assert rows, f"task {task_id} not found"
        return rows[0]

    def attempts(self, task_id):
        return self.sql(
            "SELECT * FROM task_attempts WHERE task_id = %s ORDER BY attempt", (task_id,))

    def wait_status(self, task_id, statuses, timeout=30):
        if isinstance(statuses, str):
            statuses = (statuses,)

        def check():
            t = self.task(task_id)
            return t if t["status"] in statuses else None
        return wait_until(check, timeout, what=f"task {task_id} to reach {statuses}")

    def child_pids(self, task_id=None):
        """Pids of this test's fault_child processes after exec (by marker), only
        those of `task_id` when given; grandchildren share the command line, so
        callers that need the main child also check the parent."""
        pids = processes_with(self.marker)
        if task_id is not None:
            pids = [p for p in pids if f"--task-id {task_id}" in proc_cmdline(p)]
        return pids

    def main_child(self, task_id, supervisor=None):
        """The task's running main child once it has exec'd the child program:
        the pid task_attempts records, else the one found in /proc by command line."""
        ours = set(self.child_pids(task_id))
        rows = self.sql(
            "SELECT pid FROM task_attempts WHERE task_id = %s AND ended_at IS NULL"
            " AND pid IS NOT NULL ORDER BY attempt DESC LIMIT 1", (task_id,))
        if rows:
            return rows[0]["pid"] if rows[0]["pid"] in ours else None
        sups = [supervisor] if supervisor else self.supervisors
        parents = {s.pid for s in sups}
        for pid in ours:
            st = proc_stat(pid)
            if st and st[1] in parents:
                return pid
        return None

    def wait_running(self, task_id, timeout=30):
        """Waits until the task is in progress and its child has exec'd; returns the pid."""
        def check():
            if self.task(task_id)["status"] != "inprogress":
                return None
            return self.main_child(task_id)
        return wait_until(check, timeout, what=f"task {task_id} to run")

    # supervisors

    def child_command(self, renderer=None):
        """fault_child with the test's marker; with `renderer`, its "render"
        fault execs that program."""
        command = f"{FAULT_CHILD} --marker {self.marker}"
        return f"{command} --renderer {renderer}" if renderer else command

    def supervisor_env(self, env=None):
        e = {k: v for k, v in os.environ.items() if k not in SUPERVISOR_ENV}
        e["DATABASE_URL"] = self.database_url
        e["WORK_ROOT"] = str(self.work_root)
        if env:
            e.update({k: str(v) for k, v in env.items()})
        return e

    def argv(self, *flags, exit_when_idle=True, child_command=None, max_children=2,
             task_timeout=60):
        """Supervisor argv: test defaults, minus any flag that `flags` sets itself."""
        defaults = {
            "--max-children": str(max_children),
            "--child-command": child_command or self.child_command(),
            "--task-timeout": str(task_timeout),
            "--log-format": "json",
            "--instance": self.instance,
            "--state-dir": str(self.state_dir),
            "--work-root": str(self.work_root),
            "--retry-base-delay": "0.2",
            "--poll-interval": "1",
        }
        given = {str(f) for f in flags if str(f).startswith("--")}
        argv = [str(SUPERVISOR)]
        for name, value in defaults.items():
            if name not in given:
                argv += [name, value]
        if exit_when_idle and "--exit-when-idle" not in given:
            argv.append("--exit-when-idle")
        argv.extend(str(f) for f in flags)
        return argv

    def start(self, *flags, env=None, exit_when_idle=False, **kw):
        name = f"supervisor-{len(self.supervisors)}"
        flags_list = [str(f) for f in flags]
        if "--instance" in flags_list:
            self.instances.add(flags_list[flags_list.index("--instance") + 1])
        sup = Supervisor(self.argv(*flags, exit_when_idle=exit_when_idle, **kw),
                         self.supervisor_env(env), self.tmp, name)
        self.supervisors.append(sup)
        return sup

    def run(self, *flags, env=None, timeout=90, expect_rc=0, **kw):
        """Runs a supervisor with --exit-when-idle to completion and returns it."""
        sup = self.start(*flags, env=env, exit_when_idle=True, **kw)
        rc = sup.wait(timeout)
        if expect_rc is not None:
            assert rc == expect_rc, f"supervisor exited {rc}\n{sup.tail()}"
        return sup

    # leftovers

    def leftovers(self):
        problems = []
        cgs = [cg for inst in sorted(self.instances) for cg in task_cgroups(inst)]
        if cgs:
            problems.append(f"task cgroups left: {cgs}")
        if self.work_root.exists():
            entries = sorted(os.listdir(self.work_root))
            if entries:
                problems.append(f"work root not empty: {entries}")
        procs = processes_with(self.marker)
        if procs:
            problems.append("processes left: " + "; ".join(
                f"{p} {proc_cmdline(p)[:120]}" for p in procs))
        for sup in self.supervisors:
            if sup.alive():
                zombies = zombie_children(sup.pid)
                if zombies:
                    problems.append(f"zombie children of supervisor {sup.pid}: {zombies}")
        return problems

    def assert_clean(self, timeout=10):
        """Nothing of the test's tasks remains (waits briefly for teardown)."""
        deadline = time.monotonic() + timeout
        while True:
            problems = self.leftovers()
            if not problems:
                return
            if time.monotonic() > deadline:
                pytest.fail("leftovers after the run:\n  " + "\n  ".join(problems))
            time.sleep(0.1)

    def teardown(self):
        for sup in self.supervisors:
            if sup.alive():
                sup.send(signal.SIGTERM)
                try:
                    sup.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    sup.kill()
            sup._close()
        # Whatever a broken run left behind must not disturb the next test.
        for pid in processes_with(self.marker):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for inst in self.instances:
            _force_remove_cgroups(inst)
        self.conn.close()


# --- fixtures ----------------------------------------------------------------

class PrivatePostgres:
    """The session's PostgreSQL (scripts/pg.sh), which tests may pause and resume."""

    def __init__(self, state):
        self.state = state
        self.script = REPO_ROOT / "scripts" / "pg.sh"
        self.url = None

    def ctl(self, command, timeout=120):
        out = subprocess.run([str(self.script), command, self.state], capture_output=True,
                             text=True, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"pg.sh {command} failed: {out.stderr}")
        return out.stdout

    def pause(self):
        self.ctl("pause")

    def resume(self):
        self.ctl("resume")

    def restart(self):
        self.ctl("restart")

    def is_up(self):
        try:
            psycopg2.connect(self.url, connect_timeout=2).close()
            return True
        except psycopg2.OperationalError:
            return False


@pytest.fixture(scope="session")
def postgres():
    if not SUPERVISOR.exists():
        pytest.fail(f"supervisor not built: {SUPERVISOR} (set PV_BUILD_DIR)")
    if not FAULT_CHILD.exists():
        pytest.fail(f"fault_child not built: {FAULT_CHILD} (set PV_BUILD_DIR)")
    state = tempfile.mkdtemp(prefix="pvit-pg-")
    os.chmod(state, 0o755)
    pg = PrivatePostgres(state)
    try:
        pg.url = pg.ctl("start", timeout=180).strip().splitlines()[-1]
    except RuntimeError as e:
        pytest.fail(str(e))
    env = {k: v for k, v in os.environ.items() if k not in SUPERVISOR_ENV}
    env["DATABASE_URL"] = pg.url
    mig = subprocess.run([str(SUPERVISOR), "--migrate", "--log-format", "json"], env=env,
                         capture_output=True, text=True, timeout=120)
    if mig.returncode != 0:
        subprocess.run([str(pg.script), "destroy", state], capture_output=True, timeout=120)
        pytest.fail(f"supervisor --migrate failed ({mig.returncode}): {mig.stdout}{mig.stderr}")
    yield pg
    subprocess.run([str(pg.script), "destroy", state], capture_output=True, timeout=120)
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def database_url(postgres):
    return postgres.url


@pytest.fixture
def pv(postgres, request):
    # A test that stopped PostgreSQL and failed before starting it again must not
    # take the rest of the session down with it.
    if not postgres.is_up():
        postgres.resume()
    tmp = Path(tempfile.mkdtemp(prefix="pvit-"))
    h = Harness(postgres.url, tmp, request.node.name)
    h.clean_tables()
    yield h
    h.teardown()
    failed = getattr(request.node, "rep_call", None)
    if failed is None or not failed.failed:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"kept test folder {tmp}")


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def rng():
    seed = int(os.environ.get("PV_TEST_SEED", random.randrange(1 << 30)))
    print(f"PV_TEST_SEED={seed}")
    return random.Random(seed)


def log_records_for(sup, task_id):
    return [r for r in sup.logs() if r.get("task_id") == task_id]


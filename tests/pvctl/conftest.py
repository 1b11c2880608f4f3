# SPDX-License-Identifier: MIT
# Fixtures for the pvctl tests: one private PostgreSQL per session (scripts/pg.sh),
# the schema applied by `pvctl migrate`, and empty tables before each test.
import os
import pathlib
import subprocess

import psycopg2
import pytest

SOURCE_DIR = pathlib.Path(os.environ.get("PV_SOURCE_DIR",
                                         pathlib.Path(__file__).resolve().parents[2]))


def find_pvctl():
    if os.environ.get("PVCTL"):
        return os.environ["PVCTL"]
    for build in sorted(SOURCE_DIR.glob("build*")):
        candidate = build / "supervisor" / "pvctl" / "pvctl"
        if candidate.is_file():
            return str(candidate)
    pytest.exit("pvctl not built: set PVCTL or build it (ninja -C build)", returncode=2)


@pytest.fixture(scope="session")
def pvctl_path():
    return find_pvctl()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory, pvctl_path):
    state = tmp_path_factory.mktemp("pvctl-pg")
    pg = str(SOURCE_DIR / "scripts" / "pg.sh")
    url = subprocess.run([pg, "start", str(state)], check=True, capture_output=True,
                         text=True).stdout.strip()
    try:
        env = dict(os.environ, DATABASE_URL=url)
        migrate = subprocess.run([pvctl_path, "migrate"], env=env, capture_output=True,
                                 text=True)
        assert migrate.returncode == 0, migrate.stderr
        yield url
    finally:
        subprocess.run([pg, "destroy", str(state)], capture_output=True)


@pytest.fixture
def db(database_url):
    """A psycopg2 connection in autocommit mode, on empty tables."""
    conn = psycopg2.connect(database_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("TRUNCATE task_attempts, tasks, workers CASCADE")
    yield conn
    conn.close()


class Pvctl:
    """Runs the built pvctl against the test database."""

    def __init__(self, path, url):
        self.path = path
        self.env = dict(os.environ, DATABASE_URL=url)

    def __call__(self, *args, stdin=None, env=None, timeout=30):
        return subprocess.run([self.path, *args], input=stdin, capture_output=True, text=True,
                              env=env or self.env, timeout=timeout)


@pytest.fixture
def pvctl(pvctl_path, database_url, db):
    return Pvctl(pvctl_path, database_url)

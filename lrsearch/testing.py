"""What the test suite and the benchmarks share.

The real server (gunicorn + its runner) started on a free port, requests to it, the
Chromium both drive, a fresh PostgreSQL database, and where a search's worker time went
(from its records). Importing it loads no Flask, SQLAlchemy or NumPy of its own.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lrsearch.models import Search

ROOT = Path(__file__).resolve().parent.parent  # lrsearch/testing.py -> the repository root
# The PostgreSQL server the tests and the benchmarks make their throwaway databases on.
POSTGRES_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
# Debian's chromium (never a downloaded browser build), as the benchmarks and tests drive it.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(data_dir: str, web_workers: int = 2, workers: int = 2, log=None, **env: str):
    """gunicorn with gunicorn.conf.py on 127.0.0.1; yields (host, port, process).

    log: an open file for the server's output (discarded without one). At the end the
    server gets SIGTERM; one that has not stopped 30 s later is killed, and that raises.
    """
    port = free_port()
    environment = {
        **os.environ,
        "LRSEARCH_DATA_DIR": data_dir,
        "LRSEARCH_WORKERS": str(workers),
        "LRSEARCH_BIND": f"127.0.0.1:{port}",
        "LRSEARCH_WEB_WORKERS": str(web_workers),
        "LRSEARCH_SECRET_KEY": "bench",
        **env,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:app"],
        cwd=ROOT,
        env=environment,
        stdout=log or subprocess.DEVNULL,
        stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
    )
    try:
        wait_until_up("127.0.0.1", port, process)
        yield "127.0.0.1", port, process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise RuntimeError("gunicorn did not stop within 30 s of SIGTERM") from None


def wait_until_up(host: str, port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            status, _ = request(host, port, "GET", "/api/searches")
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the server did not answer in time")


def request(
    host: str,
    port: int,
    method: str,
    path: str,
    body: dict | None = None,
    connection: http.client.HTTPConnection | None = None,
) -> tuple[int, object]:
    """One request; JSON in and out."""
    conn = connection or http.client.HTTPConnection(host, port, timeout=30)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, path, json.dumps(body) if body is not None else None, headers)
    response = conn.getresponse()
    data = response.read()
    if connection is None:
        conn.close()
    kind = response.getheader("Content-Type", "")
    return response.status, json.loads(data) if "json" in kind else data


def worker_time(search: Search) -> dict[str, float]:
    """Where the workers' wall time went, in seconds per worker, from the search's records.

    - training: its epochs, as the trainer timed them (validation included);
    - in trials: the rest of its trials, from the start of each to its end (data set,
      database, log.txt, the plot);
    - before: from the search's creation to its first trial's start (claim, process start);
    - between: from the end of one of its trials to the start of its next;
    - at the end: from its last trial's end to the search's last trial's end.
    Per worker they add up to the search's wall time, creation to last end.
    """
    by_worker = trials_by_worker(search)
    end = max(t.finished_at for t in search.trials)
    totals = dict.fromkeys(("training", "in trials", "before", "between", "at the end"), 0.0)
    for trials in by_worker.values():
        training = sum(t.seconds for t in trials)
        totals["training"] += training
        totals["in trials"] += sum(_seconds(t.started_at, t.finished_at) for t in trials)
        totals["in trials"] -= training
        totals["before"] += _seconds(search.created_at, trials[0].started_at)
        totals["between"] += sum(
            _seconds(a.finished_at, b.started_at) for a, b in itertools.pairwise(trials)
        )
        totals["at the end"] += _seconds(trials[-1].finished_at, end)
    return {key: total / len(by_worker) for key, total in totals.items()}


def trials_by_worker(search: Search) -> dict[str, list]:
    """The search's trials per worker (host:pid of its last attempt), each in start order."""
    by_worker: dict[str, list] = {}
    for trial in sorted(search.trials, key=lambda t: t.started_at):
        by_worker.setdefault(trial.worker, []).append(trial)
    return by_worker


def _seconds(start, end) -> float:
    return (end - start).total_seconds()


@contextmanager
def fresh_postgres(server: str = POSTGRES_SERVER, prefix: str = "lrsearch_test"):
    """A new, empty database on the PostgreSQL server: yields its URL, drops it afterwards
    (sessions left on it included). SQLAlchemy's OperationalError where no server answers.
    """
    import uuid

    from sqlalchemy import create_engine, text

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield f"{server}/{name}"
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()

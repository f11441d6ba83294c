"""Start the real server (gunicorn + its runner) on a free port, for benchmarks and tests."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
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

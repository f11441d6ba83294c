"""gunicorn settings: the web workers, and exactly one runner process beside them.

The runner is started by the master when the server starts (not at import, not per web
worker) and stopped when it stops; it dies with the master if that is killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

bind = os.environ.get("LRSEARCH_BIND", "127.0.0.1:5000")
workers = int(os.environ.get("LRSEARCH_WEB_WORKERS", "2"))
threads = int(os.environ.get("LRSEARCH_WEB_THREADS", "4"))
worker_class = "gthread"
timeout = 60
graceful_timeout = 10
accesslog = os.environ.get("LRSEARCH_ACCESS_LOG") or None
proc_name = "lrsearch"

_runner: subprocess.Popen | None = None


def _flask(*args: str) -> list[str]:
    return [sys.executable, "-m", "flask", "--app", "app", "lrsearch", *args]


def _die_with_master() -> None:
    """In the runner's child: SIGTERM when the gunicorn master dies, however it dies."""
    import ctypes

    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def on_starting(server) -> None:
    """Apply migrations, then start the one runner."""
    global _runner
    here = os.path.dirname(os.path.abspath(__file__))
    subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", "db", "upgrade"], check=True, cwd=here
    )
    _runner = subprocess.Popen(_flask("runner"), cwd=here, preexec_fn=_die_with_master)
    server.log.info("runner started (pid %s)", _runner.pid)


def on_exit(server) -> None:
    """Stop the runner and, through it, its worker pool."""
    if _runner is None or _runner.poll() is not None:
        return
    _runner.terminate()
    try:
        _runner.wait(timeout=20)
    except subprocess.TimeoutExpired:
        _runner.kill()
        _runner.wait()
    server.log.info("runner stopped")

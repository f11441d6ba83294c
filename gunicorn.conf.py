"""gunicorn settings: the web workers, and exactly one runner process beside them.

The runner is started by the master when the server starts (not at import, not per web
worker) and stopped when it stops; it dies with the master if that is killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

bind = os.environ.get("LRSEARCH_BIND", "127.0.0.1:5000")
workers = int(os.environ.get("LRSEARCH_WEB_WORKERS", "2"))
threads = int(os.environ.get("LRSEARCH_WEB_THREADS", "4"))
worker_class = "gthread"
timeout = 60
graceful_timeout = 10
accesslog = os.environ.get("LRSEARCH_ACCESS_LOG") or None
proc_name = "lrsearch"

# The runner is supervised by the master: restarted whenever it exits, with a backoff of
# 1 s doubling to 30 s (back to 1 s after a minute of health). The master holds the one
# Popen: gunicorn's reload (HUP) and web-worker restarts leave it alone, so there is never
# a second runner. What the supervisor knows is kept in the data folder for the pages.
FIRST_BACKOFF, LONGEST_BACKOFF, HEALTHY_AFTER = 1.0, 30.0, 60.0
_runner: subprocess.Popen | None = None
_stopping = threading.Event()


def _flask(*args: str) -> list[str]:
    return [sys.executable, "-m", "flask", "--app", "app", "lrsearch", *args]


def _die_with_master() -> None:
    """In the runner's child: SIGTERM when the gunicorn master dies, however it dies."""
    import ctypes

    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _start_runner(here: str) -> subprocess.Popen:
    return subprocess.Popen(_flask("runner"), cwd=here, preexec_fn=_die_with_master)


def _how_it_ended(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


def _supervise(server, here: str) -> None:
    """Restart the runner whenever it ends (but when the server stops), with backoff."""
    global _runner
    from lrsearch.supervision import write_state

    backoff = FIRST_BACKOFF
    while not _stopping.is_set():
        started = time.monotonic()
        write_state("running", pid=_runner.pid)
        code = _runner.wait()
        if _stopping.is_set():
            break
        if time.monotonic() - started >= HEALTHY_AFTER:
            backoff = FIRST_BACKOFF
        ended = _how_it_ended(code)
        server.log.warning("runner (pid %s) %s; restarting in %g s", _runner.pid, ended, backoff)
        write_state("restarting", last_error=f"runner {ended}", retry_in=backoff)
        if _stopping.wait(backoff):
            break
        _runner = _start_runner(here)
        server.log.info("runner restarted (pid %s)", _runner.pid)
        backoff = min(2 * backoff, LONGEST_BACKOFF)
    write_state("stopped")


def on_starting(server) -> None:
    """Apply migrations, then start the one runner and its supervisor."""
    global _runner
    here = os.path.dirname(os.path.abspath(__file__))
    subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", "db", "upgrade"], check=True, cwd=here
    )
    _runner = _start_runner(here)
    server.log.info("runner started (pid %s)", _runner.pid)
    threading.Thread(target=_supervise, args=(server, here), name="runner-supervisor",
                     daemon=True).start()  # fmt: skip


def on_exit(server) -> None:
    """Stop the supervisor, then the runner and, through it, its worker pool."""
    from lrsearch.supervision import write_state

    _stopping.set()
    write_state("stopped")
    if _runner is None or _runner.poll() is not None:
        return
    _runner.terminate()
    try:
        _runner.wait(timeout=20)
    except subprocess.TimeoutExpired:
        _runner.kill()
        _runner.wait()
    server.log.info("runner stopped")

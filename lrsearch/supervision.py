"""The server's runner supervisor (started by gunicorn.conf.py in gunicorn's master), and what
it knows, kept in the data folder for the pages and /api/health: running, restarting (with
the last error), or stopped.

The supervisor lives here, not in gunicorn.conf.py: gunicorn's reload (HUP) runs that file
again as a new module, whose globals would know no runner, and the server's stop after a
reload would leave the runner to the signal it gets when the master is gone. This module is
imported once per process, so the one supervisor is found however often the file runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

STATE_FILE = "runner-supervisor.json"


def _data_dir() -> Path:
    """The server's data folder, as config.resolve finds it."""
    from lrsearch import ROOT

    return Path(os.environ.get("LRSEARCH_DATA_DIR") or ROOT / "instance")


def write_state(state: str, data_dir: str | os.PathLike | None = None, **about: object) -> None:
    """Record the supervisor's state (atomically: readers see the old one or the new)."""
    folder = Path(data_dir) if data_dir else _data_dir()
    folder.mkdir(parents=True, exist_ok=True)
    record = {"state": state, "at": time.time(), **about}
    fd, partial = tempfile.mkstemp(dir=folder, prefix=".supervisor.")
    with os.fdopen(fd, "w") as out:
        json.dump(record, out)
    os.replace(partial, folder / STATE_FILE)


def read_state(data_dir: str | os.PathLike) -> dict | None:
    """The supervisor's last state, or None where no server supervises a runner."""
    try:
        return json.loads((Path(data_dir) / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None


# The runner is restarted whenever it exits, with a backoff of 1 s doubling to 30 s (back to
# 1 s after a minute of health).
FIRST_BACKOFF, LONGEST_BACKOFF, HEALTHY_AFTER = 1.0, 30.0, 60.0


class Supervisor:
    """One runner process, restarted whenever it ends until stop(); the one Popen."""

    def __init__(self, command: list[str], cwd: str, log) -> None:
        self.command, self.cwd, self.log = command, cwd, log
        self.stopping = threading.Event()
        self.lock = threading.Lock()  # a stop and a restart, one after the other
        self.runner = self._start()
        log.info("runner started (pid %s)", self.runner.pid)
        self.thread = threading.Thread(target=self._supervise, name="runner-supervisor",
                                       daemon=True)  # fmt: skip
        self.thread.start()

    def _start(self) -> subprocess.Popen:
        return subprocess.Popen(self.command, cwd=self.cwd, preexec_fn=_die_with_parent)

    def _supervise(self) -> None:
        backoff = FIRST_BACKOFF
        while not self.stopping.is_set():
            started = time.monotonic()
            write_state("running", pid=self.runner.pid)
            code = self.runner.wait()
            if self.stopping.is_set():
                break
            if time.monotonic() - started >= HEALTHY_AFTER:
                backoff = FIRST_BACKOFF
            ended = how_it_ended(code)
            self.log.warning("runner (pid %s) %s; restarting in %g s", self.runner.pid, ended,
                             backoff)  # fmt: skip
            write_state("restarting", last_error=f"runner {ended}", retry_in=backoff)
            if self.stopping.wait(backoff):
                break
            with self.lock:
                if self.stopping.is_set():
                    break
                self.runner = self._start()
            self.log.info("runner restarted (pid %s)", self.runner.pid)
            backoff = min(2 * backoff, LONGEST_BACKOFF)

    def stop(self, timeout: float = 20) -> None:
        """Stop supervising, then the runner (and, through it, its workers)."""
        with self.lock:
            self.stopping.set()
            runner = self.runner
        if runner.poll() is None:
            runner.terminate()
            try:
                runner.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                runner.kill()
                runner.wait()
            self.log.info("runner stopped")
        self.thread.join(timeout=5)
        write_state("stopped")


_supervisor: Supervisor | None = None


def start(command: list[str], cwd: str, log) -> Supervisor:
    """Start the process's one supervised runner (a second call finds the first)."""
    global _supervisor
    if _supervisor is None:
        _supervisor = Supervisor(command, cwd, log)
    return _supervisor


def stop() -> None:
    """Stop the process's supervised runner, if any."""
    if _supervisor is not None:
        _supervisor.stop()


def how_it_ended(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


def _die_with_parent() -> None:
    """In the runner's child: SIGTERM when the process that started it ends, however it ends
    (PR_SET_PDEATHSIG; a restarted runner's is the supervisor's thread, which lives as long
    as the master)."""
    import ctypes

    ctypes.CDLL(None).prctl(1, signal.SIGTERM)

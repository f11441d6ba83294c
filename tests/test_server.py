"""The real server: gunicorn's web workers and exactly one runner, started and stopped together."""

from __future__ import annotations

import os
import signal
import time

import pytest

from lrsearch.testing import request, server
from tests.faults import children_of, pid_alive

SMALL = {"dataset": "digits", "layers": [64, 32, 10], "trials": 2, "epochs": 3, "workers": 1}
# Trials of about 3 s (0.1 s an epoch here): the server is killed while they run. With
# 64-512-10 a whole search took about a second on a fast VM, and could end before the kill.
LONG = {
    "dataset": "digits",
    "layers": [64, 1024, 1024, 10],
    "trials": 4,
    "epochs": 30,
    "workers": 2,
}


def cmdlines(pids: list[int]) -> dict[int, str]:
    found = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                found[pid] = f.read().replace(b"\0", b" ").decode()
        except FileNotFoundError:
            pass
    return found


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_four_web_workers_one_runner_and_nothing_left_behind(tmp_path):
    with server(str(tmp_path), web_workers=4, workers=2) as (host, port, master):
        family = children_of(master.pid)
        runners = [p for p, c in cmdlines(family).items() if "lrsearch runner" in c]
        web = [p for p, c in cmdlines(children_of(master.pid)).items() if "gunicorn" in c]
        assert len(runners) == 1 and len(web) >= 4
        ids = [request(host, port, "POST", "/api/searches", SMALL)[1]["id"] for _ in range(6)]

        def all_done():
            states = [
                request(host, port, "GET", f"/api/searches/{i}")[1]["search"]["status"] for i in ids
            ]
            return all(s == "completed" for s in states)

        wait_until(all_done, 120, "every search to complete")
        family = children_of(master.pid)
    assert master.returncode == 0
    left = [p for p in family if pid_alive(p)]
    wait_until(lambda: not any(pid_alive(p) for p in family), 5, f"{cmdlines(left)} to end")


@pytest.mark.slow
def test_a_killed_server_leaves_no_orphans_and_its_search_goes_on_after_restart(tmp_path):
    with server(str(tmp_path), web_workers=2, workers=2, LRSEARCH_STALE_AFTER_SECONDS="3") as (
        host,
        port,
        master,
    ):
        sid = request(host, port, "POST", "/api/searches", LONG)[1]["id"]

        def epochs_done():
            return request(host, port, "GET", f"/api/searches/{sid}")[1]["search"]["epochs_done"]

        wait_until(lambda: epochs_done() >= 6, 60, "some epochs")
        family = children_of(master.pid)
        assert len(family) >= 2 + 1 + 2  # web workers, the runner, its worker processes
        os.kill(master.pid, signal.SIGKILL)
        master.wait()
        wait_until(lambda: not any(pid_alive(p) for p in family), 40, "no orphan process")
    with server(str(tmp_path), web_workers=2, workers=2) as (host, port, master):
        before = request(host, port, "GET", f"/api/searches/{sid}/epochs")[1]["last_id"]
        assert before >= 6

        def finished():
            detail = request(host, port, "GET", f"/api/searches/{sid}")[1]
            return detail if detail["search"]["status"] == "completed" else None

        detail = wait_until(finished, 180, "the search to complete after the restart")
    assert all(t["status"] == "completed" for t in detail["trials"])
    assert any(t["attempt"] == 2 for t in detail["trials"])

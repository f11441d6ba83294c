"""Outages (issue 22, in part): the web app answers 503 with Retry-After while the database
is out of reach, /api/health says what is up, and the server's runner is supervised."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request

import pytest

from lrsearch import create_app, testing
from lrsearch.extensions import db
from lrsearch.models import COMPLETED, Search
from lrsearch.search.sampler import create_search
from lrsearch.settings import SearchSpec
from tests.faults import RunnerThread, children_of, pid_alive, wait_for

NOWHERE = "postgresql+psycopg://postgres@127.0.0.1:1/nothing"  # a port nothing listens on


def test_a_database_out_of_reach_is_a_503_with_retry_after_never_a_500(tmp_path):
    app = create_app({"DATA_DIR": str(tmp_path), "SECRET_KEY": "x", "DATABASE_URL": NOWHERE})
    client = app.test_client()
    for url in ("/api/searches", "/api/searches/1", "/api/searches/1/poll"):
        answer = client.get(url)
        assert answer.status_code == 503 and answer.get_json() == {"reason": "database unavailable"}
        assert answer.headers["Retry-After"] == "5"
    page = client.get("/")
    assert page.status_code == 503 and page.mimetype == "text/html"
    assert "database unavailable" in page.get_data(as_text=True)
    health = client.get("/api/health")
    assert health.status_code == 503 and health.get_json()["database"] == "unavailable"


def test_health_is_200_only_with_the_database_and_a_runner_up(app, client):
    answer = client.get("/api/health")
    assert answer.status_code == 503
    assert answer.get_json()["database"] == "ok" and answer.get_json()["runner"] == "not running"
    with RunnerThread(app, workers=1):
        wait_for(lambda: client.get("/api/health").status_code == 200, 30)
        assert client.get("/api/health").get_json()["runner"] == "running"


def get_json(base: str, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(base + path, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


@pytest.mark.slow
def test_the_servers_runner_killed_comes_back_within_5_s_and_the_search_completes(tmp_path):
    env = {"LRSEARCH_HEARTBEAT_SECONDS": "0.5", "LRSEARCH_STALE_AFTER_SECONDS": "3"}
    with testing.server(str(tmp_path), web_workers=1, workers=1, **env) as (host, port, _):
        base = f"http://{host}:{port}"
        deadline = time.monotonic() + 60
        while get_json(base, "/api/health")[0] != 200:
            assert time.monotonic() < deadline, "no healthy runner"
            time.sleep(0.2)
        [first] = get_json(base, "/api/runners")[1]["runners"]
        pid = int(first["name"].split("/")[0].rsplit(":", 1)[1])
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        while True:
            names = [r["name"] for r in get_json(base, "/api/runners")[1]["runners"]]
            if names and names != [first["name"]]:
                break
            assert time.monotonic() - killed < 5, "the runner did not come back within 5 s"
            time.sleep(0.1)
        app = create_app({"DATA_DIR": str(tmp_path), "SECRET_KEY": "x"})
        with app.app_context():
            search = create_search(db.session, SearchSpec(trials=2, epochs=2, hidden=[8]))
            wait_for(lambda: db.session.get(Search, search.id).status == COMPLETED, 60)
            db.session.remove()
        state = json.loads((tmp_path / "runner-supervisor.json").read_text())
        assert state["state"] == "running"


def processes(master: int) -> tuple[list[int], list[int]]:
    """(runner processes, gunicorn web workers) among the master's children."""
    runners, web = [], []
    for pid in children_of(master):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                line = f.read().replace(b"\0", b" ").decode()
        except FileNotFoundError:
            continue
        if "lrsearch runner" in line:
            runners.append(pid)
        elif "gunicorn" in line:
            web.append(pid)
    return runners, web


def healthy(base: str) -> bool:
    return get_json(base, "/api/health")[0] == 200


def one_runner_throughout(master: int, seconds: float, until=None) -> int:
    """Sample the master's children every 50 ms for `seconds` (or until `until()` holds);
    each time exactly one runner must run (none while the supervisor restarts it); return
    the last one's pid."""
    deadline, last = time.monotonic() + seconds, None
    while time.monotonic() < deadline:
        runners, _ = processes(master)
        assert len(runners) <= 1, f"two runners at once: {runners}"
        last = runners[0] if runners else last
        if until is not None and until():
            return last
        time.sleep(0.05)
    assert until is None, "timed out"
    return last


@pytest.mark.slow
def test_reload_and_web_worker_restarts_keep_the_one_supervised_runner(tmp_path):
    env = {"LRSEARCH_HEARTBEAT_SECONDS": "0.5"}
    with (
        (tmp_path / "server.log").open("w") as log,
        testing.server(str(tmp_path), web_workers=2, workers=1, log=log, **env) as (
            host,
            port,
            master,
        ),
    ):
        base = f"http://{host}:{port}"
        one_runner_throughout(master.pid, 60, until=lambda: healthy(base))
        [runner], web = processes(master.pid)
        # gunicorn's reload: new web workers with the configuration read again, same runner
        os.kill(master.pid, signal.SIGHUP)
        replaced = lambda: (w := processes(master.pid)[1]) and not set(w) & set(web)  # noqa: E731
        assert one_runner_throughout(master.pid, 30, until=replaced) == runner
        # a web worker killed: gunicorn starts another, the runner is left alone
        [worker, *_] = processes(master.pid)[1]
        os.kill(worker, signal.SIGKILL)
        again = lambda: len(w := processes(master.pid)[1]) == 2 and worker not in w  # noqa: E731
        assert one_runner_throughout(master.pid, 30, until=again) == runner
        assert one_runner_throughout(master.pid, 2) == runner
        # after the reload the supervisor still restarts a runner that died
        os.kill(runner, signal.SIGKILL)
        back = lambda: processes(master.pid)[0] not in ([], [runner])  # noqa: E731
        one_runner_throughout(master.pid, 5, until=back)
        one_runner_throughout(master.pid, 30, until=lambda: healthy(base))
        family = children_of(master.pid)
    # and the server's stop, after the reload, still stops the runner (not only the signal a
    # runner gets when the master is gone) and its workers
    assert master.returncode == 0
    assert "runner stopped" in (tmp_path / "server.log").read_text()
    deadline = time.monotonic() + 10
    while any(pid_alive(p) for p in family):
        assert time.monotonic() < deadline, "a process of the server outlived it"
        time.sleep(0.1)
    assert json.loads((tmp_path / "runner-supervisor.json").read_text())["state"] == "stopped"

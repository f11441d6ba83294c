"""Which executor a runner gets, what it reports of itself, and that the embedded default
stays free of Dask."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import lrsearch
from lrsearch.execution.executors import ExecutorError, runner_slots
from lrsearch.extensions import db
from lrsearch.models import COMPLETED, RunnerRecord, Search
from lrsearch.search.sampler import create_search
from lrsearch.settings import SearchSpec
from tests.faults import RunnerThread, trials, wait_for

ROOT = Path(__file__).resolve().parent.parent


def test_the_package_says_the_version_pyproject_says():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert lrsearch.__version__ == project["version"]


def test_the_embedded_default_imports_no_dask():
    """A local runner's whole set-up, and the app, with Dask installed: not imported."""
    code = (
        "import sys, tempfile; from lrsearch import create_app; "
        "app = create_app({'DATA_DIR': tempfile.mkdtemp(), 'SECRET_KEY': 'x'}); "
        "import lrsearch.cli, lrsearch.search.runner; "
        "from lrsearch.execution.executors import runner_slots; "
        "slots = runner_slots(app.config, 1); slots.shutdown(); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'dask', 'distributed'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_an_unreachable_scheduler_is_one_line_for_the_cli(app):
    config = {**app.config, "DATABASE_URL": "postgresql+psycopg://x@127.0.0.1:1/x"}
    with pytest.raises(ExecutorError, match=r"^Dask scheduler tcp://127\.0\.0\.1:1 unreachable"):
        runner_slots(config, 1, "tcp://127.0.0.1:1")


def test_a_runner_reports_itself_and_every_page_says_so(app, client):
    search = create_search(db.session, SearchSpec(trials=2, epochs=2, workers=2, hidden=[8]))
    page = client.get("/").get_data(as_text=True)
    assert 'id="no-runner"' in page and "flask --app app lrsearch runner" in page
    assert client.get("/api/runners").get_json() == {"runners": [], "supervisor": None}
    with RunnerThread(app, workers=2) as thread:
        wait_for(lambda: db.session.get(Search, search.id).status == COMPLETED, 60)
        [shown] = client.get("/api/runners").get_json()["runners"]
        assert shown["name"] == thread.runner.name and shown["executor"] == "local"
        assert shown["workers"] == 2 and shown["problem"] is None
        page = client.get("/").get_data(as_text=True)
        assert "no-runner" not in page
        assert re.search(rf"Runner {re.escape(thread.runner.name)}:\s+local pool, 2 workers", page)
    # stopped cleanly: forgotten
    assert db.session.query(RunnerRecord).count() == 0
    assert 'id="no-runner"' in client.get("/").get_data(as_text=True)
    # each trial names the process that ran it, on its page and in the API's rows
    for trial in trials(search.id):
        assert re.fullmatch(r"[^:/]+:\d+", trial.worker)
        row = client.get(f"/api/trials/{trial.id}").get_json()
        assert row["worker"] == trial.worker
        assert f'id="fact-worker" title="host:pid of the process that ran it">{trial.worker}<' in (
            client.get(f"/trials/{trial.id}").get_data(as_text=True)
        )

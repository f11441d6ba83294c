"""Searches on a Dask cluster with real parts: a LocalCluster of two worker processes (one
thread each) and the PostgreSQL server, each test on a fresh database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from lrsearch import store
from lrsearch.datasets import cache
from lrsearch.execution.cluster import DaskSlots
from lrsearch.extensions import db
from lrsearch.models import CANCELLED, COMPLETED, READY, Dataset, Epoch, Search, utcnow
from lrsearch.search.sampler import create_search
from lrsearch.settings import SearchSpec
from lrsearch.store import runners
from tests.faults import RunnerThread, trials, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
ROOT = Path(__file__).resolve().parent.parent
distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def worker_data(tmp_path_factory):
    """The workers' own data folder: no disk shared with the runner's."""
    return tmp_path_factory.mktemp("worker-data")


@pytest.fixture(scope="module")
def cluster(worker_data):
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
        env={"LRSEARCH_DATA_DIR": str(worker_data)}, silence_logs=40,
    ) as cluster:  # fmt: skip
        yield cluster


@pytest.fixture
def scheduler(cluster) -> str:
    """The scheduler's address, once both workers are up (a killed one is restarted)."""
    with distributed.Client(cluster.scheduler_address) as client:
        client.wait_for_workers(2, timeout=60)
    return cluster.scheduler_address


@pytest.fixture
def app_config(app_config, postgres_url) -> dict:
    return {**app_config, "DATABASE_URL": postgres_url, "MAX_ATTEMPTS": 2}


def start(spec: SearchSpec) -> int:
    return create_search(db.session, spec).id


def epochs_of(trial_id: int) -> list[tuple[int, int]]:
    rows = db.session.execute(
        select(Epoch.attempt, Epoch.epoch).where(Epoch.trial_id == trial_id)
    ).all()
    return sorted(rows)


def test_a_search_runs_on_both_workers_and_its_logs_land_here(app, scheduler):
    search_id = start(SearchSpec(trials=4, epochs=3, workers=2, seed=1, hidden=[32]))
    slots = DaskSlots(scheduler, app.config["DATA_DIR"])
    logs = Path(app.config["DATA_DIR"]) / "logs"
    with RunnerThread(app, search_id=search_id, slots=slots):
        wait_for(lambda: db.session.get(Search, search_id).status == COMPLETED, 120)
        # the search ends with its last trial's write; the runner then reaps it, logs it
        wait_for(lambda: len(list(logs.rglob("log.txt"))) == 4, 30, "the runner's logs")
    found = trials(search_id)
    assert all(t.status == COMPLETED and t.epochs_done == 3 for t in found)
    pids = {t.worker for t in found}
    assert len(pids) == 2 and all(":" in w and "/runner" not in w for w in pids)
    for t in found:
        assert epochs_of(t.id) == [(1, 1), (1, 2), (1, 3)]
    # The runner's side wrote each log.txt from the database; the plot is drawn when asked.
    written = sorted(logs.rglob("log.txt"))
    assert len(written) == 4 and all(len(p.read_text().splitlines()) == 3 for p in written)


def test_a_worker_killed_mid_trial_costs_an_attempt_and_loses_no_epoch(app, scheduler):
    spec = SearchSpec(dataset="synthetic:20000x64x10", hidden=[256, 256], trials=1, epochs=8,
                      workers=1, seed=2)  # fmt: skip
    search_id = start(spec)
    slots = DaskSlots(scheduler, app.config["DATA_DIR"])
    with RunnerThread(app, search_id=search_id, slots=slots):
        running = wait_for(
            lambda: [t for t in trials(search_id) if t.epochs_done >= 2 and t.attempt == 1],
            120, "two epochs of the first attempt",
        )  # fmt: skip
        killed = running[0].worker
        os.kill(int(killed.rsplit(":", 1)[1]), signal.SIGKILL)
        wait_for(lambda: db.session.get(Search, search_id).status == COMPLETED, 180)
    [trial] = trials(search_id)
    assert trial.status == COMPLETED and trial.attempt == 2 and trial.crashes == 1
    assert trial.worker != killed
    epochs = Counter(epochs_of(trial.id))
    assert all(n == 1 for n in epochs.values())  # each epoch of each attempt once
    assert sorted(e for a, e in epochs if a == 2) == list(range(1, 9))
    first = sorted(e for a, e in epochs if a == 1)
    assert first[:2] == [1, 2] and first == list(range(1, len(first) + 1))  # kept


def test_cancel_stops_running_trials_at_their_next_epoch(app, scheduler):
    spec = SearchSpec(dataset="synthetic:20000x64x10", hidden=[256, 256], trials=4, epochs=50,
                      workers=2, seed=3)  # fmt: skip
    search_id = start(spec)
    slots = DaskSlots(scheduler, app.config["DATA_DIR"])
    with RunnerThread(app, search_id=search_id, slots=slots):
        wait_for(lambda: sum(t.epochs_done > 0 for t in trials(search_id)) == 2, 120)
        store.cancel_search(db.session, search_id)
        wait_for(lambda: db.session.get(Search, search_id).status == CANCELLED, 60)
    found = trials(search_id)
    assert all(t.status == CANCELLED for t in found)
    assert sum(t.epochs_done > 0 for t in found) == 2 and all(t.epochs_done < 50 for t in found)
    assert all(len(epochs_of(t.id)) == t.epochs_done for t in found)  # kept, each once


def test_a_stored_data_set_is_shipped_to_workers_that_share_no_disk(app, scheduler, worker_data):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((600, 12)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    meta = {"classes": 2, "features": 12, "samples": 600}
    sha, size = cache.store_arrays(app.config["DATA_DIR"], "tiny", {"x": x, "y": y}, meta)
    db.session.add(Dataset(name="tiny", kind="npz", status=READY, samples=600, features=12,
                           classes=2, sha256=sha, disk_bytes=size))  # fmt: skip
    db.session.commit()
    search_id = start(SearchSpec(dataset="tiny", layers=[12, 8, 2], trials=2, epochs=20, seed=4,
                                 lr_min=1e-2, lr_max=3e-2))  # fmt: skip
    slots = DaskSlots(scheduler, app.config["DATA_DIR"])
    with RunnerThread(app, search_id=search_id, slots=slots):
        wait_for(lambda: db.session.get(Search, search_id).status == COMPLETED, 120)
    assert cache.stored_sha256(worker_data, "tiny") == sha  # the workers' own copy
    found = [(t.status, t.best_val_acc, t.error) for t in trials(search_id)]
    assert all(s == COMPLETED and acc > 0.9 for s, acc, _ in found), found


def test_a_worker_with_another_lrsearch_is_refused_naming_both_versions(app, scheduler):
    with distributed.Client(scheduler) as client:
        odd = sorted(client.scheduler_info()["workers"])[0]
        client.run(exec, "import lrsearch; lrsearch.__version__ = '0.0.1'", workers=[odd])
        try:
            slots = DaskSlots(scheduler, app.config["DATA_DIR"])
            assert slots.capacity == 1
            problem = slots.describe()["problem"]
            assert odd in problem and "lrsearch 0.0.1" in problem and "lrsearch 0.2.0" in problem
            search_id = start(SearchSpec(trials=3, epochs=2, workers=2, seed=5, hidden=[16]))
            with RunnerThread(app, search_id=search_id, slots=slots):
                wait_for(lambda: db.session.get(Search, search_id).status == COMPLETED, 120)
                [record] = runners.live_runners(db.session, utcnow() - timedelta(minutes=5))
                assert record.executor == "dask" and "0.0.1" in record.problem
            assert len({t.worker for t in trials(search_id)}) == 1
        finally:
            client.run(exec, "import lrsearch; lrsearch.__version__ = '0.2.0'", workers=[odd])


def test_sqlite_with_a_remote_scheduler_is_refused_in_one_line(tmp_path):
    from lrsearch import create_app

    app = create_app({"DATA_DIR": str(tmp_path), "SECRET_KEY": "x"})
    result = app.test_cli_runner().invoke(
        args=["lrsearch", "run", "--dask-scheduler", "tcp://10.0.0.7:8786", "--trials", "1"]
    )
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "SQLite" in result.output and "postgresql+psycopg://" in result.output
    with app.app_context():
        assert db.session.execute(select(func.count()).select_from(Search)).scalar() == 0


def dask_process(tmp_path, *args: str) -> subprocess.Popen:
    """A `dask scheduler` or `dask worker` process, as a deployment starts them."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LRSEARCH_DATA_DIR": str(tmp_path)}
    command = [sys.executable, "-m", f"distributed.cli.dask_{args[0]}", *args[1:]]
    with (tmp_path / f"{args[0]}-{time.monotonic_ns()}.log").open("w") as log:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)


def test_the_scheduler_gone_requeues_running_trials_and_the_runner_reconnects(app, tmp_path):
    """The scheduler killed mid-trial (its workers end with it): queued trials stay queued,
    the running one is re-queued with no attempt counted, the runner's record says why, and
    the search goes on once a scheduler and a worker answer at the address again."""
    from distributed.utils import open_port

    address = f"tcp://127.0.0.1:{open_port()}"
    scheduler = ["scheduler", "--port", address.rsplit(":", 1)[1], "--no-dashboard"]
    worker = ["worker", address, "--nthreads", "1", "--no-dashboard"]
    spec = SearchSpec(dataset="synthetic:20000x64x10", hidden=[256, 256], trials=2, epochs=30,
                      workers=1, seed=6)  # fmt: skip
    search_id = start(spec)
    processes = [dask_process(tmp_path, *scheduler), dask_process(tmp_path, *worker)]
    try:
        slots = DaskSlots(address, app.config["DATA_DIR"], wait_for_scheduler=True)
        with RunnerThread(app, search_id=search_id, slots=slots):
            wait_for(lambda: trials(search_id)[0].epochs_done >= 1, 120, "a first epoch")
            processes[0].kill()
            requeued = wait_for(lambda: trials(search_id)[0].interruptions == 1, 60, "re-queue")
            assert requeued and trials(search_id)[0].crashes == 0
            assert trials(search_id)[1].status == "queued"
            since = utcnow() - timedelta(minutes=5)
            problem = wait_for(lambda: runners.live_runners(db.session, since)[0].problem, 30)
            assert "scheduler" in problem
            processes += [dask_process(tmp_path, *scheduler), dask_process(tmp_path, *worker)]
            wait_for(lambda: db.session.get(Search, search_id).status == COMPLETED, 240)
    finally:
        for process in processes:
            process.kill()
            process.wait()
    found = trials(search_id)
    assert all(t.status == COMPLETED and t.crashes == 0 for t in found)
    assert found[0].attempt == 2 and found[0].interruptions == 1

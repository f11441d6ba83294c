"""Faults, each made real: killed workers and runners, crashing trials, full disks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from lrsearch import ROOT, artifacts, store
from lrsearch.datasets import cache
from lrsearch.extensions import db
from lrsearch.models import CANCELLED, COMPLETED, DIVERGED, FAILED, QUEUED, READY, RUNNING, Epoch
from lrsearch.search.sampler import create_search
from lrsearch.settings import SearchSpec
from lrsearch.store import datasets as records
from tests.faults import (
    RunnerThread,
    children_of,
    pid_alive,
    search_status,
    trials,
    wait_for,
    worker_pid,
)

# A trial long enough to be caught mid-way (a few seconds), short enough for CI.
LONG = {"dataset": "digits", "layers": [64, 512, 10], "epochs": 60, "lr_min": 1e-4, "lr_max": 1e-3}


def started(trial) -> bool:
    """The trial's worker process has recorded itself and finished an epoch."""
    return trial.status == RUNNING and trial.epochs_done >= 1 and "/runner" not in trial.worker


def epoch_rows(search_id: int) -> list[tuple[int, int, int]]:
    ids = [t.id for t in trials(search_id)]
    return db.session.execute(
        select(Epoch.trial_id, Epoch.attempt, Epoch.epoch).where(Epoch.trial_id.in_(ids))
    ).all()


@pytest.mark.slow
def test_a_killed_worker_requeues_its_trial_once_then_fails_it(app):
    search = create_search(db.session, SearchSpec(trials=3, workers=2, **LONG))
    sid = search.id
    with RunnerThread(app, workers=2, search_id=sid):
        victim = wait_for(lambda: next((t for t in trials(sid) if started(t)), None))
        bystander_id = next(t.id for t in trials(sid) if t.id != victim.id and t.index < 2)
        killed_at = time.monotonic()
        os.kill(worker_pid(victim), signal.SIGKILL)
        again = wait_for(
            lambda: next(
                (t for t in trials(sid) if t.id == victim.id and t.attempt == 2 and started(t)),
                None,
            ),
            30,
        )
        assert again.crashes == 1 and "died" in again.error and "-9" in again.error
        os.kill(worker_pid(again), signal.SIGKILL)
        wait_for(lambda: db.session.get(type(victim), victim.id).status == FAILED, 30)
        assert time.monotonic() - killed_at < 30
        wait_for(lambda: search_status(sid) == COMPLETED, 120)
    final = {t.id: t for t in trials(sid)}
    assert final[victim.id].status == FAILED and final[victim.id].crashes == 2
    assert "worker process died" in final[victim.id].error
    bystander = final[bystander_id]
    assert (bystander.status, bystander.attempt, bystander.crashes) == (COMPLETED, 1, 0)
    assert [t.status for t in final.values()].count(COMPLETED) == 2


def runner_process(app, **env) -> subprocess.Popen:
    """`flask lrsearch runner` on the test app's data folder, as the server starts it."""
    environment = {
        **os.environ,
        "LRSEARCH_DATA_DIR": app.config["DATA_DIR"],
        "LRSEARCH_WORKERS": "2",
        "LRSEARCH_HEARTBEAT_SECONDS": "0.5",
        "LRSEARCH_STALE_AFTER_SECONDS": "2",
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "app", "lrsearch", "runner"],
        cwd=ROOT,
        env=environment,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.slow
def test_a_killed_runner_loses_nothing_and_leaves_no_orphans(app):
    search = create_search(db.session, SearchSpec(trials=4, workers=2, **LONG))
    sid = search.id
    runner = runner_process(app)
    try:
        running = wait_for(
            lambda: (
                [t for t in trials(sid) if started(t)]
                if sum(started(t) and t.epochs_done >= 3 for t in trials(sid)) == 2
                else None
            )
        )
        workers = [worker_pid(t) for t in running]
        assert set(children_of(runner.pid)) >= set(workers)
        runner.kill()
        runner.wait()
        wait_for(lambda: not any(pid_alive(p) for p in workers), 5, "workers to die")
        before = set(epoch_rows(sid))
        assert before and all(attempt == 1 for _, attempt, _ in before)
        runner = runner_process(app)
        wait_for(lambda: search_status(sid) == COMPLETED, 180, "the search to complete")
    finally:
        runner.terminate()
        runner.wait(timeout=30)
    after = epoch_rows(sid)
    assert len(after) == len(set(after))  # nothing duplicated
    assert before <= set(after)  # nothing lost: the first attempts' epochs are kept
    final = trials(sid)
    assert all(t.status == COMPLETED for t in final)
    restarted = [t for t in final if t.interruptions]
    assert {t.id for t in restarted} == {t.id for t in running}
    for trial in restarted:
        assert trial.attempt == 2 and trial.interruptions == 1 and trial.crashes == 0
        current = [e for tid, a, e in after if tid == trial.id and a == 2]
        assert sorted(current) == list(range(1, LONG["epochs"] + 1))
    untouched = [t for t in final if not t.interruptions]
    assert all(t.attempt == 1 for t in untouched) and len(untouched) == 2


@pytest.mark.slow
def test_a_stopped_runner_stops_its_workers_and_requeues_their_trials(app):
    search = create_search(db.session, SearchSpec(trials=2, workers=2, **LONG))
    runner = runner_process(app)
    wait_for(lambda: sum(started(t) for t in trials(search.id)) == 2)
    workers = children_of(runner.pid)
    runner.send_signal(signal.SIGTERM)
    assert runner.wait(timeout=20) == 0
    assert workers
    wait_for(lambda: not any(pid_alive(p) for p in workers), 5, "its processes to end")
    assert [t.status for t in trials(search.id)] == [QUEUED, QUEUED]


def corrupt_dataset(data_dir: str, name: str) -> Path:
    """A data set recorded ready whose stored features file is garbage; that file."""
    parts = {"x": np.zeros((20, 784), np.float32), "y": np.arange(20) % 10}
    cache.store_arrays(data_dir, name, parts, {"classes": 10, "labels": list("0123456789")})
    broken = cache.arrays_folder(data_dir, name) / "x.npy"
    broken.write_bytes(b"\x93NUMPY garbage")
    record = records.add_dataset(db.session, name, "npz", READY, "broken on purpose", {})
    record.features, record.classes = 784, 10
    db.session.commit()
    return broken


@pytest.mark.slow
def test_a_trial_that_crashes_every_time_fails_after_the_retry_limit(app, client):
    corrupt_dataset(app.config["DATA_DIR"], "broken")
    search = create_search(
        db.session,
        SearchSpec(dataset="broken", layers=[784, 16, 10], trials=2, epochs=2, workers=2),
    )
    with RunnerThread(app, workers=2, search_id=search.id):
        wait_for(lambda: search_status(search.id) == FAILED, 60)  # no trial completed
    for trial in trials(search.id):
        assert trial.status == FAILED
        assert trial.attempt == trial.crashes == app.config["MAX_ATTEMPTS"]
        assert "x.npy" in trial.error
        page = client.get(f"/trials/{trial.id}")
        assert page.status_code == 200 and b"x.npy" in page.data


@pytest.mark.slow
def test_divergence_ends_the_trial_and_json_stays_strict(app, client):
    search = create_search(
        db.session,
        SearchSpec(trials=2, sampler="grid", lr_min=1e-3, lr_max=10.0, epochs=5, workers=2),
    )
    with RunnerThread(app, workers=2, search_id=search.id):
        wait_for(lambda: search_status(search.id) == COMPLETED, 60)
    good, bad = trials(search.id)
    assert (good.status, bad.status) == (COMPLETED, DIVERGED)
    # Even were its numbers the best, the ranking never picks a diverged trial.
    bad.best_val_acc = 1.0
    db.session.commit()
    for url in (
        f"/api/searches/{search.id}",
        f"/api/searches/{search.id}/epochs",
        f"/api/trials/{bad.id}",
        f"/api/searches/{search.id}/poll",
    ):
        response = client.get(url)
        json.loads(response.data, parse_constant=lambda c, u=url: pytest.fail(f"{c} in {u}"))
    detail = client.get(f"/api/searches/{search.id}").get_json()
    assert detail["best_trial_id"] == good.id
    assert detail["search"]["best"]["id"] == good.id


@pytest.mark.slow
def test_a_full_disk_fails_the_trial_with_a_clear_message_and_keeps_its_epochs(app):
    app.config["MAX_ATTEMPTS"] = 1
    search = create_search(db.session, SearchSpec(trials=1, epochs=3, workers=1))
    trial = trials(search.id)[0]
    folder = artifacts.trial_folder(app.config["DATA_DIR"], search.id, trial.index, trial.lr)
    folder.mkdir(parents=True)
    (folder / "log.txt").symlink_to("/dev/full")  # every write: "No space left on device"
    with RunnerThread(app, workers=1, search_id=search.id):
        wait_for(lambda: search_status(search.id) == FAILED, 60)  # no trial completed
    trial = trials(search.id)[0]
    assert trial.status == FAILED
    assert "No space left on device" in trial.error and "log.txt" in trial.error
    assert db.session.execute(select(func.count()).select_from(Epoch)).scalar_one() == 1


@pytest.mark.slow
def test_an_unwritable_log_folder_fails_every_attempt_with_the_path(app):
    search = create_search(db.session, SearchSpec(trials=1, epochs=3, workers=1))
    trial = trials(search.id)[0]
    blocked = artifacts.trial_folder(app.config["DATA_DIR"], search.id, trial.index, trial.lr)
    blocked.parent.mkdir(parents=True)
    blocked.write_text("a file where the trial's folder should be")
    with RunnerThread(app, workers=1, search_id=search.id):
        wait_for(lambda: search_status(search.id) == FAILED, 60)  # no trial completed
    trial = trials(search.id)[0]
    assert trial.status == FAILED and str(blocked) in trial.error
    assert trial.crashes == app.config["MAX_ATTEMPTS"]


@pytest.mark.slow
def test_cancel_stops_running_trials_at_an_epoch_boundary_and_spares_other_searches(app):
    target = create_search(db.session, SearchSpec(trials=4, workers=1, **LONG))
    other = create_search(db.session, SearchSpec(trials=1, workers=1, epochs=5))
    with RunnerThread(app, workers=2):
        wait_for(lambda: started(trials(target.id)[0]))
        store.cancel_search(db.session, target.id)
        assert [t.status for t in trials(target.id)][1:] == [CANCELLED] * 3
        wait_for(lambda: search_status(target.id) == CANCELLED, 30)
        wait_for(lambda: search_status(other.id) == COMPLETED, 60)
    first = trials(target.id)[0]
    assert first.status == CANCELLED and 1 <= first.epochs_done < LONG["epochs"]
    kept = [e for tid, _, e in epoch_rows(target.id) if tid == first.id]
    assert sorted(kept) == list(range(1, first.epochs_done + 1))

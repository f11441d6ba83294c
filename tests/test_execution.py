"""Execution: the worker processes (their slots, scheduling, Ctrl-C, what the fork server
preloads for them) and a trial run in one (run_trial)."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import event

from lrsearch import store
from lrsearch.extensions import db
from lrsearch.models import COMPLETED
from lrsearch.search.sampler import create_search
from lrsearch.settings import SearchSpec
from tests.faults import (
    prepared_by_the_fork_server,
    raise_an_error_that_cannot_be_rebuilt,
    scheduling_of_this_process,
    trials,
)


def test_workers_run_as_batch_jobs_with_a_long_time_slice():
    """Workers are CPU-bound batch jobs that trade the cores in long turns when oversubscribed."""
    from lrsearch.execution.local import ProcessSlots
    from lrsearch.execution.process import TIME_SLICE_NS

    slots = ProcessSlots(1)
    try:
        worker = slots.submit(scheduling_of_this_process).result(timeout=60)
    finally:
        slots.shutdown()
    assert worker["policy"] == os.SCHED_BATCH
    assert worker["nice"] == os.getpriority(os.PRIO_PROCESS, 0)  # a niced runner stays niced
    release = tuple(int(part) for part in os.uname().release.split(".")[:2])
    if release >= (6, 12):  # the first kernels that take a slice for the fair scheduler
        assert worker["slice_ns"] == TIME_SLICE_NS
    assert scheduling_of_this_process()["policy"] == os.SCHED_OTHER  # the runner itself is not


def test_workers_leave_ctrl_c_to_the_runner():
    """Ctrl-C reaches the whole group; only the runner answers it, no worker prints a trace."""
    from lrsearch.execution.local import ProcessSlots

    slots = ProcessSlots(1)
    try:
        assert slots.submit(signal.getsignal, signal.SIGINT).result(timeout=60) is signal.SIG_IGN
    finally:
        slots.shutdown()
    assert signal.getsignal(signal.SIGINT) is not signal.SIG_IGN  # the runner's own is kept


def test_a_slots_worker_answers_each_call_and_outlives_its_errors():
    """An error raised in the worker, a result it cannot send back and a call that cannot
    be sent each fail their own future only: the same process answers the next call."""
    from lrsearch.execution.local import ProcessSlots

    slots = ProcessSlots(1)
    try:
        first = slots.submit(os.getpid)
        pid = first.result(timeout=60)
        assert slots.done(first) is None and slots.capacity == 1
        raised = slots.submit(int, "not a number")
        assert isinstance(raised.exception(timeout=60), ValueError)
        assert slots.done(raised) is None
        unsendable = slots.submit(threading.Lock)  # a lock cannot be pickled back
        assert "not sent back" in str(unsendable.exception(timeout=60))
        slots.done(unsendable)
        unsent = slots.submit(lambda: 1)  # nor can a local function be sent
        assert unsent.exception(timeout=60) is not None
        slots.done(unsent)
        unreadable = slots.submit(raise_an_error_that_cannot_be_rebuilt)
        assert "reply could not be read" in str(unreadable.exception(timeout=60))
        slots.done(unreadable)
        again = slots.submit(os.getpid)
        assert again.result(timeout=60) == pid and slots.done(again) is None
    finally:
        slots.shutdown()


def test_a_worker_that_died_idle_is_replaced_at_the_next_call():
    """Killed between trials, it fails no call: the slot starts a new process."""
    from lrsearch.execution.local import ProcessSlots

    slots = ProcessSlots(1)
    try:
        slots.start()
        [process] = slots.processes()
        os.kill(process.pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not slots.slots[0].dead and time.monotonic() < deadline:
            time.sleep(0.01)
        assert slots.slots[0].dead  # the reader noticed
        call = slots.submit(os.getpid)
        assert call.result(timeout=60) not in (process.pid, os.getpid())
        assert slots.done(call) is None
    finally:
        slots.shutdown()
    assert not process.is_alive()


@pytest.mark.slow
def test_the_fork_server_preloads_the_workers_modules_from_any_folder(tmp_path):
    """A runner started outside the checkout: its fork server still finds the package."""
    root = Path(__file__).resolve().parent.parent
    script = (
        f"import sys; sys.path.insert(0, {str(root)!r})\n"
        "from lrsearch.execution.local import ProcessSlots\n"
        "from tests.faults import prepared_by_the_fork_server\n"
        "slots = ProcessSlots(1)\n"
        "print(slots.submit(prepared_by_the_fork_server).result(timeout=60))\n"
        "slots.shutdown()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    ready = ast.literal_eval(done.stdout)
    assert ready and all(ready.values()), ready


def test_workers_inherit_from_the_fork_server_what_their_first_trial_needs():
    """A worker's first trial pays no font loading or figure building (0.2 s of CPU), no
    mapper set-up or digits parsing (30-70 ms), no compiling of the trainer's loops; the
    fork server's objects are frozen, so that collections leave their pages shared."""
    from lrsearch.execution.local import ProcessSlots

    slots = ProcessSlots(1)
    try:
        ready = slots.submit(prepared_by_the_fork_server).result(timeout=60)
    finally:
        slots.shutdown()
    assert all(ready.values()), ready


def test_a_worker_holds_one_connection_for_a_whole_trial(app, monkeypatch):
    """Start, every epoch and end on one checkout: no pool round trip or ping per epoch; the
    checkpoints (here after every epoch) on one more, their saver's."""
    from lrsearch.cli import runner_settings
    from lrsearch.execution import worker

    search = create_search(db.session, SearchSpec(trials=1, epochs=4, workers=1))
    [(trial_id, attempt)] = store.claim_trials(db.session, 1, search_id=search.id)
    settings = runner_settings(app)
    engine = worker.worker_engine(settings.database_url)
    checkouts = []

    def count(*_) -> None:
        checkouts.append(threading.current_thread().name.split("-")[0])

    event.listen(engine, "checkout", count)
    try:
        status = worker.run_trial(trial_id, attempt, settings.database_url, settings.data_dir)
    finally:
        event.remove(engine, "checkout", count)
    assert status == COMPLETED and sorted(checkouts) == ["MainThread", "checkpoints"]
    assert trials(search.id)[0].epochs_done == 4


def test_log_txt_holds_each_finished_epoch_while_the_trial_runs(app, monkeypatch):
    """Each line reaches the file as its epoch ends, so a killed worker loses none."""
    from lrsearch import artifacts
    from lrsearch.cli import runner_settings
    from lrsearch.execution import trial_writes, worker

    search = create_search(db.session, SearchSpec(trials=1, epochs=4, workers=1))
    [(trial_id, attempt)] = store.claim_trials(db.session, 1, search_id=search.id)
    trial = trials(search.id)[0]
    log = artifacts.trial_folder(app.config["DATA_DIR"], search.id, trial.index, trial.lr)
    lines_seen = []
    real_write = trial_writes.write_epoch

    def write_epoch(connection, trial_id, attempt, metrics, summary, *rung):
        lines_seen.append(len((log / artifacts.LOG_NAME).read_text().splitlines()))
        return real_write(connection, trial_id, attempt, metrics, summary, *rung)

    monkeypatch.setattr(trial_writes, "write_epoch", write_epoch)
    settings = runner_settings(app)
    assert worker.run_trial(trial_id, attempt, settings.database_url, settings.data_dir) == (
        COMPLETED
    )
    assert lines_seen == [0, 1, 2, 3]  # epoch N's write comes after N-1's line was flushed
    assert len((log / artifacts.LOG_NAME).read_text().splitlines()) == 4

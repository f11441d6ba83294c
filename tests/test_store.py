"""The store: atomic claims, two runners on one database, SQLite and PostgreSQL alike."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event, func, select, update
from sqlalchemy.orm import Session

from lrsearch import create_app
from lrsearch.extensions import db
from lrsearch.models import COMPLETED, Epoch, Trial, utcnow
from lrsearch.search import store
from lrsearch.search.spec import SearchSpec
from tests.faults import (
    RunnerThread,
    prepared_by_the_fork_server,
    raise_an_error_that_cannot_be_rebuilt,
    scheduling_of_this_process,
    search_status,
    trials,
    wait_for,
)


def claim_race(database_url: str, search_id: int, claimers: int = 4) -> list[int]:
    """Several sessions claim from one queue at once; every claimed trial id, in order."""

    def claim(session: Session) -> list[int]:
        return [t for t, _ in store.claim_trials(session, 1, search_id=search_id, worker="t")]

    return take_at_once(database_url, claim, claimers)


def take_plots_race(database_url: str, search_id: int, takers: int = 4) -> list[int]:
    """Several sessions take left-over plots of one search at once; every trial id taken."""
    return take_at_once(database_url, lambda s: store.take_pending_plots(s, 2, search_id), takers)


def take_at_once(database_url: str, take, racers: int) -> list[int]:
    """Sessions in threads call take(session) at once until it returns nothing; all taken."""
    claimed: list[int] = []
    barrier = threading.Barrier(racers)
    engine = create_engine(database_url)

    def racer() -> None:
        with Session(engine) as session:
            barrier.wait()
            while got := take(session):
                claimed.extend(got)

    threads = [threading.Thread(target=racer) for _ in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    engine.dispose()
    return claimed


def test_concurrent_claims_never_take_one_trial_twice(app):
    search = store.create_search(db.session, SearchSpec(trials=40, epochs=1, workers=40))
    claimed = claim_race(app.config["DATABASE_URL"], search.id)
    assert sorted(claimed) == sorted(t.id for t in search.trials)
    assert all(t.attempt == 1 for t in trials(search.id))


def left_over_plots(search_id: int) -> list[int]:
    """Mark every trial of a search completed, its plot left for later; their ids."""
    db.session.execute(
        update(Trial)
        .where(Trial.search_id == search_id)
        .values(status=COMPLETED, epochs_done=1, plot_pending=True)
    )
    db.session.commit()
    return [t.id for t in trials(search_id)]


def test_concurrent_plot_takers_never_take_one_trial_twice(app):
    search = store.create_search(db.session, SearchSpec(trials=30, epochs=1, workers=1))
    other = store.create_search(db.session, SearchSpec(trials=3, epochs=1, workers=1))
    pending = left_over_plots(search.id)
    left_over_plots(other.id)
    taken = take_plots_race(app.config["DATABASE_URL"], search.id)
    assert sorted(taken) == pending  # each once, and none of the other search's
    assert [t.plot_pending for t in trials(other.id)] == [True] * 3


def test_claims_respect_the_search_workers_and_skip_cancelled_searches(app):
    first = store.create_search(db.session, SearchSpec(trials=5, epochs=1, workers=2))
    second = store.create_search(db.session, SearchSpec(trials=5, epochs=1, workers=1))
    cancelled = store.create_search(db.session, SearchSpec(trials=5, epochs=1, workers=5))
    store.cancel_search(db.session, cancelled.id)
    claimed = store.claim_trials(db.session, 10)
    per_search = Counter(db.session.get(type(first.trials[0]), t).search_id for t, _ in claimed)
    assert per_search == {first.id: 2, second.id: 1}
    assert search_status(cancelled.id) == "cancelled"


def test_a_claim_marks_the_trial_and_its_search_running_as_the_pages_poll_them(app):
    """The claim's update bumps updated_at, which the search page's poll asks for, and
    starts the search; it commits on its own connection, leaving the session's alone."""
    search = store.create_search(db.session, SearchSpec(trials=2, epochs=1, workers=1))
    before = utcnow()
    [(trial_id, attempt)] = store.claim_trials(db.session, 5, search_id=search.id, worker="w")
    trial = db.session.get(Trial, trial_id, populate_existing=True)
    assert (trial.status, trial.attempt, trial.worker, trial.epochs_done) == ("running", 1, "w", 0)
    assert before <= trial.started_at == trial.heartbeat_at == trial.updated_at <= utcnow()
    assert search_status(search.id) == "running"
    other = next(t for t in search.trials if t.id != trial_id)
    assert db.session.get(Trial, other.id, populate_existing=True).status == "queued"


@pytest.mark.slow
def test_two_runners_on_one_database_run_each_trial_once(app):
    search = store.create_search(db.session, SearchSpec(trials=8, epochs=5, workers=4))
    with RunnerThread(app, workers=2), RunnerThread(app, workers=2):
        wait_for(lambda: search_status(search.id) == COMPLETED, 120)
    assert all((t.status, t.attempt) == (COMPLETED, 1) for t in trials(search.id))
    rows = db.session.execute(select(Epoch.trial_id, Epoch.epoch)).all()
    assert len(rows) == len(set(rows)) == 8 * 5


@pytest.mark.postgres
@pytest.mark.slow
def test_postgresql_claims_and_two_runners(postgres_url, app_config):
    from flask_migrate import upgrade

    app = create_app({**app_config, "DATABASE_URL": postgres_url, "STALE_AFTER_SECONDS": 60})
    with app.app_context():
        try:
            upgrade(directory=app.config["MIGRATIONS_DIR"])
            race = store.create_search(db.session, SearchSpec(trials=30, epochs=1, workers=30))
            claimed = claim_race(postgres_url, race.id)
            assert sorted(claimed) == sorted(t.id for t in race.trials)
            pending = left_over_plots(race.id)
            assert sorted(take_plots_race(postgres_url, race.id)) == pending
            store.cancel_search(db.session, race.id)  # done with it
            search = store.create_search(db.session, SearchSpec(trials=6, epochs=4, workers=4))
            with RunnerThread(app, workers=2), RunnerThread(app, workers=2):
                wait_for(lambda: search_status(search.id) == COMPLETED, 120)
            assert all((t.status, t.attempt) == (COMPLETED, 1) for t in trials(search.id))
            rows = db.session.execute(
                select(Epoch.trial_id, Epoch.epoch).where(
                    Epoch.trial_id.in_([t.id for t in trials(search.id)])
                )
            ).all()
            assert len(rows) == len(set(rows)) == 6 * 4
        finally:
            db.session.remove()
            db.engine.dispose()  # no connection left for the server to drop


@pytest.mark.postgres
def test_the_last_two_trials_ending_at_once_end_their_search(postgres_url, app_config, monkeypatch):
    """Under READ COMMITTED each of two concurrent finishes saw the other trial still running,
    and neither ended the search: it stayed "running" forever (a flaky two-runner test)."""
    from flask_migrate import upgrade

    app = create_app({**app_config, "DATABASE_URL": postgres_url})
    with app.app_context():
        engine = store.process_engine(postgres_url)
        try:
            upgrade(directory=app.config["MIGRATIONS_DIR"])
            search = store.create_search(db.session, SearchSpec(trials=2, epochs=1, workers=2))
            first, second = store.claim_trials(db.session, 2, search_id=search.id)
            first_settled = threading.Event()
            settle = store._settle

            def settle_then_hold(*args) -> None:
                settle(*args)
                if threading.current_thread() is held:  # keep the transaction open a while
                    first_settled.set()
                    time.sleep(1.0)

            monkeypatch.setattr(store, "_settle", settle_then_hold)

            def finish(trial: tuple[int, int]) -> None:
                with engine.connect() as connection:
                    assert store.finish_trial(connection, *trial, COMPLETED)

            held = threading.Thread(target=finish, args=(first,))
            held.start()
            assert first_settled.wait(30)
            finish(second)  # while the first is settled but not committed
            held.join(30)
            assert search_status(search.id) == COMPLETED
        finally:
            engine.dispose()
            db.session.remove()
            db.engine.dispose()


def test_an_idle_runner_sleeps_between_polls(app):
    """With nothing queued the loop polls every poll_seconds; it never spins."""
    from unittest import mock

    with mock.patch.object(store, "claim_trials", wraps=store.claim_trials) as claims:
        with RunnerThread(app, workers=1):
            time.sleep(1.0)
    assert 2 <= claims.call_count <= 1.0 / 0.2 + 2


def test_workers_run_as_batch_jobs_with_a_long_time_slice():
    """Workers are CPU-bound batch jobs that trade the cores in long turns when oversubscribed."""
    from lrsearch.search.runner import ProcessSlots
    from lrsearch.search.worker import TIME_SLICE_NS

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
    from lrsearch.search.runner import ProcessSlots

    slots = ProcessSlots(1)
    try:
        assert slots.submit(signal.getsignal, signal.SIGINT).result(timeout=60) is signal.SIG_IGN
    finally:
        slots.shutdown()
    assert signal.getsignal(signal.SIGINT) is not signal.SIG_IGN  # the runner's own is kept


def test_a_slots_worker_answers_each_call_and_outlives_its_errors():
    """An error raised in the worker, a result it cannot send back and a call that cannot
    be sent each fail their own future only: the same process answers the next call."""
    from lrsearch.search.runner import ProcessSlots

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
    from lrsearch.search.runner import ProcessSlots

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
        "from lrsearch.search.runner import ProcessSlots\n"
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
    from lrsearch.search.runner import ProcessSlots

    slots = ProcessSlots(1)
    try:
        ready = slots.submit(prepared_by_the_fork_server).result(timeout=60)
    finally:
        slots.shutdown()
    assert all(ready.values()), ready


@pytest.mark.slow
def test_the_runner_takes_any_executor(app):
    """Beyond one machine the runner gets e.g. Dask's executor; any Executor will do."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from lrsearch.cli import runner_settings
    from lrsearch.search.runner import ExecutorSlots, Runner
    from lrsearch.search.worker import init_worker

    search = store.create_search(db.session, SearchSpec(trials=3, epochs=2, workers=3))
    executor = ProcessPoolExecutor(
        2,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=init_worker,
        initargs=(os.getpid(),),
    )
    Runner(runner_settings(app), ExecutorSlots(executor, 2), search.id).run(until_done=True)
    db.session.rollback()  # end the test's read snapshot: the runner wrote on its own engine
    assert search_status(search.id) == COMPLETED
    assert all((t.status, t.attempt) == (COMPLETED, 1) for t in trials(search.id))


def test_an_epoch_write_commits_and_says_when_to_stop(app):
    check_epoch_writes(app)


@pytest.mark.postgres
@pytest.mark.usefixtures("on_postgresql")
def test_an_epoch_write_on_postgresql(app):
    """The same through psycopg: its named parameters and native datetimes."""
    check_epoch_writes(app)


def check_epoch_writes(app) -> None:
    """write_epoch on a worker's connection: committed rows, retries, lost and cancelled."""
    from lrsearch.training import EpochMetrics

    search = store.create_search(db.session, SearchSpec(trials=1, epochs=3, workers=1))
    [(trial_id, attempt)] = store.claim_trials(db.session, 1, search_id=search.id)
    claimed_at = trials(search.id)[0].heartbeat_at
    engine = create_engine(app.config["DATABASE_URL"])
    with engine.connect() as connection:

        def write(epoch: int, attempt: int = attempt) -> str | None:
            metrics = EpochMetrics(epoch, 3, 1.0, 0.5, 1.2, 0.4 + epoch / 10, 0.01)
            summary = {"epochs_done": epoch, "best_val_acc": 0.4 + epoch / 10}
            return store.write_epoch(connection, trial_id, attempt, metrics, summary)

        assert write(1) is None and write(1) is None  # a retried write adds nothing
        assert not connection.in_transaction()  # committed: nothing held between epochs
        assert write(2, attempt=attempt + 1) == "lost"  # not this attempt's trial
        store.cancel_search(db.session, search.id)
        assert write(2) == "cancelled"
    engine.dispose()
    db.session.expire_all()
    rows = db.session.execute(
        select(Epoch.epoch, Epoch.created_at).where(
            Epoch.trial_id == trial_id, Epoch.attempt == attempt
        )
    ).all()
    assert [epoch for epoch, _ in rows] == [1, 2]
    trial = trials(search.id)[0]
    assert (trial.epochs_done, trial.best_val_acc) == (2, pytest.approx(0.6))
    # Times are stored as SQLAlchemy stores them (on SQLite, text compared as text).
    assert claimed_at <= rows[0].created_at <= trial.heartbeat_at == trial.updated_at
    assert db.session.scalar(
        select(func.count()).select_from(Trial).where(Trial.heartbeat_at > claimed_at)
    )


def test_a_trials_start_records_its_worker_and_reads_what_the_worker_needs(app):
    """begin_attempt, on the DBAPI cursor: the worker's name and a heartbeat stored, and the
    trial's and search's settings returned as plain (transient) objects."""
    from sqlalchemy.exc import NoResultFound
    from sqlalchemy.orm import object_session

    spec = SearchSpec(layers=[64, 32, 10], trials=2, epochs=3, batch_size=16, beta1=0.8, seed=7)
    search = store.create_search(db.session, spec)
    [(trial_id, attempt)] = store.claim_trials(db.session, 1, search_id=search.id)
    claimed_at = trials(search.id)[0].started_at
    engine = store.process_engine(app.config["DATABASE_URL"])
    try:
        with engine.connect() as connection:
            trial, read = store.begin_attempt(connection, trial_id, attempt, "host:41")
            assert not connection.in_transaction()  # committed on the cursor
            with pytest.raises(NoResultFound, match="no trial 999"):
                store.begin_attempt(connection, 999, 1, "host:41")
    finally:
        engine.dispose()
    stored = trials(search.id)[0]
    assert (stored.worker, stored.attempt) == ("host:41", attempt)
    assert stored.heartbeat_at >= claimed_at and stored.updated_at >= claimed_at
    assert object_session(trial) is None and object_session(read) is None
    assert (trial.id, trial.attempt, trial.search_id) == (trial_id, attempt, search.id)
    assert (trial.index, trial.lr, trial.seed) == (stored.index, stored.lr, stored.seed)
    needed = ("dataset", "layers", "epochs", "batch_size", "beta1", "beta2", "eps", "seed")
    assert read.id == search.id
    assert {k: read.config()[k] for k in needed} == {k: search.config()[k] for k in needed}
    assert (read.layers, read.batch_size, read.beta1, read.seed) == ([64, 32, 10], 16, 0.8, 7)


def holding_the_write_lock(database_url: str):
    """Another SQLite connection, holding the database's write lock until rolled back."""
    import sqlite3

    from sqlalchemy.engine import make_url

    holder = sqlite3.connect(make_url(database_url).database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    return holder


def test_a_worker_waits_for_another_writers_sqlite_lock_in_short_steps(app, monkeypatch):
    """SQLite's own wait sleeps 1 ms and more; a worker's connection answers at once and
    the store waits 50 µs, then twice as long each time, up to 5 ms, then writes."""
    from types import SimpleNamespace

    from lrsearch.search import worker
    from lrsearch.training import EpochMetrics

    search = store.create_search(db.session, SearchSpec(trials=1, epochs=3, workers=1))
    [(trial_id, attempt)] = store.claim_trials(db.session, 1, search_id=search.id)
    url = app.config["DATABASE_URL"]
    holder = holding_the_write_lock(url)
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 8:
            holder.execute("ROLLBACK")  # the other writer is done
        time.sleep(seconds)

    monkeypatch.setattr(store, "time", SimpleNamespace(sleep=sleep, monotonic=time.monotonic))
    engine = worker.worker_engine(url)
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 0
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            connection.rollback()
            metrics = EpochMetrics(1, 3, 0.5, 0.6, 0.5, 0.6, 0.01)
            assert store.write_epoch(connection, trial_id, attempt, metrics, {}) is None
    finally:
        engine.dispose()
        holder.close()
    assert waits == pytest.approx([50e-6, 100e-6, 200e-6, 400e-6, 800e-6, 1.6e-3, 3.2e-3, 5e-3])
    assert trials(search.id)[0].epochs_done == 1
    with db.engine.connect() as connection:  # the app's own connections still wait 5 s
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000


def test_a_lock_held_too_long_raises_a_locked_error_and_writes_nothing(app, monkeypatch):
    """Past the wait (5 s, as SQLite's busy timeout), the locked error goes to the retries."""
    from sqlalchemy.exc import OperationalError

    search = store.create_search(db.session, SearchSpec(trials=1, epochs=3, workers=1))
    trial_id = search.trials[0].id
    monkeypatch.setattr(store, "LOCK_WAIT_SECONDS", 0.05)
    engine = store.process_engine(app.config["DATABASE_URL"])
    holder = holding_the_write_lock(app.config["DATABASE_URL"])
    fail = update(Trial).where(Trial.id == trial_id).values(error="half-written")
    try:
        with Session(engine) as session:
            started = time.monotonic()
            with pytest.raises(OperationalError, match="database is locked") as raised:
                store.retry_transaction(session, lambda s: s.execute(fail), attempts=1)
            # It gives up when the next wait would end past the deadline.
            assert time.monotonic() - started >= 0.05 - store.LONGEST_LOCK_WAIT
            assert store._is_transient(raised.value)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        engine.dispose()
    assert trials(search.id)[0].error is None


def test_a_failed_driver_transaction_rolls_back_and_raises_sqlalchemys_error(app):
    """A locked database raises OperationalError, as the store's retry expects."""
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from lrsearch.search.prepared import PreparedStatement, run_in_transaction

    search = store.create_search(db.session, SearchSpec(trials=1, epochs=3, workers=1))
    trial_id = search.trials[0].id
    engine = create_engine(app.config["DATABASE_URL"])
    rename = PreparedStatement(
        update(Trial).where(Trial.id == trial_id), engine.dialect, ["error", "updated_at"]
    )

    def steps(execute) -> None:
        execute(rename, {"error": "half-written", "updated_at": search.created_at})
        raise sqlite3.OperationalError("database is locked")

    with engine.connect() as connection:
        with pytest.raises(OperationalError, match="database is locked") as raised:
            run_in_transaction(connection, steps)
        assert store._is_transient(raised.value)
        assert not connection.connection.driver_connection.in_transaction
    engine.dispose()
    db.session.expire_all()
    assert trials(search.id)[0].error is None


def test_a_prepared_statement_asks_for_the_values_of_python_side_defaults(app):
    """SQLAlchemy's execution, which it skips, would have filled created_at itself."""
    from lrsearch.search.prepared import PreparedStatement

    with pytest.raises(ValueError, match=r"no value given for \[.attempt., .created_at.\]"):
        PreparedStatement(Epoch.__table__.insert(), db.engine.dialect, ["trial_id", "epoch"])


def test_a_prepared_statement_refuses_a_list_that_expands_at_each_execution(app):
    """not_in([...]) renders its list when executed; compiled once, the SQL would hold none."""
    from lrsearch.search.prepared import PreparedStatement

    statement = select(Trial.id).where(Trial.status.not_in(["completed", "failed"]))
    with pytest.raises(ValueError, match="expand at each execution"):
        PreparedStatement(statement, db.engine.dialect, [])
    settled = PreparedStatement(store._OPEN_TRIALS, db.engine.dialect, ["search_id"])
    assert settled.parameters({"search_id": 3})[1:] == list(store.TRIAL_FINAL)


def test_a_worker_holds_one_connection_for_a_whole_trial(app, monkeypatch):
    """Start, every epoch and end on one checkout: no pool round trip or ping per epoch."""
    from lrsearch.cli import runner_settings
    from lrsearch.search import worker

    search = store.create_search(db.session, SearchSpec(trials=1, epochs=4, workers=1))
    [(trial_id, attempt)] = store.claim_trials(db.session, 1, search_id=search.id)
    settings = runner_settings(app)
    engine = worker.worker_engine(settings.database_url)
    checkouts = []

    def count(*_) -> None:
        checkouts.append(1)

    event.listen(engine, "checkout", count)
    try:
        status = worker.run_trial(trial_id, attempt, settings.database_url, settings.data_dir)
    finally:
        event.remove(engine, "checkout", count)
    assert status == COMPLETED and len(checkouts) == 1
    assert trials(search.id)[0].epochs_done == 4


def test_log_txt_holds_each_finished_epoch_while_the_trial_runs(app, monkeypatch):
    """Each line reaches the file as its epoch ends, so a killed worker loses none."""
    from lrsearch import artifacts
    from lrsearch.cli import runner_settings
    from lrsearch.search import worker

    search = store.create_search(db.session, SearchSpec(trials=1, epochs=4, workers=1))
    [(trial_id, attempt)] = store.claim_trials(db.session, 1, search_id=search.id)
    trial = trials(search.id)[0]
    log = artifacts.trial_folder(app.config["DATA_DIR"], search.id, trial.index, trial.lr)
    lines_seen = []
    real_write = worker.write_epoch

    def write_epoch(connection, trial_id, attempt, metrics, summary):
        lines_seen.append(len((log / artifacts.LOG_NAME).read_text().splitlines()))
        return real_write(connection, trial_id, attempt, metrics, summary)

    monkeypatch.setattr(worker, "write_epoch", write_epoch)
    settings = runner_settings(app)
    assert worker.run_trial(trial_id, attempt, settings.database_url, settings.data_dir) == (
        COMPLETED
    )
    assert lines_seen == [0, 1, 2, 3]  # epoch N's write comes after N-1's line was flushed
    assert len((log / artifacts.LOG_NAME).read_text().splitlines()) == 4

"""The store: atomic claims and plot takers, epoch writes, a trial's start, lock waits and
prepared statements, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from sqlalchemy import create_engine, func, select, update
from sqlalchemy.orm import Session

from lrsearch import create_app, store
from lrsearch.extensions import db
from lrsearch.models import COMPLETED, TRIAL_FINAL, Epoch, Trial, utcnow
from lrsearch.search.sampler import create_search
from lrsearch.settings import SearchSpec
from lrsearch.store import attempts, settle, transactions
from tests.faults import claim_race, left_over_plots, search_status, take_plots_race, trials


def test_concurrent_claims_never_take_one_trial_twice(app):
    search = create_search(db.session, SearchSpec(trials=40, epochs=1, workers=40))
    claimed = claim_race(app.config["DATABASE_URL"], search.id)
    assert sorted(claimed) == sorted(t.id for t in search.trials)
    assert all(t.attempt == 1 for t in trials(search.id))


def test_concurrent_plot_takers_never_take_one_trial_twice(app):
    search = create_search(db.session, SearchSpec(trials=30, epochs=1, workers=1))
    other = create_search(db.session, SearchSpec(trials=3, epochs=1, workers=1))
    pending = left_over_plots(search.id)
    left_over_plots(other.id)
    taken = take_plots_race(app.config["DATABASE_URL"], search.id)
    assert sorted(taken) == pending  # each once, and none of the other search's
    assert [t.plot_pending for t in trials(other.id)] == [True] * 3


def test_claims_respect_the_search_workers_and_skip_cancelled_searches(app):
    first = create_search(db.session, SearchSpec(trials=5, epochs=1, workers=2))
    second = create_search(db.session, SearchSpec(trials=5, epochs=1, workers=1))
    cancelled = create_search(db.session, SearchSpec(trials=5, epochs=1, workers=5))
    store.cancel_search(db.session, cancelled.id)
    claimed = store.claim_trials(db.session, 10)
    per_search = Counter(db.session.get(type(first.trials[0]), t).search_id for t, _ in claimed)
    assert per_search == {first.id: 2, second.id: 1}
    assert search_status(cancelled.id) == "cancelled"


def test_a_claim_marks_the_trial_and_its_search_running_as_the_pages_poll_them(app):
    """The claim's update bumps updated_at, which the search page's poll asks for, and
    starts the search; it commits on its own connection, leaving the session's alone."""
    search = create_search(db.session, SearchSpec(trials=2, epochs=1, workers=1))
    before = utcnow()
    [(trial_id, attempt)] = store.claim_trials(db.session, 5, search_id=search.id, worker="w")
    trial = db.session.get(Trial, trial_id, populate_existing=True)
    assert (trial.status, trial.attempt, trial.worker, trial.epochs_done) == ("running", 1, "w", 0)
    assert before <= trial.started_at == trial.heartbeat_at == trial.updated_at <= utcnow()
    assert search_status(search.id) == "running"
    other = next(t for t in search.trials if t.id != trial_id)
    assert db.session.get(Trial, other.id, populate_existing=True).status == "queued"


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
            search = create_search(db.session, SearchSpec(trials=2, epochs=1, workers=2))
            first, second = store.claim_trials(db.session, 2, search_id=search.id)
            first_settled = threading.Event()
            real_settle = attempts.settle

            def settle_then_hold(*args) -> None:
                real_settle(*args)
                if threading.current_thread() is held:  # keep the transaction open a while
                    first_settled.set()
                    time.sleep(1.0)

            monkeypatch.setattr(attempts, "settle", settle_then_hold)

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

    search = create_search(db.session, SearchSpec(trials=1, epochs=3, workers=1))
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
    search = create_search(db.session, spec)
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

    from lrsearch.execution import worker
    from lrsearch.training import EpochMetrics

    search = create_search(db.session, SearchSpec(trials=1, epochs=3, workers=1))
    [(trial_id, attempt)] = store.claim_trials(db.session, 1, search_id=search.id)
    url = app.config["DATABASE_URL"]
    holder = holding_the_write_lock(url)
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 8:
            holder.execute("ROLLBACK")  # the other writer is done
        time.sleep(seconds)

    monkeypatch.setattr(
        transactions, "time", SimpleNamespace(sleep=sleep, monotonic=time.monotonic)
    )
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

    search = create_search(db.session, SearchSpec(trials=1, epochs=3, workers=1))
    trial_id = search.trials[0].id
    monkeypatch.setattr(transactions, "LOCK_WAIT_SECONDS", 0.05)
    engine = store.process_engine(app.config["DATABASE_URL"])
    holder = holding_the_write_lock(app.config["DATABASE_URL"])
    fail = update(Trial).where(Trial.id == trial_id).values(error="half-written")
    try:
        with Session(engine) as session:
            started = time.monotonic()
            with pytest.raises(OperationalError, match="database is locked") as raised:
                store.retry_transaction(session, lambda s: s.execute(fail), attempts=1)
            # It gives up when the next wait would end past the deadline.
            assert time.monotonic() - started >= 0.05 - transactions.LONGEST_LOCK_WAIT
            assert transactions._is_transient(raised.value)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        engine.dispose()
    assert trials(search.id)[0].error is None


def test_a_failed_driver_transaction_rolls_back_and_raises_sqlalchemys_error(app):
    """A locked database raises OperationalError, as the store's retry expects."""
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from lrsearch.store.fast import PreparedStatement, run_in_transaction

    search = create_search(db.session, SearchSpec(trials=1, epochs=3, workers=1))
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
        assert transactions._is_transient(raised.value)
        assert not connection.connection.driver_connection.in_transaction
    engine.dispose()
    db.session.expire_all()
    assert trials(search.id)[0].error is None


def test_a_prepared_statement_asks_for_the_values_of_python_side_defaults(app):
    """SQLAlchemy's execution, which it skips, would have filled created_at itself."""
    from lrsearch.store.fast import PreparedStatement

    with pytest.raises(ValueError, match=r"no value given for \[.attempt., .created_at.\]"):
        PreparedStatement(Epoch.__table__.insert(), db.engine.dialect, ["trial_id", "epoch"])


def test_a_prepared_statement_refuses_a_list_that_expands_at_each_execution(app):
    """not_in([...]) renders its list when executed; compiled once, the SQL would hold none."""
    from lrsearch.store.fast import PreparedStatement

    statement = select(Trial.id).where(Trial.status.not_in(["completed", "failed"]))
    with pytest.raises(ValueError, match="expand at each execution"):
        PreparedStatement(statement, db.engine.dialect, [])
    settled = PreparedStatement(settle.OPEN_TRIALS, db.engine.dialect, ["search_id"])
    assert settled.parameters({"search_id": 3})[1:] == list(TRIAL_FINAL)

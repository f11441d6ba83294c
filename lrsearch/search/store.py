"""Every write of the search engine, as short transactions on a SQLAlchemy session.

Used by the web app (Flask-SQLAlchemy's session), the runner and the worker processes
(plain sessions on their own engines, see `process_engine`) alike. What runs for every
trial or epoch takes a Connection instead and runs on its DBAPI cursor: a trial's start,
each epoch's write and its end (`begin_attempt`, `write_epoch`, `finish_trial`), and the
runner's claims.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    Dialect,
    Engine,
    Select,
    bindparam,
    case,
    create_engine,
    event,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import NoResultFound, OperationalError
from sqlalchemy.orm import Session

from lrsearch.models import (
    CANCELLED,
    COMPLETED,
    FAILED,
    QUEUED,
    RUNNING,
    SEARCH_FINAL,
    TRIAL_FINAL,
    Epoch,
    Search,
    Trial,
    utcnow,
)
from lrsearch.search.prepared import PreparedStatement, run_in_transaction
from lrsearch.search.sampler import sample_learning_rates, trial_seed
from lrsearch.search.spec import SearchSpec
from lrsearch.training import EpochMetrics

log = logging.getLogger(__name__)
T = TypeVar("T")


def retry_transaction(
    session: Session | Connection, work: Callable[[Session | Connection], T], attempts: int = 8
) -> T:
    """Run `work` and commit; on a locked or busy database roll back, wait, try again.

    Each attempt first waits out a SQLite lock in short steps (see `_waiting_for_the_lock`).
    """
    for attempt in range(1, attempts + 1):
        try:
            return _waiting_for_the_lock(session, work)
        except OperationalError as exc:
            if attempt == attempts or not _is_transient(exc):
                raise
            log.warning("database busy (%s), retry %d", exc.orig, attempt)
            time.sleep(min(0.05 * 2**attempt, 2.0))
    raise AssertionError("unreachable")


# How the processes of a search wait for another's SQLite write lock: in steps from 50 µs,
# each twice the last, up to 5 ms, for 5 s in all (the busy timeout of other connections).
FIRST_LOCK_WAIT, LONGEST_LOCK_WAIT, LOCK_WAIT_SECONDS = 50e-6, 5e-3, 5.0


def _waiting_for_the_lock(session: Session | Connection, work: Callable) -> T:
    """work(session), committed; while SQLite answers that the database is locked, rolled
    back and run again after a short wait, for up to LOCK_WAIT_SECONDS.

    A connection of `process_engine` answers at once instead of waiting itself (SQLite's own
    waits are of 1 ms and more). A failed COMMIT leaves the transaction open: rolled back.
    """
    deadline, wait = None, FIRST_LOCK_WAIT
    while True:
        try:
            result = work(session)
            session.commit()
            return result
        except OperationalError as exc:
            session.rollback()
            code = getattr(exc.orig, "sqlite_errorcode", None)  # None but from SQLite itself
            if code is None or code & 0xFF != sqlite3.SQLITE_BUSY:
                raise
            now = time.monotonic()
            deadline = deadline or now + LOCK_WAIT_SECONDS
            if now + wait > deadline:
                raise
            time.sleep(wait)
            wait = min(2 * wait, LONGEST_LOCK_WAIT)


def process_engine(database_url: str) -> Engine:
    """The engine of a runner or worker process, built in that process.

    On SQLite its connections do not wait for another's write lock themselves (busy timeout
    0): retry_transaction, through which every statement of these processes runs, waits in
    steps from 50 µs. SQLite's own wait sleeps 1 ms, then 2, 5, 10 ms..., where an epoch's
    write holds the lock for about 0.1 ms: with two digits workers, 3-5 % of the epoch writes
    had slept 1 ms or more (2.2 -> 3.1-3.8 ms of writes a trial).
    """
    engine = create_engine(database_url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        # After the WAL set-up every connection gets (extensions._sqlite_pragmas).
        event.listen(engine, "connect", _answer_at_once_when_locked)
    return engine


def _answer_at_once_when_locked(dbapi_connection, connection_record) -> None:
    dbapi_connection.execute("PRAGMA busy_timeout = 0")


def _retried_on_cursor(connection: Connection, steps: Callable) -> T:
    """steps(execute) in one DBAPI transaction (prepared.run_in_transaction), retried as
    retry_transaction retries a locked or busy database."""
    return retry_transaction(connection, lambda c: run_in_transaction(c, steps))


def _is_transient(exc: OperationalError) -> bool:
    text = str(exc.orig).lower()
    return any(word in text for word in ("locked", "busy", "deadlock", "could not serialize"))


def create_search(session: Session, spec: SearchSpec) -> Search:
    """Store a search and its trials, the rates drawn now from the search's seed."""
    rates = sample_learning_rates(
        spec.lr_min, spec.lr_max, spec.trials, seed=spec.seed, sampler=spec.sampler
    )
    search = Search(
        name=spec.name,
        dataset=spec.dataset,
        lr_min=spec.lr_min,
        lr_max=spec.lr_max,
        sampler=spec.sampler,
        n_trials=spec.trials,
        epochs=spec.epochs,
        batch_size=spec.batch_size,
        beta1=spec.beta1,
        beta2=spec.beta2,
        workers=spec.workers,
        seed=spec.seed,
        status=QUEUED,
    )
    search.layers = spec.layers
    search.trials = [
        Trial(index=i, lr=lr, seed=trial_seed(spec.seed, i), status=QUEUED)
        for i, lr in enumerate(rates)
    ]
    session.add(search)
    session.commit()
    return search


def claim_trials(
    session: Session, limit: int, *, search_id: int | None = None, worker: str = ""
) -> list[tuple[int, int]]:
    """Claim up to `limit` queued trials, each with one atomic update; return (id, attempt).

    It runs on a connection of its own from the session's engine, through the DBAPI cursor
    (see prepared), each claim its own transaction. The runner claims before every trial:
    through the session a claim had cost it 1.5-1.8 ms of CPU (0.7 ms warm, 0.3 ms this way).
    The session is left as it was: its loaded objects are not expired.
    """
    if limit <= 0:
        return []
    with session.get_bind().connect() as connection:
        dialect = connection.dialect
        of_search = {} if search_id is None else {"search_id": search_id}
        candidates = _candidates_statement(dialect, tuple(of_search), limit * 4 + 16)
        rows = _retried_on_cursor(
            connection, lambda execute: execute(candidates, of_search).fetchall()
        )
        claimed: list[tuple[int, int]] = []
        taken: dict[int, int] = {}
        for trial_id, sid, cap, already in rows:
            if len(claimed) == limit:
                break
            if already + taken.get(sid, 0) >= cap:
                continue
            now = utcnow()  # the trial's updated_at too: its onupdate is SQLAlchemy's to run
            values = {"trial_id": trial_id, "now": now, "updated_at": now, "worker": worker}
            claim, start = _claim_statements(dialect, tuple(values))

            def steps(execute, values=values, claim=claim, start=start) -> int | None:
                row = execute(claim, values).fetchone()
                if row is None:  # no longer queued: another runner took it
                    return None
                execute(start, {"search_id": row[1], "now": values["now"]})
                return row[0]

            attempt = _retried_on_cursor(connection, steps)
            if attempt:
                claimed.append((trial_id, attempt))
                taken[sid] = taken.get(sid, 0) + 1
    return claimed


@functools.cache
def _candidates_statement(dialect: Dialect, names: tuple[str, ...], limit: int):
    """The candidates' select compiled for a dialect: of one search if `names` holds its id."""
    return PreparedStatement(_candidates(bool(names), limit), dialect, names)


@functools.cache
def _claim_statements(dialect: Dialect, names: tuple[str, ...]) -> tuple:
    """(claim, start its search) compiled for a dialect, the first for the values' names."""
    start = PreparedStatement(_START_SEARCH, dialect, ("search_id", "now"))
    return PreparedStatement(_CLAIM, dialect, names), start


# The runner's statements, built once (building them cost more than running them).
_running_counts = (
    select(Trial.search_id, func.count().label("n"))
    .where(Trial.status == RUNNING)
    .group_by(Trial.search_id)
    .subquery()
)
# Queued trials of searches not being cancelled, with each search's cap and running count.
_CANDIDATES = (
    select(Trial.id, Trial.search_id, Search.workers, func.coalesce(_running_counts.c.n, 0))
    .join(Search, Search.id == Trial.search_id)
    .outerjoin(_running_counts, _running_counts.c.search_id == Trial.search_id)
    .where(Trial.status == QUEUED, Search.cancel_requested.is_(False))
    .order_by(Trial.search_id, Trial.index)
)
_CANDIDATES_OF_SEARCH = _CANDIDATES.where(Trial.search_id == bindparam("search_id"))


@functools.cache
def _candidates(of_search: bool, limit: int) -> Select:
    """One statement object per limit: a new one per claim would be keyed afresh each time."""
    return (_CANDIDATES_OF_SEARCH if of_search else _CANDIDATES).limit(limit)


# Core statements on the tables: the ORM's bookkeeping for an update cost more than the update.
_CLAIM = (
    Trial.__table__.update()
    .where(Trial.__table__.c.id == bindparam("trial_id"), Trial.__table__.c.status == QUEUED)
    .values(
        status=RUNNING,
        attempt=Trial.__table__.c.attempt + 1,
        started_at=bindparam("now"),
        heartbeat_at=bindparam("now"),
        finished_at=None,
        epochs_done=0,
        worker=bindparam("worker"),
    )
    .returning(Trial.__table__.c.attempt, Trial.__table__.c.search_id)
)
_START_SEARCH = (
    Search.__table__.update()
    .where(Search.__table__.c.id == bindparam("search_id"), Search.__table__.c.status == QUEUED)
    .values(status=RUNNING, started_at=bindparam("now"))
)


def begin_attempt(
    connection: Connection, trial_id: int, attempt: int, worker: str
) -> tuple[Trial, Search]:
    """Record which process runs this attempt; return (trial, search) with what the worker
    needs of them, as transient objects.

    It runs on the DBAPI cursor (see prepared), as the epochs' writes do: through the session
    it cost a new worker's first trial 10 ms (the ORM compiling its statements for the new
    engine), and every trial 0.45 ms.
    """
    now = utcnow()
    values = {
        "trial_id_": trial_id,
        "attempt_": attempt,
        "worker_": worker,
        "now": now,
        "updated_at": now,
    }
    begin, run = _begin_statements(connection.dialect, tuple(values))

    def steps(execute) -> tuple | None:
        execute(begin, values)
        return execute(run, {"trial_id": trial_id}).fetchone()

    row = _retried_on_cursor(connection, steps)
    if row is None:
        raise NoResultFound(f"no trial {trial_id}")
    trial_values = dict(zip(_RUN_TRIAL, row[: len(_RUN_TRIAL)], strict=True))
    search_values = dict(zip(_RUN_SEARCH, row[len(_RUN_TRIAL) :], strict=True))
    return Trial(id=trial_id, attempt=attempt, **trial_values), Search(**search_values)


_BEGIN = (
    Trial.__table__.update()
    .where(
        Trial.__table__.c.id == bindparam("trial_id_"),
        Trial.__table__.c.attempt == bindparam("attempt_"),
    )
    .values(worker=bindparam("worker_"), heartbeat_at=bindparam("now"))
)
# What a worker reads of its trial and of the trial's search: the objects' attribute names.
_RUN_TRIAL = ("search_id", "index", "lr", "seed")
_RUN_SEARCH = (
    "id",
    "dataset",
    "layers_json",
    "epochs",
    "batch_size",
    "beta1",
    "beta2",
    "eps",
    "seed",
)
_RUN = (
    select(
        *(getattr(Trial, name) for name in _RUN_TRIAL),
        *(getattr(Search, name) for name in _RUN_SEARCH),
    )
    .join(Search, Search.id == Trial.search_id)
    .where(Trial.id == bindparam("trial_id"))
)


@functools.cache
def _begin_statements(dialect: Dialect, names: tuple[str, ...]) -> tuple:
    """(begin, read the run) compiled for a dialect, the first for the values' names."""
    return PreparedStatement(_BEGIN, dialect, names), PreparedStatement(_RUN, dialect, ["trial_id"])


# The per-epoch statements: Core on the tables, compiled once per dialect (see prepared).
_epoch, _trial, _search = Epoch.__table__, Trial.__table__, Search.__table__
_EPOCH_EXISTS = select(_epoch.c.id).where(
    _epoch.c.trial_id == bindparam("trial_id"),
    _epoch.c.attempt == bindparam("attempt"),
    _epoch.c.epoch == bindparam("epoch"),
)
# Where the database can, one statement inserts unless (trial, attempt, epoch) exists.
_INSERT_EPOCH_ONCE = {
    "sqlite": sqlite.insert(_epoch).on_conflict_do_nothing(),
    "postgresql": postgresql.insert(_epoch).on_conflict_do_nothing(),
}
# The trial's row while this attempt runs it (the epoch writes and the end of the attempt).
_RUNNING_ATTEMPT = (
    _trial.c.id == bindparam("trial_id_"),
    _trial.c.attempt == bindparam("attempt_"),
    _trial.c.status == RUNNING,
)
# The trial's summary, and in the same round trip whether its search is being cancelled.
_UPDATE_RUNNING_TRIAL = (
    _trial.update()
    .where(*_RUNNING_ATTEMPT)
    .returning(
        select(_search.c.cancel_requested)
        .where(_search.c.id == _trial.c.search_id)
        .scalar_subquery()
    )
)


@functools.cache
def _epoch_statements(dialect: Dialect, row: tuple[str, ...], trial: tuple[str, ...]) -> tuple:
    """(insert once, exists, insert, update trial) for a dialect, compiled for the names of
    an epoch's row and of the trial's values (its summary's keys among them).

    Where the dialect has no insert-once, the first is None; else the two after it are.
    """
    update_trial = PreparedStatement(_UPDATE_RUNNING_TRIAL, dialect, trial)
    once = _INSERT_EPOCH_ONCE.get(dialect.name)
    if once is not None:
        return PreparedStatement(once, dialect, row), None, None, update_trial
    exists = PreparedStatement(_EPOCH_EXISTS, dialect, ("trial_id", "attempt", "epoch"))
    return None, exists, PreparedStatement(_epoch.insert(), dialect, row), update_trial


def write_epoch(
    connection: Connection,
    trial_id: int,
    attempt: int,
    metrics: EpochMetrics,
    summary: dict[str, float | int | None],
) -> str | None:
    """Store one finished epoch and the trial's running summary; idempotent on retry.

    Returns None to go on, or why the trial must stop: "cancelled" or "lost" (the
    trial is no longer this attempt's, e.g. it was re-queued after a stale heartbeat).
    It commits on the connection, which must have no transaction open, through the DBAPI
    cursor (see prepared): about 0.5 ms of CPU in a trial, against 1.1 ms through the
    Connection's own execute.
    """
    now = utcnow()
    row = {
        "trial_id": trial_id,
        "attempt": attempt,
        "epoch": metrics.epoch,
        "loss": metrics.loss,
        "acc_train": metrics.acc_train,
        "val_loss": metrics.val_loss,
        "acc_val": metrics.acc_val,
        "seconds": metrics.seconds,
        "created_at": now,
    }
    trial_values = {
        "trial_id_": trial_id,
        "attempt_": attempt,
        "heartbeat_at": now,
        "updated_at": now,
        "epochs_done": metrics.epoch,
        **summary,
    }
    insert_once, exists, insert, update_trial = _epoch_statements(
        connection.dialect, tuple(row), tuple(trial_values)
    )

    def steps(execute) -> str | None:
        if insert_once is not None:
            execute(insert_once, row)
        elif execute(exists, row).fetchone() is None:
            execute(insert, row)
        updated = execute(update_trial, trial_values).fetchone()
        if updated is None:
            return "lost"
        return CANCELLED if updated[0] else None

    return _retried_on_cursor(connection, steps)


def finish_trial(
    connection: Connection,
    trial_id: int,
    attempt: int,
    status: str,
    error: str | None = None,
    plot_pending: bool = False,
) -> bool:
    """End a running attempt in `status`; False if the trial was not this attempt's.

    On the DBAPI cursor (see prepared), as the trial's start and its epochs' writes: through
    the session it cost 0.55 ms a trial, and 2-3 ms more in a new worker's first.
    """
    now = utcnow()
    values = {
        "trial_id_": trial_id,
        "attempt_": attempt,
        "status_": status,
        "now": now,
        "updated_at": now,
        "error_": error,
        "plot_pending_": plot_pending,
    }
    finish, search_of_trial, settle = _finish_statements(connection.dialect, tuple(values))

    def steps(execute) -> bool:
        ended = execute(finish, values).fetchone()
        if ended is None:  # not this attempt's: its search may still need settling
            search_id = execute(search_of_trial, {"trial_id": trial_id}).fetchone()[0]
        else:
            search_id = ended[0]
        _settle(execute, settle, search_id)
        return ended is not None

    return _retried_on_cursor(connection, steps)


_FINISH = (
    _trial.update()
    .where(*_RUNNING_ATTEMPT)
    .values(
        status=bindparam("status_"),
        finished_at=bindparam("now"),
        heartbeat_at=bindparam("now"),
        error=bindparam("error_"),
        plot_pending=bindparam("plot_pending_"),
    )
    .returning(_trial.c.search_id)
)
_SEARCH_OF_TRIAL = select(_trial.c.search_id).where(_trial.c.id == bindparam("trial_id"))


@functools.cache
def _finish_statements(dialect: Dialect, names: tuple[str, ...]) -> tuple:
    """(finish, search of the trial, the settling statements) compiled for a dialect, the
    first for the values' names."""
    settle = (
        PreparedStatement(_LOCK_SEARCH, dialect, ["search_id"]),
        PreparedStatement(_OPEN_TRIALS, dialect, ["search_id"]),
        PreparedStatement(_SETTLE, dialect, ["search_id", "now"]),
    )
    finish = PreparedStatement(_FINISH, dialect, names)
    return finish, PreparedStatement(_SEARCH_OF_TRIAL, dialect, ["trial_id"]), settle


def take_pending_plots(session: Session, limit: int, search_id: int | None = None) -> list[int]:
    """Take up to `limit` trials (of one search, or any) whose plot was left for later.

    Each is taken once: of two runners taking at once, each gets only the trials whose flag
    it cleared itself.
    """
    query = select(Trial.id).where(Trial.plot_pending.is_(True))
    if search_id is not None:
        query = query.where(Trial.search_id == search_id)
    query = query.order_by(Trial.id).limit(limit)
    ids = retry_transaction(session, lambda s: s.execute(query).scalars().all())
    if not ids:
        return []
    take = (
        update(Trial)
        .where(Trial.id.in_(ids), Trial.plot_pending.is_(True))
        .values(plot_pending=False)
        .returning(Trial.id)
    )
    return sorted(retry_transaction(session, lambda s: s.execute(take).scalars().all()))


def record_crash(
    session: Session, trial_id: int, attempt: int, error: str, max_attempts: int
) -> str:
    """A worker died or raised: re-queue the trial, or fail it past the retry limit."""

    def work(s: Session) -> str:
        trial = s.get(Trial, trial_id, with_for_update=True)
        if trial is None or trial.attempt != attempt or trial.status != RUNNING:
            return trial.status if trial else FAILED
        trial.crashes += 1
        trial.heartbeat_at = trial.finished_at = utcnow()
        if trial.crashes >= max_attempts:
            trial.status = FAILED
            trial.error = f"{error} (attempt {trial.attempt} of {max_attempts})"
        else:
            trial.status = QUEUED
            trial.error = f"attempt {trial.attempt} crashed: {error}; re-queued"
        s.flush()
        _settle_search(s, trial.search_id)
        return trial.status

    return retry_transaction(session, work)


def requeue_interrupted(
    session: Session,
    *,
    older_than: datetime | None = None,
    trial_ids: list[int] | None = None,
    exclude: set[int] = frozenset(),
    max_interruptions: int = 10,
) -> int:
    """Re-queue running trials whose runner is gone (stale heartbeat, or named ones).

    Their epochs stay, tagged with the attempt that wrote them; the next attempt starts
    from scratch and, training being seeded, retraces the same curve.
    """
    query = select(Trial).where(Trial.status == RUNNING)
    if older_than is not None:
        query = query.where(Trial.heartbeat_at < older_than)
    if trial_ids is not None:
        query = query.where(Trial.id.in_(trial_ids))

    def work(s: Session) -> int:
        trials = [t for t in s.execute(query).scalars() if t.id not in exclude]
        for trial in trials:
            trial.interruptions += 1
            trial.finished_at = utcnow()
            if trial.search.cancel_requested:
                trial.status = CANCELLED
            elif trial.interruptions > max_interruptions:
                trial.status = FAILED
                trial.error = f"interrupted {trial.interruptions} times"
            else:
                trial.status = QUEUED
                trial.error = f"attempt {trial.attempt} interrupted (runner stopped); re-queued"
        s.flush()
        for search_id in {t.search_id for t in trials}:
            _settle_search(s, search_id)
        return len(trials)

    return retry_transaction(session, work)


def nothing_left(session: Session, search_id: int | None) -> bool:
    """Whether no trial (of the search, or of any search) is queued or running."""
    query = select(func.count()).select_from(Trial).where(Trial.status.in_((QUEUED, RUNNING)))
    if search_id is not None:
        query = query.where(Trial.search_id == search_id)
    return retry_transaction(session, lambda s: s.execute(query).scalar_one()) == 0


def touch_heartbeats(session: Session, trial_ids: list[int]) -> None:
    """Mark the runner's running trials alive."""
    if trial_ids:
        retry_transaction(
            session,
            lambda s: s.execute(
                update(Trial)
                .where(Trial.id.in_(trial_ids), Trial.status == RUNNING)
                .values(heartbeat_at=utcnow())
            ),
        )


def cancel_search(session: Session, search_id: int) -> None:
    """Cancel queued trials now; running ones stop at their next epoch boundary."""

    def work(s: Session) -> None:
        s.execute(
            update(Search)
            .where(Search.id == search_id, Search.status.not_in(SEARCH_FINAL))
            .values(cancel_requested=True)
        )
        s.execute(
            update(Trial)
            .where(Trial.search_id == search_id, Trial.status == QUEUED)
            .values(status=CANCELLED, finished_at=utcnow())
        )
        _settle_search(s, search_id)

    retry_transaction(session, work)


def _settle_search(session: Session, search_id: int) -> None:
    """End the search when every trial has ended (see `_settle`), in the session's transaction."""
    _settle(session.execute, (_LOCK_SEARCH, _OPEN_TRIALS, _SETTLE), search_id)


def _settle(execute: Callable, statements: tuple, search_id: int) -> None:
    """End the search when every trial has ended: execute(statement, values) runs each of
    (lock the search, count its open trials, end it), Core statements or prepared ones.

    The search's row is locked first: two transactions ending the last two trials would
    otherwise each count the other's trial as still open (READ COMMITTED), and neither
    would end the search. Locked, the second counts after the first has committed.
    """
    lock, open_trials, settle = statements
    execute(lock, {"search_id": search_id})
    if execute(open_trials, {"search_id": search_id}).fetchone()[0]:
        return
    execute(settle, {"search_id": search_id, "now": utcnow()})


def _none_of(column, values) -> ColumnElement[bool]:
    """column NOT IN (values), each value a bound parameter of its own: a prepared statement
    cannot take the list that a plain not_in() expands at each execution."""
    return column.not_in([literal(value) for value in values])


_LOCK_SEARCH = select(_search.c.id).where(_search.c.id == bindparam("search_id")).with_for_update()
_OPEN_TRIALS = (
    select(func.count())
    .select_from(_trial)
    .where(_trial.c.search_id == bindparam("search_id"), _none_of(_trial.c.status, TRIAL_FINAL))
)
# Cancelled if it was being cancelled, else completed; started now if it never started.
_SETTLE = (
    _search.update()
    .where(_search.c.id == bindparam("search_id"), _none_of(_search.c.status, SEARCH_FINAL))
    .values(
        status=case((_search.c.cancel_requested, CANCELLED), else_=COMPLETED),
        finished_at=bindparam("now"),
        started_at=func.coalesce(_search.c.started_at, bindparam("now")),
    )
)


def stale_bound(seconds: float) -> datetime:
    """The heartbeat time before which a running trial counts as abandoned."""
    return utcnow() - timedelta(seconds=seconds)

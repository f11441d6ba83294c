"""A trial's attempt as its worker records it: its start, each epoch, its end.

All on the DBAPI cursor with prepared statements (see fast), on the one connection that
serves the worker's whole trial.
"""

from __future__ import annotations

import functools

from sqlalchemy import Connection, Dialect, bindparam, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import NoResultFound

from lrsearch.models import CANCELLED, PRUNED, RUNNING, Epoch, Search, Trial, utcnow
from lrsearch.scheduling import Rung, goes_on
from lrsearch.settings import STORED_SETTINGS
from lrsearch.store.fast import PreparedStatement
from lrsearch.store.settle import LOCK_SEARCH, STATEMENTS, settle
from lrsearch.store.transactions import retried_on_cursor
from lrsearch.training import EpochMetrics

_epoch, _trial, _search = Epoch.__table__, Trial.__table__, Search.__table__


class AttemptTaken(RuntimeError):
    """The attempt was begun before, by a process that is gone: Dask runs a task again when
    its worker dies. The runner counts it as that attempt's crash (the attempts rule)."""


def begin_attempt(
    connection: Connection,
    trial_id: int,
    attempt: int,
    worker: str,
    claimed_by: str | None = None,
) -> tuple[Trial, Search]:
    """Record which process runs this attempt; return (trial, search) with what the worker
    needs of them, as transient objects.

    claimed_by: the runner that claimed the attempt; given, the attempt begins only if no
    other process began it since (else AttemptTaken).
    It runs on the DBAPI cursor (see fast), as the epochs' writes do: through the session a
    new worker's first trial would also pay the ORM compiling its statements for a new engine.
    """
    now = utcnow()
    values = {
        "trial_id_": trial_id,
        "attempt_": attempt,
        "worker_": worker,
        "now": now,
        "updated_at": now,
    }
    if claimed_by is not None:
        values["claimed_by_"] = claimed_by
    begin, run = _begin_statements(connection.dialect, tuple(values))

    def steps(execute) -> tuple:
        begun = execute(begin, values).rowcount
        return begun, execute(run, {"trial_id": trial_id}).fetchone()

    begun, row = retried_on_cursor(connection, steps)
    if row is None:
        raise NoResultFound(f"no trial {trial_id}")
    if claimed_by is not None and begun == 0:
        raise AttemptTaken(
            f"attempt {attempt} was begun before, by {row[-1] or 'a process'} that is gone"
        )
    trial_values = dict(zip(_RUN_TRIAL, row[: len(_RUN_TRIAL)], strict=True))
    search_values = dict(zip(_RUN_SEARCH_KEYS, row[len(_RUN_TRIAL) : -1], strict=True))
    return Trial(id=trial_id, attempt=attempt, **trial_values), Search(**search_values)


_BEGIN = (
    _trial.update()
    .where(
        _trial.c.id == bindparam("trial_id_"),
        _trial.c.attempt == bindparam("attempt_"),
    )
    .values(worker=bindparam("worker_"), heartbeat_at=bindparam("now"))
)
# What a worker reads of its trial (the object's attribute names), and of the trial's search:
# its id and every setting, by the columns' names (those of the Search's attributes too).
_BEGIN_CLAIMED = _BEGIN.where(_trial.c.worker == bindparam("claimed_by_"))
_RUN_TRIAL = ("search_id", "index", "lr", "seed")
_RUN_SEARCH = (_search.c.id, *(_search.c[s.column] for s in STORED_SETTINGS))
_RUN_SEARCH_KEYS = tuple(Search.__mapper__.get_property_by_column(c).key for c in _RUN_SEARCH)
_RUN = (  # and last, who runs the trial now
    select(*(getattr(Trial, name) for name in _RUN_TRIAL), *_RUN_SEARCH, Trial.worker)
    .join(Search, Search.id == Trial.search_id)
    .where(Trial.id == bindparam("trial_id"))
)


@functools.cache
def _begin_statements(dialect: Dialect, names: tuple[str, ...]) -> tuple:
    """(begin, read the run) compiled for a dialect, the first for the values' names."""
    begin = _BEGIN_CLAIMED if "claimed_by_" in names else _BEGIN
    return PreparedStatement(begin, dialect, names), PreparedStatement(_RUN, dialect, ["trial_id"])


# The per-epoch statements: Core on the tables, compiled once per dialect (see fast).
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
# The trial's summary, and in the same round trip whether it or its search is being
# cancelled.
_UPDATE_RUNNING_TRIAL = (
    _trial.update()
    .where(*_RUNNING_ATTEMPT)
    .returning(
        or_(
            _trial.c.cancel_requested,
            select(_search.c.cancel_requested)
            .where(_search.c.id == _trial.c.search_id)
            .scalar_subquery(),
        )
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
    rung: tuple[int, Rung] | None = None,
    outage_seconds: float | None = None,
) -> str | None:
    """Store one finished epoch and the trial's running summary; idempotent on retry.

    Returns None to go on, or why the trial must stop: "cancelled", "lost" (the trial is
    no longer this attempt's, e.g. it was re-queued after a stale heartbeat) or "pruned".
    rung: (search id, the rung this epoch ends), where the search's scheduler has one: the
    values recorded at the rung are read and the rule applied in this same transaction,
    under the search's lock, so two trials reaching it together see each other.
    It commits on the connection, which must have no transaction open, through the DBAPI
    cursor (see fast). outage_seconds: how long to wait out a lost database (see
    retry_transaction).
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
        if updated[0]:
            return CANCELLED
        if rung is not None and not _goes_on_at(
            execute, connection.dialect, *rung, metrics, summary
        ):
            return PRUNED
        return None

    return retried_on_cursor(connection, steps, outage_seconds)


def _goes_on_at(
    execute, dialect: Dialect, search_id: int, rung: Rung, metrics, summary: dict
) -> bool:
    """Whether the trial goes on past the rung, deciding with every value recorded there."""
    lock, values = _rung_statements(dialect, rung.metric)
    execute(lock, {"search_id": search_id})  # the trials reaching it after wait for this one
    at_rung = {"search_id": search_id, "epoch": rung.epoch, "brackets": rung.brackets,
               "bracket": rung.bracket}  # fmt: skip
    recorded = [row[0] for row in execute(values, at_rung).fetchall()]
    own = {"val_acc": metrics.acc_val, "val_loss": metrics.val_loss}.get(rung.metric)
    if own is None:  # best_val_acc, min_val_loss: the trial's best so far
        own = summary[rung.metric]
    return goes_on(own, recorded, rung.eta, rung.maximise)


# A rung's value of each trial that reached it: the metric at the rung's epoch, or the
# best of it up to there (best_val_acc, min_val_loss: less noisy, kinder to a trial that
# had one bad epoch just at the rung).
_AT_RUNG = {"val_acc": _epoch.c.acc_val, "val_loss": _epoch.c.val_loss}
_UP_TO_RUNG = {
    "best_val_acc": func.max(_epoch.c.acc_val),
    "min_val_loss": func.min(_epoch.c.val_loss),
}


@functools.cache
def _rung_statements(dialect: Dialect, metric: str) -> tuple:
    """(lock the search, the metric's values recorded at a rung of one bracket)."""
    current = (_trial.c.id == _epoch.c.trial_id) & (_trial.c.attempt == _epoch.c.attempt)
    of_bracket = (
        _trial.c.search_id == bindparam("search_id"),
        _trial.c.index % bindparam("brackets") == bindparam("bracket"),
    )
    if metric in _AT_RUNG:
        values = (
            select(_AT_RUNG[metric])
            .select_from(_epoch.join(_trial, current))
            .where(*of_bracket, _epoch.c.epoch == bindparam("epoch"))
        )
    else:  # each trial that reached the rung: its best up to the rung's epoch
        values = (
            select(_UP_TO_RUNG[metric])
            .select_from(_epoch.join(_trial, current))
            .where(*of_bracket, _epoch.c.epoch <= bindparam("epoch"))
            .group_by(_trial.c.id)
            .having(func.max(_epoch.c.epoch) >= bindparam("epoch"))
        )
    names = ("search_id", "epoch", "brackets", "bracket")
    return PreparedStatement(LOCK_SEARCH, dialect, ["search_id"]), PreparedStatement(
        values, dialect, names
    )


def finish_trial(
    connection: Connection,
    trial_id: int,
    attempt: int,
    status: str,
    error: str | None = None,
    plot_pending: bool = False,
) -> bool:
    """End a running attempt in `status`; False if the trial was not this attempt's.

    On the DBAPI cursor (see fast), as the trial's start and its epochs' writes.
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
    finish, search_of_trial, settle_statements = _finish_statements(
        connection.dialect, tuple(values)
    )

    def steps(execute) -> bool:
        ended = execute(finish, values).fetchone()
        if ended is None:  # not this attempt's: its search may still need settling
            search_id = execute(search_of_trial, {"trial_id": trial_id}).fetchone()[0]
        else:
            search_id = ended[0]
        settle(execute, settle_statements, search_id)
        return ended is not None

    return retried_on_cursor(connection, steps)


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
    lock, open_trials, end = STATEMENTS
    settling = (
        PreparedStatement(lock, dialect, ["search_id"]),
        PreparedStatement(open_trials, dialect, ["search_id"]),
        PreparedStatement(end, dialect, ["search_id", "now"]),
    )
    finish = PreparedStatement(_FINISH, dialect, names)
    return finish, PreparedStatement(_SEARCH_OF_TRIAL, dialect, ["trial_id"]), settling

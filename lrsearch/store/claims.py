"""Claims: the runner takes queued trials, each with one atomic update (queued -> running),
so that two runners on one database never run the same trial."""

from __future__ import annotations

import functools

from sqlalchemy import Dialect, bindparam, func, literal, select
from sqlalchemy.orm import Session

from lrsearch.models import QUEUED, RUNNING, Search, Trial, utcnow
from lrsearch.store.fast import PreparedStatement
from lrsearch.store.transactions import retried_on_cursor


def claim_trials(
    session: Session, limit: int, *, search_id: int | None = None, worker: str = ""
) -> list[tuple[int, int]]:
    """Claim up to `limit` queued trials, each with one atomic update; return (id, attempt).

    The searches share the slots: a search's k-th queued trial would be its (running + k)-th
    at once, and trials are taken by that number, least first (ties: the older search). A
    search started beside a big one gets the next free slot; while both have trials queued
    they take turns, each still capped by its `workers`.
    It runs on a connection of its own from the session's engine, through the DBAPI cursor
    (see fast), each claim its own transaction: the runner claims before every trial. The
    session is left as it was: its loaded objects are not expired.
    """
    if limit <= 0:
        return []
    with session.get_bind().connect() as connection:
        dialect = connection.dialect
        of_search = {} if search_id is None else {"search_id": search_id}
        active = _active_statement(dialect, tuple(of_search))

        def candidates(execute) -> list[tuple[int, int, int]]:
            """(turn, search id, trial id) of the first queued trials of each search."""
            found = []
            for sid, cap, running in execute(active, of_search).fetchall():
                wanted = min(limit, cap - running)
                if wanted <= 0:
                    continue
                first = _first_queued_statement(dialect, wanted)
                ids = execute(first, {"search_id": sid}).fetchall()
                found += [(running + k, sid, row[0]) for k, row in enumerate(ids, 1)]
            return sorted(found)

        claimed: list[tuple[int, int]] = []
        for _, _, trial_id in retried_on_cursor(connection, candidates):
            if len(claimed) == limit:
                break
            now = utcnow()  # the trial's updated_at too: its onupdate is SQLAlchemy's to run
            values = {"trial_id": trial_id, "now": now, "updated_at": now, "worker": worker}
            claim, start = _claim_statements(dialect, tuple(values))

            def steps(execute, values=values, claim=claim, start=start) -> int | None:
                row = execute(claim, values).fetchone()
                if row is None:  # no longer queued: another runner took it
                    return None
                execute(start, {"search_id": row[1], "now": values["now"]})
                return row[0]

            attempt = retried_on_cursor(connection, steps)
            if attempt:
                claimed.append((trial_id, attempt))
    return claimed


@functools.cache
def _active_statement(dialect: Dialect, names: tuple[str, ...]):
    """The searches with queued trials (of one search if `names` holds its id), compiled."""
    statement = _ACTIVE.where(Search.id == bindparam("search_id")) if names else _ACTIVE
    return PreparedStatement(statement, dialect, names)


@functools.cache
def _first_queued_statement(dialect: Dialect, n: int):
    """A search's first n queued trials, compiled (one per n: the workers cap bounds it)."""
    return PreparedStatement(_QUEUED_OF_SEARCH.limit(n), dialect, ["search_id"])


@functools.cache
def _claim_statements(dialect: Dialect, names: tuple[str, ...]) -> tuple:
    """(claim, start its search) compiled for a dialect, the first for the values' names."""
    start = PreparedStatement(_START_SEARCH, dialect, ("search_id", "now"))
    return PreparedStatement(_CLAIM, dialect, names), start


# The runner's statements, built once: building them cost more than running them. Each
# reads trial(search_id, status, index), an index of its own.
_RUNNING_OF_SEARCH = (
    select(func.count())
    .where(Trial.search_id == Search.id, Trial.status == RUNNING)
    .scalar_subquery()
)
# Searches not being cancelled that have queued trials: their cap and running count.
_ACTIVE = (
    select(Search.id, Search.workers, _RUNNING_OF_SEARCH)
    .where(
        Search.status.in_([literal(QUEUED), literal(RUNNING)]),  # not expanding: prepared
        Search.cancel_requested.is_(False),
        select(Trial.id).where(Trial.search_id == Search.id, Trial.status == QUEUED).exists(),
    )
    .order_by(Search.id)
)
_QUEUED_OF_SEARCH = (
    select(Trial.id)
    .where(Trial.search_id == bindparam("search_id"), Trial.status == QUEUED)
    .order_by(Trial.index)
)


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

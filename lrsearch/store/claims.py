"""Claims: the runner takes queued trials, each with one atomic update (queued -> running),
so that two runners on one database never run the same trial."""

from __future__ import annotations

import functools

from sqlalchemy import Dialect, Select, bindparam, func, select
from sqlalchemy.orm import Session

from lrsearch.models import QUEUED, RUNNING, Search, Trial, utcnow
from lrsearch.store.fast import PreparedStatement
from lrsearch.store.transactions import retried_on_cursor


def claim_trials(
    session: Session, limit: int, *, search_id: int | None = None, worker: str = ""
) -> list[tuple[int, int]]:
    """Claim up to `limit` queued trials, each with one atomic update; return (id, attempt).

    It runs on a connection of its own from the session's engine, through the DBAPI cursor
    (see fast), each claim its own transaction: the runner claims before every trial. The
    session is left as it was: its loaded objects are not expired.
    """
    if limit <= 0:
        return []
    with session.get_bind().connect() as connection:
        dialect = connection.dialect
        of_search = {} if search_id is None else {"search_id": search_id}
        candidates = _candidates_statement(dialect, tuple(of_search), limit * 4 + 16)
        rows = retried_on_cursor(
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

            attempt = retried_on_cursor(connection, steps)
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


# The runner's statements, built once: building them cost more than running them.
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

"""Ending a search once every trial has ended, inside the transaction that ended the last."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import ColumnElement, bindparam, case, func, literal, select
from sqlalchemy.orm import Session

from lrsearch.models import (
    CANCELLED,
    COMPLETED,
    DIVERGED,
    FAILED,
    PRUNED,
    SEARCH_FINAL,
    TRIAL_FINAL,
    Search,
    Trial,
    utcnow,
)

_trial, _search = Trial.__table__, Search.__table__


def settle_search(session: Session, search_id: int) -> None:
    """End the search when every trial has ended (see `settle`), in the session's transaction."""
    settle(session.execute, STATEMENTS, search_id)


def settle(execute: Callable, statements: tuple, search_id: int) -> None:
    """End the search when every trial has ended: execute(statement, values) runs each of
    (lock the search, count its open trials, end it), Core statements or prepared ones.

    The search's row is locked first: two transactions ending the last two trials would
    otherwise each count the other's trial as still open (READ COMMITTED), and neither
    would end the search. Locked, the second counts after the first has committed.
    """
    lock, open_trials, end = statements
    execute(lock, {"search_id": search_id})
    if execute(open_trials, {"search_id": search_id}).fetchone()[0]:
        return
    execute(end, {"search_id": search_id, "now": utcnow()})


def _none_of(column, values) -> ColumnElement[bool]:
    """column NOT IN (values), each value a bound parameter of its own: a prepared statement
    cannot take the list that a plain not_in() expands at each execution."""
    return column.not_in([literal(value) for value in values])


LOCK_SEARCH = select(_search.c.id).where(_search.c.id == bindparam("search_id")).with_for_update()
OPEN_TRIALS = (
    select(func.count())
    .select_from(_trial)
    .where(_trial.c.search_id == bindparam("search_id"), _none_of(_trial.c.status, TRIAL_FINAL))
)


def _any_trial(*statuses: str):
    """Whether some trial of the search being ended is in one of `statuses`."""
    return (
        select(_trial.c.id)
        .where(
            _trial.c.search_id == _search.c.id, _trial.c.status.in_([literal(s) for s in statuses])
        )
        .exists()
    )


# Cancelled if it was being cancelled; completed if a trial completed (or was pruned: its
# curve is an answer too); failed if none did and some failed or diverged; else (every
# trial cancelled one by one) cancelled. Started now if it never started.
END_SEARCH = (
    _search.update()
    .where(_search.c.id == bindparam("search_id"), _none_of(_search.c.status, SEARCH_FINAL))
    .values(
        status=case(
            (_search.c.cancel_requested, CANCELLED),
            (_any_trial(COMPLETED, PRUNED), COMPLETED),
            (_any_trial(FAILED, DIVERGED), FAILED),
            else_=CANCELLED,
        ),
        finished_at=bindparam("now"),
        started_at=func.coalesce(_search.c.started_at, bindparam("now")),
    )
)
STATEMENTS = (LOCK_SEARCH, OPEN_TRIALS, END_SEARCH)

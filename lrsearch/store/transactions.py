"""Short transactions that survive a busy database, and the engines of runner and workers."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from lrsearch.store.fast import run_in_transaction

log = logging.getLogger(__name__)
T = TypeVar("T")

# How the processes of a search wait for another's SQLite write lock: in steps from 50 µs,
# each twice the last, up to 5 ms, for 5 s in all (the busy timeout of other connections).
FIRST_LOCK_WAIT, LONGEST_LOCK_WAIT, LOCK_WAIT_SECONDS = 50e-6, 5e-3, 5.0


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


def _is_transient(exc: OperationalError) -> bool:
    text = str(exc.orig).lower()
    return any(word in text for word in ("locked", "busy", "deadlock", "could not serialize"))


def retried_on_cursor(connection: Connection, steps: Callable) -> T:
    """steps(execute) in one DBAPI transaction (fast.run_in_transaction), retried as
    retry_transaction retries a locked or busy database."""
    return retry_transaction(connection, lambda c: run_in_transaction(c, steps))


def process_engine(database_url: str) -> Engine:
    """The engine of a runner or worker process, built in that process.

    On SQLite its connections do not wait for another's write lock themselves (busy timeout
    0): retry_transaction, through which every statement of these processes runs, waits in
    shorter steps than SQLite's own wait, which sleeps 1 ms, then 2, 5, 10 ms and longer
    where an epoch's write holds the lock for a fraction of a millisecond.
    """
    engine = create_engine(database_url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        # After the WAL set-up every connection gets (extensions._sqlite_pragmas).
        event.listen(engine, "connect", _answer_at_once_when_locked)
    return engine


def _answer_at_once_when_locked(dbapi_connection, connection_record) -> None:
    dbapi_connection.execute("PRAGMA busy_timeout = 0")

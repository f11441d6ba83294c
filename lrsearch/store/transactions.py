"""Short transactions that survive a busy database, and the engines of runner and workers."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from lrsearch.store.fast import run_in_transaction

log = logging.getLogger(__name__)
T = TypeVar("T")

# How the processes of a search wait for another's SQLite write lock: in steps from 50 µs,
# each twice the last, up to 5 ms, for 5 s in all (the busy timeout of other connections).
FIRST_LOCK_WAIT, LONGEST_LOCK_WAIT, LOCK_WAIT_SECONDS = 50e-6, 5e-3, 5.0


# How long the runner and its workers wait out a database they lost (PostgreSQL stopped or
# restarting, a reset socket, SQLite's file out of reach) before they give up; meanwhile
# they retry with a pause from 0.5 s doubling to 5 s. Set in their environment.
OUTAGE_SECONDS = float(os.environ.get("LRSEARCH_DB_OUTAGE_SECONDS", "300"))
_GONE = ("server closed the connection", "terminating connection", "connection refused",
         "could not connect", "connection to server", "shutting down", "starting up",
         "the database system is", "unable to open database file", "disk i/o error",
         "connection reset", "broken pipe", "ssl syscall", "consuming input failed",
         "connection is closed", "connection is lost", "no connection to the server")  # fmt: skip


def retry_transaction(
    session: Session | Connection,
    work: Callable[[Session | Connection], T],
    attempts: int = 8,
    outage_seconds: float | None = None,
) -> T:
    """Run `work` and commit; on a locked or busy database roll back, wait, try again; on a
    lost database, wait it out for up to `outage_seconds` (OUTAGE_SECONDS where None; 0:
    raise at once), a new connection each try.

    Each attempt first waits out a SQLite lock in short steps (see `_waiting_for_the_lock`).
    The lost connection is dropped before an outage's error is raised: the next call opens
    a new one.
    """
    limit = OUTAGE_SECONDS if outage_seconds is None else outage_seconds
    attempt, outage = 0, None
    while True:
        attempt += 1
        try:
            result = _waiting_for_the_lock(session, work)
            if outage is not None:
                log.warning("database back after %.1f s", time.monotonic() - outage)
            return result
        except (OperationalError, InterfaceError) as exc:
            if is_gone(exc):
                outage = outage if outage is not None else time.monotonic()
                waited = time.monotonic() - outage
                _forget_connection(session)
                if waited >= limit:
                    raise
                if attempt == 1 or waited == 0:
                    log.warning("database unavailable (%s); retrying for up to %.0f s",
                                database_said(exc), limit)  # fmt: skip
                time.sleep(min(0.5 * 2 ** min(attempt - 1, 4), 5.0))
                continue
            if attempt >= attempts or not _is_transient(exc):
                raise
            log.warning("database busy (%s), retry %d", exc.orig, attempt)
            time.sleep(min(0.05 * 2**attempt, 2.0))


def is_gone(exc: Exception) -> bool:
    """Whether an error says the database is out of reach (not what the statement did)."""
    if getattr(exc, "connection_invalidated", False):
        return True
    text = str(getattr(exc, "orig", exc)).lower()
    return any(words in text for words in _GONE)


def database_said(exc: Exception) -> str:
    """What the database said, its first line (psycopg's go on with hints), for a log."""
    return (str(getattr(exc, "orig", exc)).strip().splitlines() or [""])[0]


def _forget_connection(session: Session | Connection) -> None:
    """Drop a lost connection so that the next try opens a new one."""
    try:
        if isinstance(session, Connection):
            if not session.invalidated:
                session.invalidate()
            session.rollback()
        else:
            session.rollback()
            session.get_bind().dispose()  # the pool's other connections are as dead
    except Exception as exc:  # the connection is gone anyway
        log.debug("dropping a lost connection: %s", exc)


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


def retried_on_cursor(
    connection: Connection, steps: Callable, outage_seconds: float | None = None
) -> T:
    """steps(execute) in one DBAPI transaction (fast.run_in_transaction), retried as
    retry_transaction retries a locked, busy or lost database."""
    return retry_transaction(
        connection, lambda c: run_in_transaction(c, steps), outage_seconds=outage_seconds
    )


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
    elif engine.dialect.driver == "psycopg":
        event.listen(engine, "connect", _bytes_sent_as_they_are)
    return engine


def _bytes_sent_as_they_are(dbapi_connection, connection_record) -> None:
    """bytea in binary form, not as hex text twice its size: a 3 MB checkpoint's write took
    13 ms instead of 18 (benchmarks/overhead.py --checkpoints-only)."""
    from psycopg.types.string import BytesBinaryDumper

    dbapi_connection.adapters.register_dumper(bytes, BytesBinaryDumper)


def _answer_at_once_when_locked(dbapi_connection, connection_record) -> None:
    dbapi_connection.execute("PRAGMA busy_timeout = 0")

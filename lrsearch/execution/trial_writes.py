"""A worker's writes of its trial's epochs and checkpoints, which ride out a lost database.

While the database is out of reach (see transactions.is_gone) the worker trains on: each
finished epoch is held in memory and written, in order, once the database is back (an
epoch's write is idempotent), and checkpoints wait until the epochs before them are
written (a resumed attempt carries those over). Checkpoints but the last are written by a
thread of their own while the next epoch trains. Only at the trial's end does the worker
wait for the database, for what is left of OUTAGE_SECONDS since the outage began. Past that
limit, at the end or during training, the error is raised: the runner re-queues the trial
as interrupted (no crash counted: see MAX_ATTEMPTS) and it resumes from its checkpoint.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import InterfaceError, OperationalError

from lrsearch.scheduling import Rung
from lrsearch.store import transactions, write_epoch
from lrsearch.store.checkpoints import save_checkpoint
from lrsearch.training import EpochMetrics

log = logging.getLogger(__name__)


class TrialWrites:
    """One attempt's epochs and checkpoints, written as they come or held through an outage.

    written(metrics) is called for each epoch once it is in the database (its log line).
    """

    def __init__(self, connection: Connection, trial_id: int, attempt: int,
                 written: Callable[[EpochMetrics], None]) -> None:  # fmt: skip
        self.connection, self.trial_id, self.attempt = connection, trial_id, attempt
        self.written = written
        self.held: list[tuple[EpochMetrics, dict, tuple[int, Rung] | None]] = []
        self.last_written = 0  # the last epoch in the database
        # Epochs trained, while the database was out, after one that stopped the trial:
        # never written (the trial would have stopped there had the database been up).
        self.dropped = 0
        self.outage: float | None = None  # when the database was lost, while it is
        self.final: tuple[int, bytes] | None = None  # the last epoch's state, not yet saved
        self.saver: CheckpointSaver | None = None

    def epoch(self, metrics: EpochMetrics, summary: dict, rung: tuple[int, Rung] | None
              ) -> str | None:  # fmt: skip
        """Write a finished epoch, or hold it while the database is out; None to go on, else
        why the trial stops (see write_epoch)."""
        self.held.append((metrics, summary, rung))
        return self._write_held(wait=False)

    def checkpoint(self, epoch: int, state: Callable[[], bytes], last: bool) -> bool:
        """Save the trainer's state after `epoch`, in the background; False where it waits
        (epochs held). The last epoch's is kept for finish(), which saves it after the
        others."""
        if last:
            self.final = (epoch, state())
            return False
        if self.held:
            return False
        if self.saver is None:
            self.saver = CheckpointSaver(self.connection.engine, self.trial_id, self.attempt)
        self.saver.put(epoch, state())
        return True

    def finish(self) -> str | None:
        """Write what is held, and the last epoch's state, waiting out an outage; None, or
        why the trial stopped at a held epoch."""
        reason = self._write_held(wait=True)
        self.close()
        if self.saver is not None and self.saver.error is not None:
            raise self.saver.error
        if self.final is not None and self.final[0] <= self.last_written:
            save_checkpoint(self.connection, self.trial_id, self.attempt, *self.final,
                            outage_seconds=self._patience())  # fmt: skip
        return reason

    def close(self) -> None:
        """Let the background saver write what it was given, and end it."""
        if self.saver is not None:
            self.saver.close()

    def _write_held(self, wait: bool) -> str | None:
        """Write the held epochs in order; at a reason to stop, drop those after it."""
        count, reason = 0, None
        while self.held and reason is None:
            metrics, summary, rung = self.held[0]
            try:
                reason = write_epoch(self.connection, self.trial_id, self.attempt, metrics,
                                     summary, rung, self._patience() if wait else 0.0)  # fmt: skip
            except (OperationalError, InterfaceError) as exc:
                if wait:
                    raise
                self._lost(exc)
                return None
            self.held.pop(0)
            self.last_written, count = metrics.epoch, count + 1
            self.written(metrics)
        if self.outage is not None:
            log.warning("trial %d: database back after %.1f s, %d held epoch(s) written",
                        self.trial_id, time.monotonic() - self.outage, count)  # fmt: skip
            self.outage = None
        if reason is not None and self.held:
            log.info("trial %d %s at epoch %d: %d epoch(s) trained meanwhile dropped",
                     self.trial_id, reason, self.last_written, len(self.held))  # fmt: skip
            self.dropped, self.held = len(self.held), []
        return reason

    def _lost(self, exc: Exception) -> None:
        """Go on training through an outage (the first is logged); raise `exc` if it is no
        outage, or one that has lasted OUTAGE_SECONDS."""
        if not transactions.is_gone(exc):
            raise exc
        now = time.monotonic()
        if self.outage is None:
            self.outage = now
            said = transactions.database_said(exc)
            log.warning("trial %d: database unavailable (%s); training goes on, its epochs "
                        "held until it is back", self.trial_id, said)  # fmt: skip
        elif now - self.outage >= transactions.OUTAGE_SECONDS:
            raise exc

    def _patience(self) -> float:
        """What is left of OUTAGE_SECONDS since the outage began (all of it without one)."""
        if self.outage is None:
            return transactions.OUTAGE_SECONDS
        return max(0.0, transactions.OUTAGE_SECONDS - (time.monotonic() - self.outage))


class CheckpointSaver:
    """A thread that saves the checkpoints given to it, on a connection of its own, while
    training goes on: the training thread pays only for its state's bytes. One waiting to
    be written gives way to a later one; one that meets a lost database is dropped (the
    next follows). Any other error is kept in `error`, and the thread ends."""

    def __init__(self, engine: Engine, trial_id: int, attempt: int) -> None:
        self.engine, self.trial_id, self.attempt = engine, trial_id, attempt
        self.ready = threading.Condition()
        self.next: tuple[int, bytes] | None = None
        self.closing = False
        self.error: Exception | None = None
        self.thread = threading.Thread(target=self._run, name=f"checkpoints-{trial_id}",
                                       daemon=True)  # fmt: skip
        self.thread.start()

    def put(self, epoch: int, data: bytes) -> None:
        if self.error is not None:
            raise self.error
        with self.ready:
            self.next = (epoch, data)
            self.ready.notify()

    def close(self) -> None:
        """Write the one waiting, if any, and end the thread."""
        with self.ready:
            self.closing = True
            self.ready.notify()
        self.thread.join()

    def _run(self) -> None:
        connection = None
        try:
            while True:
                with self.ready:
                    while self.next is None and not self.closing:
                        self.ready.wait()
                    if self.next is None:
                        return
                    (epoch, data), self.next = self.next, None
                try:
                    connection = connection or self.engine.connect()
                    save_checkpoint(connection, self.trial_id, self.attempt, epoch, data,
                                    outage_seconds=0.0)  # fmt: skip
                except (OperationalError, InterfaceError) as exc:
                    if not transactions.is_gone(exc):
                        raise
                    log.info("trial %d: checkpoint of epoch %d dropped, database unavailable",
                             self.trial_id, epoch)  # fmt: skip
        except Exception as exc:
            self.error = exc
        finally:
            if connection is not None:
                connection.close()

"""A worker's writes through a database outage (issue 22): training goes on, the epochs are
held and written in order once the database is back, checkpoints wait for the epochs before
them; past the outage limit the trial is re-queued as interrupted, no attempt counted.
(tests/test_db_outage.py does the same with a real PostgreSQL cluster stopped.)"""

from __future__ import annotations

import dataclasses
import time
import types
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy.exc import OperationalError

from lrsearch.execution import trial_writes
from lrsearch.execution.slots import ExecutorSlots
from lrsearch.extensions import db
from lrsearch.models import CANCELLED, FAILED, PRUNED
from lrsearch.search.sampler import create_search
from lrsearch.settings import SearchSpec
from lrsearch.store import transactions
from lrsearch.training import EpochMetrics
from tests.faults import trials


def gone() -> OperationalError:
    return OperationalError("INSERT INTO epoch", {}, Exception("Connection refused"))


@dataclasses.dataclass
class Database:
    """Stands in for write_epoch and save_checkpoint: up or down, what reached it."""

    up: bool = True
    epochs: list[int] = dataclasses.field(default_factory=list)
    checkpoints: list[int] = dataclasses.field(default_factory=list)
    reasons: dict[int, str] = dataclasses.field(default_factory=dict)  # epoch -> stop reason

    def write_epoch(self, connection, trial_id, attempt, metrics, summary, rung, patience):
        if not self.up:
            raise gone()
        self.epochs.append(metrics.epoch)
        return self.reasons.get(metrics.epoch)

    def save_checkpoint(self, connection, trial_id, attempt, epoch, data, outage_seconds):
        if not self.up:
            raise gone()
        time.sleep(self.save_seconds)
        self.checkpoints.append(epoch)

    save_seconds: float = 0.0
    # what TrialWrites needs of its connection: another one for the background saver
    engine = types.SimpleNamespace(connect=lambda: types.SimpleNamespace(close=lambda: None))


@pytest.fixture
def database(monkeypatch) -> Database:
    fake = Database()
    monkeypatch.setattr(trial_writes, "write_epoch", fake.write_epoch)
    monkeypatch.setattr(trial_writes, "save_checkpoint", fake.save_checkpoint)
    return fake


def metrics(epoch: int) -> EpochMetrics:
    return EpochMetrics(epoch, 8, 1.0, 0.5, 1.0, 0.5, 0.1)


def writes_to(database: Database, written=lambda m: None) -> trial_writes.TrialWrites:
    return trial_writes.TrialWrites(database, 1, 1, written)


def train(writes: trial_writes.TrialWrites, database: Database, down: range, epochs: int = 8):
    """What the worker does for each epoch: write it, checkpoint it; the database is down
    after the epochs in `down`. Returns the epochs trained."""
    for epoch in range(1, epochs + 1):
        database.up = epoch not in down
        if writes.epoch(metrics(epoch), {}, None):
            return epoch
        writes.checkpoint(epoch, lambda: b"state", last=epoch == epochs)
    database.up = True
    return epochs


def test_training_goes_on_through_an_outage_and_the_held_epochs_are_written_in_order(database):
    logged = []
    writes = writes_to(database, lambda m: logged.append(m.epoch))
    assert train(writes, database, down=range(3, 6)) == 8  # never waited, never stopped
    assert writes.finish() is None and writes.dropped == 0
    # epochs 3-5 held while it was down, written with epoch 6
    assert database.epochs == logged == [1, 2, 3, 4, 5, 6, 7, 8]
    # checkpoints waited for them (the saver writes the latest it was given: 7 before the
    # last, which is saved after the others)
    *before, last = database.checkpoints
    assert set(before) <= {1, 2, 6, 7} and 7 in before and before == sorted(before)
    assert last == 8


def test_the_last_epochs_held_are_written_and_checkpointed_at_the_end(database):
    writes = writes_to(database)
    train(writes, database, down=range(7, 9))
    assert database.epochs == [1, 2, 3, 4, 5, 6]
    assert writes.finish() is None
    assert database.epochs[-2:] == [7, 8]
    # (the one of epoch 6 may have met the outage in the saver's thread, and been dropped)
    *before, last = database.checkpoints
    assert set(before) <= {1, 2, 3, 4, 5, 6} and last == 8


@pytest.mark.parametrize("reason", [PRUNED, CANCELLED, "lost"])
def test_a_held_epoch_that_stops_the_trial_drops_those_trained_after_it(database, reason):
    database.reasons[4] = reason  # e.g. its rung's rule, applied when it is written
    writes = writes_to(database)
    assert train(writes, database, down=range(3, 7)) == 7  # 4, 5, 6 were held until 7
    assert writes.finish() is None
    assert database.epochs == [1, 2, 3, 4] and writes.dropped == 3
    assert set(database.checkpoints) <= {1, 2}  # none ahead of the epoch it stopped at


def test_checkpoints_are_saved_in_the_background_the_latest_first(database):
    database.save_seconds = 0.2
    writes = writes_to(database)
    started = time.monotonic()
    for epoch in range(1, 6):
        assert writes.epoch(metrics(epoch), {}, None) is None
        assert writes.checkpoint(epoch, lambda: b"state", last=False)
    assert time.monotonic() - started < 0.2  # the training thread did not wait for a save
    writes.finish()
    # one being saved when the next came, those after it gave way to the latest
    assert database.checkpoints[-1] == 5 and len(database.checkpoints) < 5
    assert database.checkpoints == sorted(database.checkpoints)


def test_a_background_saves_error_ends_the_trial(database, monkeypatch):
    def broken(*args, **kwargs):
        raise OperationalError("INSERT", {}, Exception("value too long"))

    monkeypatch.setattr(trial_writes, "save_checkpoint", broken)
    writes = writes_to(database)
    writes.epoch(metrics(1), {}, None)
    writes.checkpoint(1, lambda: b"state", last=False)
    with pytest.raises(OperationalError, match="value too long"):
        writes.finish()


def test_an_outage_longer_than_the_limit_is_raised_during_training(database, monkeypatch):
    monkeypatch.setattr(transactions, "OUTAGE_SECONDS", 0.0)
    writes = writes_to(database)
    database.up = False
    assert writes.epoch(metrics(1), {}, None) is None  # the first failure starts the clock
    with pytest.raises(OperationalError):
        writes.epoch(metrics(2), {}, None)


def test_other_database_errors_are_raised_at_once(database, monkeypatch):
    def broken(*args):
        raise OperationalError("INSERT", {}, Exception("no such table: epoch"))

    monkeypatch.setattr(trial_writes, "write_epoch", broken)
    with pytest.raises(OperationalError, match="no such table"):
        writes_to(database).epoch(metrics(1), {}, None)


def lost_the_database(*args):
    raise gone()


class LostDatabase(ExecutorSlots):
    """Slots whose every trial's worker gives up on a lost database."""

    def submit(self, fn, *args):
        return super().submit(lost_the_database)


def test_a_worker_that_gave_up_on_the_database_interrupts_its_trial_no_crash_counted(app):
    from lrsearch.cli import runner_settings
    from lrsearch.search.runner import Runner

    search = create_search(db.session, SearchSpec(trials=1, epochs=2, workers=1))
    settings = dataclasses.replace(runner_settings(app), max_interruptions=2)
    Runner(settings, LostDatabase(ThreadPoolExecutor(1), 1), search.id).run(until_done=True)
    db.session.rollback()
    [trial] = trials(search.id)
    # each claim begins an attempt; none was counted as a crash (the MAX_ATTEMPTS rule)
    assert (trial.status, trial.crashes, trial.interruptions) == (FAILED, 0, 3)
    assert trial.error == "interrupted 3 times"

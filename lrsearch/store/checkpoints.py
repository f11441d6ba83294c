"""Checkpoints: a trial's latest trainer state, written by its worker, read to resume a
re-run attempt (with the epochs it had) and to export a completed trial's model."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, delete, insert, literal, select, text
from sqlalchemy.orm import Session

from lrsearch.models import Checkpoint, Epoch, utcnow
from lrsearch.store.transactions import retry_transaction

_checkpoint, _epoch = Checkpoint.__table__, Epoch.__table__
_NO_FLUSH_WAIT = text("SET LOCAL synchronous_commit TO OFF")
METRICS = ("loss", "acc_train", "val_loss", "acc_val", "seconds")


@dataclass(frozen=True)
class Stored:
    attempt: int
    epoch: int
    data: bytes


def save_checkpoint(connection: Connection, trial_id: int, attempt: int, epoch: int,
                    data: bytes, outage_seconds: float | None = None) -> None:  # fmt: skip
    """Keep this checkpoint as the trial's latest. The connection must have no transaction
    open. outage_seconds: how long to wait out a lost database (see retry_transaction)."""

    def work(conn: Connection) -> None:
        if conn.dialect.name == "postgresql":
            # Its commit does not wait for the write-ahead log's flush (3 MB, most of the
            # write's time): a server crash just after may lose this checkpoint, whole,
            # leaving the one before; the epochs are written as before.
            conn.execute(_NO_FLUSH_WAIT)
        conn.execute(_checkpoint.delete().where(_checkpoint.c.trial_id == trial_id))
        conn.execute(_checkpoint.insert().values(trial_id=trial_id, attempt=attempt, epoch=epoch,
                                                 data=data, created_at=utcnow()))  # fmt: skip

    retry_transaction(connection, work, outage_seconds=outage_seconds)


def latest_checkpoint(connection: Connection, trial_id: int) -> Stored | None:
    """The trial's latest checkpoint, if any."""

    return retry_transaction(connection, lambda conn: _stored(conn.execute(_latest(trial_id))))


def carry_epochs(connection: Connection, trial_id: int, from_attempt: int, to_attempt: int,
                 up_to: int) -> list[dict[str, float]]:  # fmt: skip
    """Copy a resumed attempt's earlier epochs (1..up_to of the checkpoint's attempt) to the
    new attempt, so its curve is whole; return them in order, as a worker's history holds
    them. Idempotent."""
    columns = [_epoch.c[name] for name in ("epoch", *METRICS)]
    source = select(literal(trial_id), literal(to_attempt), *columns, literal(utcnow())).where(
        _epoch.c.trial_id == trial_id,
        _epoch.c.attempt == from_attempt,
        _epoch.c.epoch <= up_to,
    )

    def work(conn: Connection) -> list[dict[str, float]]:
        conn.execute(
            delete(_epoch).where(_epoch.c.trial_id == trial_id, _epoch.c.attempt == to_attempt)
        )
        targets = ["trial_id", "attempt", "epoch", *METRICS, "created_at"]
        conn.execute(insert(_epoch).from_select(targets, source))
        rows = conn.execute(
            select(*columns)
            .where(_epoch.c.trial_id == trial_id, _epoch.c.attempt == to_attempt)
            .order_by(_epoch.c.epoch)
        ).all()
        return [dict(zip(("epoch", *METRICS), row, strict=True)) for row in rows]

    return retry_transaction(connection, work)


def final_checkpoint(session: Session, trial_id: int) -> Stored | None:
    """The trial's latest checkpoint (the caller checks it is of its last epoch)."""
    return _stored(session.execute(_latest(trial_id)))


def _latest(trial_id: int):
    return select(_checkpoint.c.attempt, _checkpoint.c.epoch, _checkpoint.c.data).where(
        _checkpoint.c.trial_id == trial_id
    )


def _stored(result) -> Stored | None:
    row = result.first()
    return Stored(row[0], row[1], bytes(row[2])) if row else None

"""A range test's batches: written by its worker when the test ends, read by pages and CLI."""

from __future__ import annotations

import math
from collections.abc import Sequence

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from lrsearch.models import RUNNING, RangePoint, Trial, utcnow
from lrsearch.store.transactions import retry_transaction
from lrsearch.training import range_test

_point, _trial = RangePoint.__table__, Trial.__table__


def record_range_test(
    connection: Connection,
    trial_id: int,
    attempt: int,
    points: Sequence[range_test.RangePoint],
    seconds: float,
) -> bool:
    """Store a range test's points in place of any earlier attempt's, and count the test as
    the trial's one epoch; False if the trial is no longer this attempt's.

    A non-finite point (the batch whose loss overflowed, ending the test) is not stored:
    SQLite keeps NaN as NULL. The connection must have no transaction open.
    """
    rows = [
        {"trial_id": trial_id, "step": p.step, "lr": p.lr, "loss": p.loss, "smoothed": p.smoothed}
        for p in points
        if math.isfinite(p.loss) and math.isfinite(p.smoothed)
    ]
    now = utcnow()
    owned = _trial.update().where(
        _trial.c.id == trial_id, _trial.c.attempt == attempt, _trial.c.status == RUNNING
    )

    def work(conn: Connection) -> bool:
        values = {"epochs_done": 1, "seconds": seconds, "heartbeat_at": now, "updated_at": now}
        if conn.execute(owned.values(**values)).rowcount != 1:
            return False
        conn.execute(_point.delete().where(_point.c.trial_id == trial_id))
        if rows:
            conn.execute(_point.insert(), rows)
        return True

    return retry_transaction(connection, work)


def range_points(session: Session, trial_id: int) -> list[range_test.RangePoint]:
    """A range test trial's points, in order."""
    rows = session.execute(
        select(RangePoint.step, RangePoint.lr, RangePoint.loss, RangePoint.smoothed)
        .where(RangePoint.trial_id == trial_id)
        .order_by(RangePoint.step)
    )
    return [range_test.RangePoint(*row) for row in rows]

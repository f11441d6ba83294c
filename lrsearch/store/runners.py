"""The runner table: what each runner says of itself with its heartbeat."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from lrsearch.models import RunnerRecord, utcnow
from lrsearch.store.transactions import retry_transaction

REPORTED = ("executor", "address", "workers", "dashboard_url", "problem")


def report_runner(session: Session, name: str, about: dict[str, object]) -> None:
    """Record (or refresh) the runner `name`: its executor and state, now."""

    def work(s: Session) -> None:
        record = s.execute(select(RunnerRecord).where(RunnerRecord.name == name)).scalar()
        if record is None:
            record = RunnerRecord(name=name, started_at=utcnow())
            s.add(record)
        for key in REPORTED:
            setattr(record, key, about.get(key) if key != "address" else about.get(key) or "")
        record.problem = (record.problem or "")[:2000] or None
        record.heartbeat_at = utcnow()

    retry_transaction(session, work)


def remove_runner(session: Session, name: str) -> None:
    """Forget a runner that stopped cleanly."""
    retry_transaction(
        session, lambda s: s.execute(delete(RunnerRecord).where(RunnerRecord.name == name))
    )


def live_runners(session: Session, since: datetime) -> list[RunnerRecord]:
    """The runners that reported since `since`, oldest first."""
    return list(
        session.execute(
            select(RunnerRecord).where(RunnerRecord.heartbeat_at >= since).order_by(RunnerRecord.id)
        ).scalars()
    )

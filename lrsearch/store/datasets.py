"""The dataset table: a data set's record from its request to ready or failed."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import Connection, func, select, update
from sqlalchemy.orm import Session

from lrsearch.models import (
    DATASET_BUSY,
    FAILED,
    QUEUED,
    READY,
    RUNNING,
    Dataset,
    Search,
    Trial,
    utcnow,
)
from lrsearch.store.transactions import retry_transaction


def add_dataset(
    session: Session,
    name: str,
    kind: str,
    status: str,
    source: str,
    options: Mapping,
    taken: bool = False,
) -> Dataset:
    """Record a data set to fetch or import; the runner takes it from there, unless the
    caller does it itself (`taken`: the command line, in the foreground)."""
    now = utcnow() if taken else None
    dataset = Dataset(
        name=name,
        kind=kind,
        status=status,
        source=source,
        options_json=json.dumps(dict(options)),
        progress_note="starting" if taken else "waiting for the runner",
        started_at=now,
        heartbeat_at=now,
    )
    session.add(dataset)
    session.commit()
    return dataset


def get_dataset(session: Session, name: str) -> Dataset | None:
    """The data set of that name, if recorded."""
    return session.execute(select(Dataset).where(Dataset.name == name)).scalar_one_or_none()


def list_datasets(session: Session) -> list[Dataset]:
    """Every recorded data set, by name."""
    return list(session.execute(select(Dataset).order_by(Dataset.name)).scalars())


def searches_using(session: Session, names: list[str] | None = None) -> dict[str, list[tuple]]:
    """(id, name, status) of the searches of each data set, newest first."""
    query = select(Search.dataset, Search.id, Search.name, Search.status).order_by(Search.id.desc())
    if names is not None:
        query = query.where(Search.dataset.in_(names))
    found: dict[str, list[tuple]] = {}
    for dataset, *search in session.execute(query):
        found.setdefault(dataset, []).append(tuple(search))
    return found


def active_searches_using(session: Session, name: str) -> int:
    """How many queued or running searches train on the data set."""
    query = select(func.count()).where(Search.dataset == name, Search.status.in_((QUEUED, RUNNING)))
    return session.execute(query).scalar_one()


def delete_dataset(session: Session, name: str) -> None:
    """Forget a data set's record (its files are the caller's to remove)."""
    session.execute(Dataset.__table__.delete().where(Dataset.name == name))
    session.commit()


def take_dataset_jobs(session: Session, limit: int) -> list[int]:
    """Take up to `limit` data sets waiting for the runner, each by one atomic update."""
    if limit <= 0:
        return []
    waiting = (
        select(Dataset.id)
        .where(Dataset.status.in_(DATASET_BUSY), Dataset.started_at.is_(None))
        .order_by(Dataset.id)
        .limit(limit)
    )
    ids = retry_transaction(session, lambda s: list(s.execute(waiting).scalars()))
    taken = []
    for dataset_id in ids:
        now = utcnow()
        take = (
            update(Dataset)
            .where(Dataset.id == dataset_id, Dataset.started_at.is_(None))
            .values(started_at=now, heartbeat_at=now, progress_note="starting")
        )
        if retry_transaction(session, lambda s, take=take: s.execute(take).rowcount):
            taken.append(dataset_id)
    return taken


def report_progress(session: Session, dataset_id: int, progress: float, note: str) -> None:
    """A job's progress (0 to 1) and what it is doing; also its heartbeat."""
    values = {"progress": progress, "progress_note": note[:200], "heartbeat_at": utcnow()}
    retry_transaction(
        session,
        lambda s: s.execute(update(Dataset).where(Dataset.id == dataset_id).values(**values)),
    )


def finish_dataset(session: Session, dataset_id: int, **values: object) -> bool:
    """Mark a job's data set ready, with what it found (samples, classes, sha256, ...);
    False if it is no longer being prepared (removed, or failed as interrupted)."""
    for key in ("class_counts", "labels"):
        if key in values:
            values[f"{key}_json"] = json.dumps(values.pop(key))
    done = {"status": READY, "progress": 1.0, "progress_note": "", "finished_at": utcnow()}
    finish = (
        update(Dataset)
        .where(Dataset.id == dataset_id, Dataset.status.in_(DATASET_BUSY))
        .values(**done, **values, error=None)
    )
    return bool(retry_transaction(session, lambda s: s.execute(finish).rowcount))


def fail_dataset(session: Session, dataset_id: int, error: str) -> None:
    """Mark a job's data set failed, with why (if it is still being prepared)."""
    values = {"status": FAILED, "error": error, "progress_note": "", "finished_at": utcnow()}
    fail = (
        update(Dataset)
        .where(Dataset.id == dataset_id, Dataset.status.in_(DATASET_BUSY))
        .values(**values)
    )
    retry_transaction(session, lambda s: s.execute(fail))


def touch_dataset_heartbeats(session: Session, dataset_ids: list[int]) -> None:
    """Mark the runner's running jobs alive (a long import reports no progress meanwhile)."""
    if dataset_ids:
        touch = (
            update(Dataset)
            .where(Dataset.id.in_(dataset_ids), Dataset.status.in_(DATASET_BUSY))
            .values(heartbeat_at=utcnow())
        )
        retry_transaction(session, lambda s: s.execute(touch))


def fail_interrupted_jobs(session: Session, older_than: datetime) -> list[str]:
    """Fail the jobs whose runner stopped sending heartbeats: never left half-ready."""
    stale = (
        update(Dataset)
        .where(
            Dataset.status.in_(DATASET_BUSY),
            Dataset.started_at.is_not(None),
            Dataset.heartbeat_at < older_than,
        )
        .values(status=FAILED, error="interrupted (the runner stopped)", finished_at=utcnow())
        .returning(Dataset.name)
    )
    return retry_transaction(session, lambda s: list(s.execute(stale).scalars()))


def stored_datasets_of_trials(session: Session, trial_ids: list[int]) -> list[tuple[str, str]]:
    """(name, sha256) of the stored data sets the trials' searches train on (built-in ones
    have no row)."""
    if not trial_ids:
        return []
    rows = session.execute(
        select(Dataset.name, Dataset.sha256)
        .join(Search, Search.dataset == Dataset.name)
        .join(Trial, Trial.search_id == Search.id)
        .where(Trial.id.in_(trial_ids), Dataset.status == READY)
        .distinct()
    ).all()
    session.rollback()
    return [(name, sha) for name, sha in rows]


def stored_dataset_of_trial(connection: Connection, trial_id: int) -> tuple[str, str | None]:
    """The data set a trial trains on, with its sha256 where it is a stored one."""
    row = connection.execute(
        select(Search.dataset, Dataset.sha256)
        .join(Trial, Trial.search_id == Search.id)
        .outerjoin(Dataset, (Dataset.name == Search.dataset) & (Dataset.status == READY))
        .where(Trial.id == trial_id)
    ).one()
    connection.rollback()
    return row[0], row[1]

"""The ORM models: a Search, its Trials, each Trial's Epochs, and the Datasets."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from lrsearch.extensions import db
from lrsearch.settings import SETTINGS, STORED_SETTINGS, SearchSpec

# Trial states. A trial whose runner died is re-queued at once, its `interruptions` counted and
# its epochs kept under their attempt; `pruned`: stopped early by the search's scheduler.
QUEUED, RUNNING, COMPLETED, FAILED = "queued", "running", "completed", "failed"
DIVERGED, CANCELLED, PRUNED = "diverged", "cancelled", "pruned"
TRIAL_FINAL = (COMPLETED, FAILED, DIVERGED, CANCELLED, PRUNED)
# Search states: queued -> running -> completed (some trial completed) | failed (none did,
# some failed or diverged) | cancelled.
SEARCH_FINAL = (COMPLETED, CANCELLED, FAILED)


# The trials that did not end as planned, as a search's status note names them.
NOTED = (FAILED, DIVERGED, PRUNED, CANCELLED)


def status_note(status: str, counts: dict[str, int]) -> str:
    """The status with what went otherwise: "completed, 1 failed", "failed: 3 failed"."""
    if not (detail := status_detail(status, counts)):
        return status
    return status + (": " if status == FAILED else ", ") + detail


def status_detail(status: str, counts: dict[str, int]) -> str:
    """What went otherwise, the status note after its status: "1 failed, 2 diverged"."""
    noted = [f"{counts[s]} {s}" for s in NOTED if counts.get(s) and s != status]
    if status in (FAILED, CANCELLED) and counts.get(status):
        noted.insert(0, f"{counts[status]} {status}")
    return ", ".join(noted)


def utcnow() -> datetime:
    """The current time, naive UTC, as stored."""
    return datetime.now(UTC).replace(tzinfo=None)


class Search(db.Model):
    """One learning-rate search: its configuration and status."""

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    dataset: Mapped[str] = mapped_column(String(100))
    layers_json: Mapped[str] = mapped_column("layers", String(400))
    lr_min: Mapped[float] = mapped_column(Float)
    lr_max: Mapped[float] = mapped_column(Float)
    sampler: Mapped[str] = mapped_column(String(20), default="random")
    n_trials: Mapped[int] = mapped_column(Integer)
    epochs: Mapped[int] = mapped_column(Integer)
    batch_size: Mapped[int] = mapped_column(Integer)
    beta1: Mapped[float] = mapped_column(Float)
    beta2: Mapped[float] = mapped_column(Float)
    eps: Mapped[float] = mapped_column(Float, default=1e-8)
    workers: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(Integer)
    scheduler: Mapped[str] = mapped_column(String(20), default="none", server_default="none")
    reduction_factor: Mapped[int] = mapped_column(Integer, default=3, server_default="3")
    grace_period: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    brackets: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    metric: Mapped[str] = mapped_column(String(20), default="val_acc", server_default="val_acc")
    # "search", or "range_test": one trial, its rate growing over `iterations` batches.
    kind: Mapped[str] = mapped_column(String(20), default="search", server_default="search")
    iterations: Mapped[int] = mapped_column(Integer, default=100, server_default="100")
    status: Mapped[str] = mapped_column(String(20), default=QUEUED, index=True)
    # The search this one refines (around its best rate), if any. No foreign key: adding
    # one makes SQLite rebuild the search table, and the rebuild's drop would cascade to
    # every trial and epoch (the foreign keys are on).
    parent_id: Mapped[int | None] = mapped_column(Integer)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)

    trials: Mapped[list[Trial]] = relationship(
        back_populates="search", order_by="Trial.index", cascade="all, delete-orphan"
    )

    @property
    def layers(self) -> list[int]:
        """Layer sizes, input first."""
        return json.loads(self.layers_json)

    @layers.setter
    def layers(self, value: list[int]) -> None:
        self.layers_json = json.dumps([int(v) for v in value])

    @classmethod
    def from_spec(cls, spec: SearchSpec, **values: object) -> Search:
        """A new search holding the spec's settings (and any other columns' values)."""
        search = cls(**values)
        for setting in STORED_SETTINGS:
            setattr(search, setting.column, getattr(spec, setting.name))
        return search

    def spec(self) -> SearchSpec:
        """The settings that define this search."""
        return SearchSpec(**{s.name: getattr(self, s.column) for s in STORED_SETTINGS})

    def config(self) -> dict[str, object]:
        """The settings that define this search, by name (derived ones too)."""
        spec = self.spec()
        return {s.name: getattr(spec, s.name) for s in SETTINGS}


class Trial(db.Model):
    """One learning rate of a search, trained once (re-run from scratch on retry)."""

    # The unique (search, index) serves every lookup by search as well; a page's poll for the
    # trials that changed finds them by (search, updated_at); the runner's claims by (search,
    # status, index).
    __table_args__ = (
        UniqueConstraint("search_id", "index"),
        Index("ix_trial_search_id_updated_at", "search_id", "updated_at"),
        # The runner's claims: a search's first queued trials, its running count.
        Index("ix_trial_search_id_status_index", "search_id", "status", "index"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    search_id: Mapped[int] = mapped_column(ForeignKey("search.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    lr: Mapped[float] = mapped_column(Float)
    seed: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default=QUEUED, index=True)
    attempt: Mapped[int] = mapped_column(Integer, default=0)  # incremented at each claim
    crashes: Mapped[int] = mapped_column(Integer, default=0)  # errors and worker deaths
    interruptions: Mapped[int] = mapped_column(Integer, default=0)  # runner deaths
    error: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(String(100))  # host:pid of the last attempt
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime)
    epochs_done: Mapped[int] = mapped_column(Integer, default=0)
    best_val_acc: Mapped[float | None] = mapped_column(Float)
    best_epoch: Mapped[int | None] = mapped_column(Integer)
    min_val_loss: Mapped[float | None] = mapped_column(Float)
    final_loss: Mapped[float | None] = mapped_column(Float)
    final_acc_train: Mapped[float | None] = mapped_column(Float)
    final_val_loss: Mapped[float | None] = mapped_column(Float)
    final_val_acc: Mapped[float | None] = mapped_column(Float)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)  # training seconds, this attempt
    # The worker left the plot for later (a short trial); the runner draws it when idle.
    plot_pending: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    # Cancel this trial alone: its worker stops at its next epoch boundary (a queued trial
    # is cancelled at once and never gets it).
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # Any change to the row; lets a page poll only the trials that changed.
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    search: Mapped[Search] = relationship(back_populates="trials")


class Epoch(db.Model):
    """One finished epoch of one attempt of a trial."""

    __table_args__ = (UniqueConstraint("trial_id", "attempt", "epoch"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # Its own index too, though the unique one above starts with it: SQLite ends this one
    # with the row id, so that a page's poll ranges over each trial's newest epochs by id.
    # Without it an epoch's write is a little cheaper, but a poll of a large search much
    # slower (benchmarks/dashboard.py).
    trial_id: Mapped[int] = mapped_column(ForeignKey("trial.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    epoch: Mapped[int] = mapped_column(Integer)
    loss: Mapped[float] = mapped_column(Float)
    acc_train: Mapped[float] = mapped_column(Float)
    val_loss: Mapped[float] = mapped_column(Float)
    acc_val: Mapped[float] = mapped_column(Float)
    seconds: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Checkpoint(db.Model):
    """A trial's latest checkpoint (training.checkpoint): where a re-run attempt resumes, and
    a completed trial's final weights."""

    trial_id: Mapped[int] = mapped_column(
        ForeignKey("trial.id", ondelete="CASCADE"), primary_key=True
    )
    attempt: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class RangePoint(db.Model):
    """One mini-batch of a range test's trial: its rate, loss and smoothed loss."""

    __table_args__ = (UniqueConstraint("trial_id", "step"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trial.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)  # 1-based
    lr: Mapped[float] = mapped_column(Float)
    loss: Mapped[float] = mapped_column(Float)
    smoothed: Mapped[float] = mapped_column(Float)


class RunnerRecord(db.Model):
    """A runner as it last reported itself: its executor, workers and any problem."""

    __tablename__ = "runner"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)  # host:pid/runner
    executor: Mapped[str] = mapped_column(String(20))  # local or dask
    address: Mapped[str] = mapped_column(String(400), default="")  # the Dask scheduler's
    workers: Mapped[int] = mapped_column(Integer, default=0)  # trials it can run at once
    dashboard_url: Mapped[str | None] = mapped_column(String(400))
    problem: Mapped[str | None] = mapped_column(Text)  # e.g. the scheduler lost
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)


# Data set states: fetching or importing (waiting for the runner, then in its hands) ->
# ready | failed. A job whose runner died is failed as "interrupted", never left half-ready.
FETCHING, IMPORTING, READY = "fetching", "importing", "ready"
DATASET_BUSY = (FETCHING, IMPORTING)


class Dataset(db.Model):
    """A data set fetched or uploaded once, converted to arrays in the data folder."""

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(20))  # mnist, fashion-mnist, csv, npz
    source: Mapped[str] = mapped_column(String(400), default="")  # where it came from
    status: Mapped[str] = mapped_column(String(20), default=IMPORTING, index=True)
    error: Mapped[str | None] = mapped_column(Text)
    progress: Mapped[float] = mapped_column(Float, default=0.0)  # 0 to 1 while busy
    progress_note: Mapped[str] = mapped_column(String(200), default="")
    options_json: Mapped[str] = mapped_column("options", Text, default="{}")  # e.g. label column
    samples: Mapped[int | None] = mapped_column(Integer)  # training and validation together
    features: Mapped[int | None] = mapped_column(Integer)
    classes: Mapped[int | None] = mapped_column(Integer)
    val_samples: Mapped[int | None] = mapped_column(Integer)  # given; else split by seed
    class_counts_json: Mapped[str] = mapped_column("class_counts", Text, default="[]")
    labels_json: Mapped[str] = mapped_column("labels", Text, default="[]")  # index -> label
    sha256: Mapped[str | None] = mapped_column(String(64))
    disk_bytes: Mapped[int | None] = mapped_column(BigInteger)  # its arrays on disk
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)  # taken by a runner
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)

    @property
    def options(self) -> dict:
        return json.loads(self.options_json)

    @property
    def class_counts(self) -> list[int]:
        return json.loads(self.class_counts_json)

    @property
    def labels(self) -> list[str]:
        return json.loads(self.labels_json)

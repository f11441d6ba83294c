"""Helpers for tests that break things: a runner in a thread, sessions racing for claims,
waiting on the database, and what a worker process finds or does."""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Callable

from flask import Flask
from sqlalchemy import create_engine, select, update
from sqlalchemy.orm import Session

from lrsearch import store
from lrsearch.cli import runner_settings
from lrsearch.execution.local import ProcessSlots
from lrsearch.extensions import db
from lrsearch.models import COMPLETED, Search, Trial
from lrsearch.search.runner import Runner


class RunnerThread:
    """A runner with its own process pool (or the given slots), looping in a thread of the
    test."""

    def __init__(self, app: Flask, workers: int = 2, search_id: int | None = None, slots=None):
        slots = slots if slots is not None else ProcessSlots(workers)
        self.runner = Runner(runner_settings(app), slots, search_id)
        self.thread = threading.Thread(target=self.runner.run, daemon=True)

    def __enter__(self) -> RunnerThread:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.runner.stop()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()


def wait_for(condition: Callable[[], object], timeout: float = 60.0, what: str = "") -> object:
    """Poll the database until `condition()` is truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db.session.expire_all()
        value = condition()
        db.session.rollback()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or condition}")


def trials(search_id: int) -> list[Trial]:
    return list(
        db.session.execute(
            select(Trial).where(Trial.search_id == search_id).order_by(Trial.index)
        ).scalars()
    )


def search_status(search_id: int) -> str:
    """The search's status in the database now, not as this session last loaded it."""
    return db.session.get(Search, search_id, populate_existing=True).status


def claim_race(database_url: str, search_id: int, claimers: int = 4) -> list[int]:
    """Several sessions claim from one queue at once; every claimed trial id, in order."""

    def claim(session: Session) -> list[int]:
        return [t for t, _ in store.claim_trials(session, 1, search_id=search_id, worker="t")]

    return take_at_once(database_url, claim, claimers)


def take_plots_race(database_url: str, search_id: int, takers: int = 4) -> list[int]:
    """Several sessions take left-over plots of one search at once; every trial id taken."""
    return take_at_once(database_url, lambda s: store.take_pending_plots(s, 2, search_id), takers)


def take_at_once(database_url: str, take, racers: int) -> list[int]:
    """Sessions in threads call take(session) at once until it returns nothing; all taken."""
    claimed: list[int] = []
    barrier = threading.Barrier(racers)
    engine = create_engine(database_url)

    def racer() -> None:
        with Session(engine) as session:
            barrier.wait()
            while got := take(session):
                claimed.extend(got)

    threads = [threading.Thread(target=racer) for _ in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    engine.dispose()
    return claimed


def left_over_plots(search_id: int) -> list[int]:
    """Mark every trial of a search completed, its plot left for later; their ids."""
    db.session.execute(
        update(Trial)
        .where(Trial.search_id == search_id)
        .values(status=COMPLETED, epochs_done=1, plot_pending=True)
    )
    db.session.commit()
    return [t.id for t in trials(search_id)]


def worker_pid(trial: Trial) -> int:
    """The pid of the process running the trial's current attempt (host:pid)."""
    return int(trial.worker.rsplit(":", 1)[1])


def pid_alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def children_of(pid: int) -> list[int]:
    """Every live descendant of a process, from the process table."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if fields[0] != "Z":
                parents[int(entry)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        kids = [p for p, parent in parents.items() if parent == current]
        found += kids
        frontier += kids
    return found


def write_epochs(database_url: str, trial_id: int, epochs: int) -> int:
    """In a child process: write `epochs` rows for one trial, each twice (a retried write).

    It writes as a worker does, on one connection held for the trial.
    """
    from lrsearch.training import EpochMetrics

    engine = store.process_engine(database_url)
    with engine.connect() as connection:
        for epoch in range(1, epochs + 1):
            metrics = EpochMetrics(epoch, epochs, 1.0 / epoch, 0.5, 1.0 / epoch, 0.5, 0.001)
            summary = {"final_val_acc": 0.5}
            for _ in range(2):
                store.write_epoch(connection, trial_id, 1, metrics, summary)
    engine.dispose()
    return epochs


def scheduling_of_this_process() -> dict[str, int | None]:
    """How the kernel schedules the calling process: policy, nice and (Linux 6.6+) slice."""
    slice_ns = None
    with open("/proc/self/sched") as sched:
        for line in sched:
            if line.startswith("se.slice"):
                slice_ns = int(float(line.split(":")[1]))
    return {
        "policy": os.sched_getscheduler(0),
        "nice": os.getpriority(os.PRIO_PROCESS, 0),
        "slice_ns": slice_ns,
    }


def prepared_by_the_fork_server() -> dict[str, bool]:
    """What this worker found ready (inherited from the fork server) before any trial."""
    from threadpoolctl import threadpool_info

    from lrsearch import artifacts
    from lrsearch.models import Search
    from lrsearch.training import datasets, kernels

    return {
        "plot figure": artifacts._plot_figure.cache_info().currsize == 1,
        "mappers": Search.__mapper__.configured,
        "digits": datasets.digits_table.cache_info().currsize == 1,
        "loops": kernels._tried,
        "frozen objects": gc.get_freeze_count() > 0,
        "one BLAS thread": {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}
        == {1},
    }


class TwoPartError(Exception):
    """An error whose pickle cannot be loaded: it is rebuilt from one argument, not two."""

    def __init__(self, what: str, why: str):
        super().__init__(f"{what}: {why}")


def raise_an_error_that_cannot_be_rebuilt() -> None:
    """In a worker: raise an error the runner cannot unpickle."""
    raise TwoPartError("trial", "broken")


def mapped_files(name: str, data_dir: str) -> tuple[int, list[str]]:
    """In a worker: load the data set as a trial does; the data files this process maps."""
    import numpy as np

    from lrsearch.datasets import cache

    data = cache.load(name, data_dir, seed=0)
    assert all(isinstance(a, np.memmap) or isinstance(a.base, np.memmap) for a in
               (data.x_train, data.y_train, data.x_val, data.y_val))  # fmt: skip
    with open("/proc/self/maps") as maps:
        paths = {line.split()[-1] for line in maps if "/datasets/cache/" in line}
    return os.getpid(), sorted(paths)

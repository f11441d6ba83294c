"""The runner: what to run next, and what to do when a trial ends.

It claims queued trials and submits each to its slots (see execution.slots), re-queues
trials whose runner died, records crashes and, when idle, draws the plots short trials
left for later.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from lrsearch import __version__, store
from lrsearch.datasets.jobs import abandon, prepare_dataset
from lrsearch.execution import plots
from lrsearch.execution.cluster_worker import run_trial_on_worker
from lrsearch.execution.slots import ExecutorSlots, Interrupted, Slots
from lrsearch.execution.worker import draw_plots, run_trial, worker_name
from lrsearch.models import Trial
from lrsearch.store import datasets, runners
from lrsearch.store.transactions import OUTAGE_SECONDS, is_gone

log = logging.getLogger(__name__)
_RUNNERS = itertools.count(1)
PLOTS_PER_CHORE = 2  # plots an idle slot draws at a time, so that it is soon free again


@dataclass
class RunnerSettings:
    """Plain values the runner and its workers need."""

    database_url: str
    data_dir: str
    heartbeat_seconds: float = 5.0
    stale_after_seconds: float = 30.0
    max_attempts: int = 2
    max_interruptions: int = 10
    poll_seconds: float = 0.2
    dataset_options: dict = field(default_factory=dict)  # see datasets.jobs.prepare_dataset
    checkpoint_seconds: float = 10.0  # a trial's checkpoint at most this often (0: each epoch)


class Runner:
    """Claims queued trials (of one search, or all) and runs them until stopped."""

    def __init__(
        self,
        settings: RunnerSettings,
        slots: Slots,
        search_id: int | None = None,
    ):
        self.settings, self.slots, self.search_id = settings, slots, search_id
        # Slots on other machines (a Dask cluster) share no disk with this one: data set
        # jobs and plots, which write into the data folder, run in a thread here instead.
        self.remote = getattr(slots, "remote", False)
        self.local = ExecutorSlots(ThreadPoolExecutor(1), 1) if self.remote else slots
        self.engine = store.process_engine(settings.database_url)
        self.session = Session(self.engine)
        self.stopping = threading.Event()
        self.futures: dict[Future, tuple[int, int]] = {}  # future -> (trial id, attempt)
        self.chores: set[Future] = set()  # plots drawn in idle time
        self.jobs: dict[Future, int] = {}  # future -> data set id (fetching or importing)
        self.problem: str | None = None  # what the slots last said is wrong (see report)
        # host:pid/runner, and a number after the first in a process (the tests run several)
        number = next(_RUNNERS)
        self.name = f"{worker_name()}/runner" + (f"-{number}" if number > 1 else "")

    def run(
        self,
        until_done: bool = False,
        on_tick: Callable[[], None] | None = None,
        on_end: Callable[[], None] | None = None,
    ) -> None:
        """Loop until stop(); with until_done, also stop once the search has ended.

        With until_done the loop goes on, after the last trial, until the plots that short
        trials left for later are drawn too (by the idle workers, side by side); on_end is
        called once in between, when every trial has ended.
        """
        last_beat, outage = 0.0, None  # a heartbeat (and recovery) first
        try:
            while not self.stopping.is_set():
                try:
                    if time.monotonic() - last_beat >= self.settings.heartbeat_seconds:
                        self.beat()
                        last_beat = time.monotonic()
                    self.claim()
                    if until_done and not self.futures and self.search_finished():
                        if on_end is not None:
                            on_end()
                            on_end = None
                        if not self.chores:
                            break
                    for future in self.wait_for_work():
                        self.reap(future)
                    if on_tick:
                        on_tick()
                    outage = None
                except (OperationalError, InterfaceError) as exc:
                    # The database lost (see transactions.OUTAGE_SECONDS): the workers wait
                    # it out too; queued trials stay queued, running ones run on.
                    if not is_gone(exc):
                        raise
                    outage = outage or time.monotonic()
                    if time.monotonic() - outage >= OUTAGE_SECONDS:
                        raise
                    log.warning("database unavailable (%s); the runner waits", exc.orig)
                    try:
                        self.session.rollback()
                    except (OperationalError, InterfaceError):
                        pass  # the connection went with the database
                    self.stopping.wait(1.0)
        finally:
            self.close()

    def beat(self) -> None:
        """The runner's heartbeat: its trials' and jobs', recovery, and its report."""
        store.touch_heartbeats(self.session, [t for t, _ in self.futures.values()])
        datasets.touch_dataset_heartbeats(self.session, list(self.jobs.values()))
        self.recover()
        self.report()

    def wait_for_work(self) -> set[Future]:
        """Sleep until a future finishes or a poll interval passes (no busy loop when idle)."""
        pending = [*self.futures, *self.chores, *self.jobs]
        if not pending:
            self.stopping.wait(self.settings.poll_seconds)
            return set()
        done, _ = wait(pending, timeout=self.settings.poll_seconds, return_when=FIRST_COMPLETED)
        return done

    def stop(self) -> None:
        """Ask the loop to end (safe from a signal handler or another thread)."""
        self.stopping.set()

    def report(self) -> None:
        """Say what this runner runs on, for the dashboard (its heartbeat too)."""
        describe = getattr(self.slots, "describe", None)
        about = describe() if describe else {"executor": "local", "workers": self.capacity_total}
        previous, self.problem = self.problem, about.get("problem")
        if self.problem != previous:
            log.warning("%s", self.problem) if self.problem else log.info("executor healthy")
        runners.report_runner(self.session, self.name, about)

    @property
    def capacity_total(self) -> int:
        """Calls the slots may run at once: free and busy."""
        return self.slots.capacity + len(self.futures) + len(self.chores) + len(self.jobs)

    def recover(self) -> None:
        """Re-queue trials whose runner stopped sending heartbeats; fail its data set jobs."""
        bound = store.stale_bound(self.settings.stale_after_seconds)
        for name in datasets.fail_interrupted_jobs(self.session, bound):
            log.warning("data set %s failed: its runner stopped while preparing it", name)
        mine = {t for t, _ in self.futures.values()}
        n = store.requeue_interrupted(
            self.session,
            older_than=bound,
            max_interruptions=self.settings.max_interruptions,
            exclude=mine,
        )
        if n:
            log.warning("re-queued %d trial(s) left running by a runner that died", n)

    def claim(self) -> None:
        """Fill the free slots: data sets to prepare (the server's runner), then trials."""
        if self.search_id is None:
            self.take_dataset_jobs()
        claimed = store.claim_trials(
            self.session, self.slots.capacity, search_id=self.search_id, worker=self.name
        )
        url = self.settings.database_url
        if claimed and self.remote:
            self.slots.ship(
                datasets.stored_datasets_of_trials(self.session, [t for t, _ in claimed])
            )
        for trial_id, attempt in claimed:
            every = self.settings.checkpoint_seconds
            if self.remote:
                args = (run_trial_on_worker, trial_id, attempt, url, self.name, __version__, every)
            else:
                args = (run_trial, trial_id, attempt, url, self.settings.data_dir, self.name, True,
                        every)  # fmt: skip
            self.futures[self.slots.submit(*args)] = (trial_id, attempt)
        if not claimed and self.local.capacity:
            self.draw_pending_plots()

    def take_dataset_jobs(self) -> None:
        """Fetch or import the data sets waiting for the runner, one a free slot."""
        s = self.settings
        for dataset_id in datasets.take_dataset_jobs(self.session, self.local.capacity):
            future = self.local.submit(
                prepare_dataset, dataset_id, s.database_url, s.data_dir, s.dataset_options
            )
            self.jobs[future] = dataset_id

    def draw_pending_plots(self) -> None:
        """With nothing to train, draw the plots that short trials left for later.

        A slot takes a few at a time, so that it is soon free again when trials are queued.
        The runner of one search (the command line, waiting for them) draws its search's
        on every idle slot, side by side; the server's runner draws any search's on one slot
        at a time, leaving the other cores to the web server: nobody waits for those, and a
        page that needs one draws it.
        """
        while self.local.capacity and (self.search_id is not None or not self.chores):
            trial_ids = store.take_pending_plots(self.session, PLOTS_PER_CHORE, self.search_id)
            if not trial_ids:
                return
            self.chores.add(
                self.local.submit(
                    draw_plots, trial_ids, self.settings.database_url, self.settings.data_dir
                )
            )

    def reap(self, future: Future) -> None:
        """Record how a trial's future ended: a raised error or a dead worker is a crash."""
        if future in self.chores:
            self.chores.discard(future)
            self.local.done(future)
            if future.exception():  # a plot can still be drawn when first asked for
                log.warning("drawing plots failed: %s", future.exception())
            return
        if future in self.jobs:
            dataset_id, death = self.jobs.pop(future), self.local.done(future)
            if future.exception() is not None:
                error = death or f"{type(future.exception()).__name__}: {future.exception()}"
                abandon(self.session, dataset_id, self.settings.data_dir, error)
            return
        trial_id, attempt = self.futures.pop(future)
        death = self.slots.done(future)
        error = future.exception()
        if error is None:
            if self.remote:  # its log.txt, here, from the database
                self.write_log(trial_id)
            return
        # Not the trial's fault (a worker gives up on a database lost past the outage limit,
        # see execution.trial_writes): no attempt counted.
        if isinstance(error, Interrupted) or (isinstance(error, DBAPIError) and is_gone(error)):
            most = self.settings.max_interruptions
            store.requeue_interrupted(self.session, trial_ids=[trial_id], max_interruptions=most)
            log.warning("trial %d attempt %d re-queued: %s", trial_id, attempt, error)
            return
        message = death or f"{type(error).__name__}: {error}"
        status = store.record_crash(
            self.session, trial_id, attempt, message, self.settings.max_attempts
        )
        log.warning("trial %d attempt %d crashed (%s): now %s", trial_id, attempt, message, status)

    def write_log(self, trial_id: int) -> None:
        """The log.txt of a trial that ran on another machine, written from its epochs."""
        trial = self.session.get(Trial, trial_id)
        try:
            plots.ensure_log(self.session, trial, self.settings.data_dir)
        except OSError as exc:  # written when first asked for, then
            log.warning("writing the log of trial %d failed: %s", trial_id, exc)
        finally:
            self.session.rollback()

    def search_finished(self) -> bool:
        """Whether the runner's search (or, for all searches, every one) has ended."""
        return store.nothing_left(self.session, self.search_id)

    def close(self) -> None:
        """Stop the workers; trials they were running are re-queued for the next start."""
        for future in [f for f in self.futures if f.done()]:
            try:  # ended before the stop: recorded as such (a remote one's log written)
                self.reap(future)
            except Exception as exc:  # the stop goes on; what is left is recovered later
                log.warning("recording an ended trial at the stop failed: %s", exc)
        running = [t for t, _ in self.futures.values()]
        jobs = list(self.jobs.values())
        self.slots.shutdown()
        if self.local is not self.slots:
            self.local.shutdown()
        self.futures.clear()
        self.chores.clear()
        self.jobs.clear()
        for dataset_id in jobs:  # never left half-ready
            stopped = "interrupted (the runner stopped)"
            abandon(self.session, dataset_id, self.settings.data_dir, stopped)
        if running:
            store.requeue_interrupted(
                self.session, trial_ids=running, max_interruptions=self.settings.max_interruptions
            )
        runners.remove_runner(self.session, self.name)
        self.session.close()
        self.engine.dispose()

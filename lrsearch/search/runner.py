"""The runner: claims queued trials and runs them on a pool of worker processes."""

from __future__ import annotations

import logging
import multiprocessing
import os
import site
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path

from sqlalchemy.orm import Session

from lrsearch.search import store
from lrsearch.search.worker import (
    PRELOAD,
    draw_plots,
    init_worker,
    run_trial,
    warm_up,
    worker_name,
)

log = logging.getLogger(__name__)
PLOTS_PER_CHORE = 2  # plots an idle slot draws at a time: about 0.15 s, then it is free again


class ProcessSlots:
    """`size` one-process executors: a killed worker breaks its own slot, no other."""

    def __init__(self, size: int, start_method: str = "forkserver"):
        # Children import NumPy afresh (no fork of this process): one BLAS thread from the start.
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        self.context = multiprocessing.get_context(start_method)
        if start_method == "forkserver":
            # The fork server imports the worker's modules once (1-2 s of CPU); each worker
            # is then a cheap fork of it instead of a fresh interpreter importing them again.
            self.context.set_forkserver_preload(PRELOAD)
            fork_server_finds_the_package()
        self.slots: list[ProcessPoolExecutor | None] = [None] * size
        self.running: dict[Future, int] = {}  # future -> slot

    @property
    def capacity(self) -> int:
        return len(self.slots) - len(self.running)

    def start(self) -> None:
        """Start every worker process now, so the first trials pay no process start."""
        for slot in range(len(self.slots)):
            self._executor(slot).submit(warm_up)

    def _executor(self, slot: int) -> ProcessPoolExecutor:
        if self.slots[slot] is None:
            self.slots[slot] = ProcessPoolExecutor(
                1, mp_context=self.context, initializer=init_worker, initargs=(os.getpid(),)
            )
        return self.slots[slot]

    def submit(self, fn: Callable, *args) -> Future:
        """Run fn(*args) in a free slot."""
        slot = next(i for i in range(len(self.slots)) if i not in self.running.values())
        future = self._executor(slot).submit(fn, *args)
        self.running[future] = slot
        return future

    def done(self, future: Future) -> str | None:
        """Free the future's slot; if its process died, replace it and say how it died."""
        slot = self.running.pop(future)
        if not isinstance(future.exception(), BrokenProcessPool):
            return None
        executor = self.slots[slot]
        self.slots[slot] = None
        processes = _processes_of(executor)
        for process in processes:
            process.join(timeout=2)  # reap it, to learn how it died
        codes = [p.exitcode for p in processes]
        executor.shutdown(wait=False, cancel_futures=True)
        code = codes[0] if codes else None
        return f"worker process died (exit code {code})"

    def shutdown(self) -> None:
        """Stop every worker now, running trials included."""
        for executor in filter(None, self.slots):
            for process in _processes_of(executor):
                process.kill()
            executor.shutdown(wait=True, cancel_futures=True)
        self.slots = [None] * len(self.slots)
        self.running.clear()

    def processes(self) -> list[BaseProcess]:
        """The worker processes of the slots started so far."""
        return [p for executor in filter(None, self.slots) for p in _processes_of(executor)]


def _processes_of(executor: ProcessPoolExecutor) -> list[BaseProcess]:
    """An executor's worker processes (it keeps them in a private dict, pid -> process)."""
    return list(getattr(executor, "_processes", {}).values())


def fork_server_finds_the_package() -> None:
    """Let the fork server import this package, whatever folder the runner was started in.

    Before Python 3.12.8 and 3.13.1 the fork server ignores its parent's sys.path (CPython
    gh-117378): started outside the checkout, e.g. `flask --app ~/lrsearch/app.py` from
    another folder, it failed to import PRELOAD, silently, and each new worker paid the
    imports and the loops' compilation in its first trial (0.45 s on digits, where a trial
    takes 0.04 s). It does read PYTHONPATH, which it inherits from the runner's environment
    (as would any process the runner started later); an installed package needs none of this.
    """
    root = str(Path(__file__).resolve().parents[2])
    installed = {*site.getsitepackages(), site.getusersitepackages()}
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in installed and root not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([root, *paths])


class ExecutorSlots:
    """Any concurrent.futures Executor (e.g. Dask's) with a fixed number of slots."""

    def __init__(self, executor: Executor, size: int):
        self.executor, self.size, self.running = executor, size, set()

    @property
    def capacity(self) -> int:
        return self.size - len(self.running)

    def submit(self, fn: Callable, *args) -> Future:
        future = self.executor.submit(fn, *args)
        self.running.add(future)
        return future

    def done(self, future: Future) -> str | None:
        self.running.discard(future)
        return None

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.running.clear()


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


class Runner:
    """Claims queued trials (of one search, or all) and runs them until stopped."""

    def __init__(
        self,
        settings: RunnerSettings,
        slots: ProcessSlots | ExecutorSlots,
        search_id: int | None = None,
        keep_slots: bool = False,
    ):
        """keep_slots: leave the worker processes running at close, for a later runner."""
        self.settings, self.slots, self.search_id = settings, slots, search_id
        self.keep_slots = keep_slots
        self.engine = store.process_engine(settings.database_url)
        self.session = Session(self.engine)
        self.stopping = threading.Event()
        self.futures: dict[Future, tuple[int, int]] = {}  # future -> (trial id, attempt)
        self.chores: set[Future] = set()  # plots drawn in idle time
        self.name = f"{worker_name()}/runner"

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
        self.recover()
        last_beat = time.monotonic()
        try:
            while not self.stopping.is_set():
                self.claim()
                if until_done and not self.futures and self.search_finished():
                    if on_end is not None:
                        on_end()
                        on_end = None
                    if not self.chores:
                        break
                for future in self.wait_for_work():
                    self.reap(future)
                if time.monotonic() - last_beat >= self.settings.heartbeat_seconds:
                    store.touch_heartbeats(self.session, [t for t, _ in self.futures.values()])
                    self.recover()
                    last_beat = time.monotonic()
                if on_tick:
                    on_tick()
        finally:
            self.close()

    def wait_for_work(self) -> set[Future]:
        """Sleep until a future finishes or a poll interval passes (no busy loop when idle)."""
        pending = [*self.futures, *self.chores]
        if not pending:
            self.stopping.wait(self.settings.poll_seconds)
            return set()
        done, _ = wait(pending, timeout=self.settings.poll_seconds, return_when=FIRST_COMPLETED)
        return done

    def stop(self) -> None:
        """Ask the loop to end (safe from a signal handler or another thread)."""
        self.stopping.set()

    def recover(self) -> None:
        """Re-queue trials whose runner stopped sending heartbeats."""
        bound = store.stale_bound(self.settings.stale_after_seconds)
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
        """Fill the free slots with queued trials."""
        claimed = store.claim_trials(
            self.session, self.slots.capacity, search_id=self.search_id, worker=self.name
        )
        for trial_id, attempt in claimed:
            future = self.slots.submit(
                run_trial, trial_id, attempt, self.settings.database_url, self.settings.data_dir
            )
            self.futures[future] = (trial_id, attempt)
        if not claimed and self.slots.capacity:
            self.draw_pending_plots()

    def draw_pending_plots(self) -> None:
        """With nothing to train, draw the plots that short trials left for later.

        A slot takes a few at a time, so that it is soon free again when trials are queued.
        The runner of one search (the command line, waiting for them) draws its search's
        on every idle slot, side by side; the server's runner draws any search's on one slot
        at a time, leaving the other cores to the web server: nobody waits for those, and a
        page that needs one draws it.
        """
        while self.slots.capacity and (self.search_id is not None or not self.chores):
            trial_ids = store.take_pending_plots(self.session, PLOTS_PER_CHORE, self.search_id)
            if not trial_ids:
                return
            self.chores.add(
                self.slots.submit(
                    draw_plots, trial_ids, self.settings.database_url, self.settings.data_dir
                )
            )

    def reap(self, future: Future) -> None:
        """Record how a trial's future ended: a raised error or a dead worker is a crash."""
        if future in self.chores:
            self.chores.discard(future)
            self.slots.done(future)
            if future.exception():  # a plot can still be drawn when first asked for
                log.warning("drawing plots failed: %s", future.exception())
            return
        trial_id, attempt = self.futures.pop(future)
        death = self.slots.done(future)
        error = future.exception()
        if error is None:
            return
        message = death or f"{type(error).__name__}: {error}"
        status = store.record_crash(
            self.session, trial_id, attempt, message, self.settings.max_attempts
        )
        log.warning("trial %d attempt %d crashed (%s): now %s", trial_id, attempt, message, status)

    def search_finished(self) -> bool:
        """Whether the runner's search (or, for all searches, every one) has ended."""
        return store.nothing_left(self.session, self.search_id)

    def close(self) -> None:
        """Stop the workers; trials they were running are re-queued for the next start."""
        running = [t for t, _ in self.futures.values()]
        if running or not self.keep_slots:
            self.slots.shutdown()
        self.futures.clear()
        self.chores.clear()
        if running:
            store.requeue_interrupted(
                self.session, trial_ids=running, max_interruptions=self.settings.max_interruptions
            )
        self.session.close()
        self.engine.dispose()

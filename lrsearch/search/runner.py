"""The runner: claims queued trials and runs them on a pool of worker processes."""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import pickle
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing.process import BaseProcess

from sqlalchemy.orm import Session

from lrsearch.search import store
from lrsearch.search.forkserver_start import one_blas_thread_in_children, start_fork_server
from lrsearch.search.worker import draw_plots, run_trial, serve, worker_name

log = logging.getLogger(__name__)
PLOTS_PER_CHORE = 2  # plots an idle slot draws at a time: about 0.15 s, then it is free again


class ProcessSlots:
    """`size` worker processes, each running the calls sent down a pipe of its own, one at a
    time: a killed worker breaks its own slot, no other.

    One thread of the runner reads every worker's replies, notices a worker's death and
    completes the futures: a call costs the runner one write to a pipe, its reply one
    wake-up of that thread. A ProcessPoolExecutor per slot had kept two threads a slot (its
    manager and its queue's feeder), a call passing through both, and a worker that died
    idle had broken its executor for good. Digits searches ran 2-3 % faster this way (the
    gap between a worker's trials 0.76-0.96 -> 0.67-0.78 ms).
    """

    def __init__(self, size: int, start_method: str = "forkserver"):
        # Children import NumPy afresh (no fork of this process): one BLAS thread from the start.
        one_blas_thread_in_children()
        self.context = multiprocessing.get_context(start_method)
        if start_method == "forkserver":
            # The fork server imports the worker's modules once (1-2 s of CPU); each worker
            # is then a cheap fork of it instead of a fresh interpreter importing them again.
            # Started now, unless the command line started it already (forkserver_start).
            start_fork_server()
        self.slots: list[_Worker | None] = [None] * size
        self.running: dict[Future, int] = {}  # future -> slot
        self._reader: threading.Thread | None = None
        self._reader_lock = threading.Lock()
        self._wake_reader, self._waking = self.context.Pipe(duplex=False)

    @property
    def capacity(self) -> int:
        return len(self.slots) - len(self.running)

    def start(self) -> None:
        """Start every worker process now, so the first trials pay no process start."""
        for slot in range(len(self.slots)):
            self._worker(slot)

    def _worker(self, slot: int) -> _Worker:
        """The slot's worker, started if the slot has none or had one that died idle."""
        worker = self.slots[slot]
        if worker is not None and worker.dead:
            log.warning("%s while idle (pid %s)", worker.death(), worker.process.pid)
            worker = None
        if worker is None:
            worker = self.slots[slot] = _Worker(self.context)
            self._watch()
        return worker

    def submit(self, fn: Callable, *args) -> Future:
        """Run fn(*args) in a free slot."""
        slot = next(i for i in range(len(self.slots)) if i not in self.running.values())
        future = self._worker(slot).call(fn, args)
        self.running[future] = slot
        return future

    def done(self, future: Future) -> str | None:
        """Free the future's slot; if its process died, replace it and say how it died."""
        slot = self.running.pop(future)
        if not isinstance(future.exception(), BrokenProcessPool):
            return None
        worker, self.slots[slot] = self.slots[slot], None
        self._watch()
        return worker.death()

    def shutdown(self) -> None:
        """Stop every worker now, running trials included."""
        workers = [worker for worker in self.slots if worker is not None]
        for worker in workers:
            worker.process.kill()
        for worker in workers:
            worker.process.join()
            worker.died("the pool was shut down")
        self.slots = [None] * len(self.slots)
        self.running.clear()
        self._watch()

    def processes(self) -> list[BaseProcess]:
        """The worker processes of the slots started so far."""
        return [worker.process for worker in self.slots if worker is not None]

    def _watch(self) -> None:
        """Have the reader watch the slots' workers as they are now (it starts, or wakes)."""
        with self._reader_lock:
            if self._reader is None:
                self._reader = threading.Thread(
                    target=self._read, name="worker-replies", daemon=True
                )
                self._reader.start()
            else:
                self._waking.send_bytes(b"")

    def _read(self) -> None:
        """The reader: complete each call's future as its worker replies or dies; it ends
        when no worker is left to watch."""
        while True:
            with self._reader_lock:
                workers = [w for w in self.slots if w is not None and not w.dead]
                if not workers:
                    self._reader = None
                    return
            by_handle = {self._wake_reader: None}
            for worker in workers:
                by_handle[worker.connection] = by_handle[worker.process.sentinel] = worker
            ready = multiprocessing.connection.wait(list(by_handle))
            if self._wake_reader in ready:
                while self._wake_reader.poll():
                    self._wake_reader.recv_bytes()
            for handle in ready:  # replies first: a worker may reply, then exit
                if isinstance(handle, multiprocessing.connection.Connection) and by_handle[handle]:
                    by_handle[handle].read_replies()
            for handle in ready:
                if isinstance(handle, int):  # a sentinel: the process has ended
                    worker = by_handle[handle]
                    worker.read_replies()
                    worker.died(worker.death())


class _Worker:
    """One worker process, the pipe it takes calls on and replies on, and its calls sent."""

    def __init__(self, context):
        self.connection, theirs = context.Pipe()
        self.process = context.Process(
            target=serve, args=(theirs, os.getpid()), name="lrsearch-worker", daemon=True
        )
        self.process.start()
        theirs.close()
        self.calls: deque[Future] = deque()  # sent and not yet answered, oldest first
        self.lock = threading.Lock()
        self.dead = False

    def call(self, fn: Callable, args: tuple) -> Future:
        """Send fn(*args) to the process; its future completes when the process replies."""
        future = Future()
        future.set_running_or_notify_cancel()
        with self.lock:
            if self.dead:
                future.set_exception(BrokenProcessPool("worker process died"))
                return future
            self.calls.append(future)
            try:
                self.connection.send((fn, args))
            except OSError as exc:  # the process is gone: its slot is replaced when done
                self.calls.remove(future)
                future.set_exception(BrokenProcessPool(f"worker process gone ({exc})"))
            except Exception as exc:  # fn or its arguments cannot be pickled
                self.calls.remove(future)
                future.set_exception(exc)
        return future

    def read_replies(self) -> None:
        """Complete the futures of the replies waiting in the pipe (the reader's thread)."""
        while True:
            try:
                if not self.connection.poll():
                    return
                reply = self.connection.recv_bytes()
            except (EOFError, OSError):  # it died while replying: its sentinel says so next
                return
            with self.lock:
                future = self.calls.popleft()
            try:
                ok, value = pickle.loads(reply)
            except Exception as exc:  # e.g. an error whose class cannot be rebuilt here
                ok, value = False, RuntimeError(f"the worker's reply could not be read: {exc}")
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    def death(self) -> str:
        """How the process died, once reaped (it has ended, or is about to)."""
        self.process.join(timeout=2)
        return f"worker process died (exit code {self.process.exitcode})"

    def died(self, reason: str) -> None:
        """Fail the calls it had not answered."""
        with self.lock:
            self.dead = True
            calls, self.calls = list(self.calls), deque()
        for future in calls:
            future.set_exception(BrokenProcessPool(reason))


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

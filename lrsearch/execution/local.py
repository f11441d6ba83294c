"""The local pool: worker processes forked from a fork server, one slot each."""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import pickle
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.process import BaseProcess

from lrsearch.execution.forkserver import one_blas_thread_in_children, start_fork_server
from lrsearch.execution.process import serve

log = logging.getLogger(__name__)


class ProcessSlots:
    """`size` worker processes, each running the calls sent down a pipe of its own, one at a
    time: a killed worker breaks its own slot, no other.

    One thread of the runner reads every worker's replies, notices a worker's death and
    completes the futures: a call costs the runner one write to a pipe, its reply one
    wake-up of that thread. (A ProcessPoolExecutor per slot kept two threads a slot, a call
    passing through both, and a worker that died idle broke its executor for good.)
    """

    def __init__(self, size: int):
        # Children import NumPy afresh (no fork of this process): one BLAS thread from the start.
        one_blas_thread_in_children()
        self.context = multiprocessing.get_context("forkserver")
        # The fork server imports the worker's modules once; each worker is then a cheap
        # fork of it instead of a fresh interpreter importing them again. Started now,
        # unless the command line started it already (forkserver.start_for_command).
        start_fork_server()
        self.slots: list[_Worker | None] = [None] * size
        self.running: dict[Future, int] = {}  # future -> slot
        self._reader: threading.Thread | None = None
        self._reader_lock = threading.Lock()
        self._wake_reader, self._waking = self.context.Pipe(duplex=False)

    @property
    def capacity(self) -> int:
        """Free slots."""
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

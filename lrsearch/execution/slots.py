"""The seam between the runner and whatever runs its trials.

The runner asks only for `Slots`: how many calls it may start now, starting one, being
told that one ended, and stopping. `local.ProcessSlots` (worker processes of this machine)
and `ExecutorSlots` (any concurrent.futures Executor) implement it, and `cluster.DaskSlots`
(the workers of a Dask cluster).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Protocol


class Interrupted(Exception):
    """A call stopped by no fault of its own (a remote scheduler lost): its trial is
    re-queued as a dead runner's are, no attempt counted."""


class Slots(Protocol):
    """Places to run calls, one call a place at a time."""

    @property
    def capacity(self) -> int:
        """How many more calls may be submitted now."""

    def submit(self, fn: Callable, *args) -> Future:
        """Run fn(*args) in a free place; its future completes with the call."""

    def done(self, future: Future) -> str | None:
        """Free the future's place; say how its process died, if it did (else None).

        A future that ended in Interrupted was stopped by no fault of its own (see there).
        Slots with `remote = True` share no disk with the runner (see execution.cluster);
        slots may say what they are for the dashboard with `describe()`.
        """

    def shutdown(self) -> None:
        """Stop every call now, running ones included, and free every place."""


class ExecutorSlots:
    """Slots over any concurrent.futures Executor, with a fixed number of them."""

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

"""Slots on a Dask cluster: the runner's trials run on `distributed` workers.

Imported only where a scheduler is configured (LRSEARCH_DASK_SCHEDULER, --dask-scheduler):
the embedded default never imports Dask. Capacity is one trial per worker thread, read
again as workers join and leave; a worker whose lrsearch is not the runner's is refused
(named, with both versions) and gets no trial. The workers share no disk with the runner:
trials write to the database only, and stored data sets are shipped through Dask (ship).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from urllib.parse import urlsplit

import lrsearch
from lrsearch.datasets import cache
from lrsearch.execution import version_probe
from lrsearch.execution.cluster_worker import dataset_key
from lrsearch.execution.slots import Interrupted

log = logging.getLogger(__name__)
CONNECT_SECONDS = 5.0  # how long a (re)connection may wait for the scheduler
RECONNECT_EVERY = 5.0  # seconds between tries while the scheduler is gone
REFRESH_EVERY = 1.0  # seconds between reads of the cluster's workers


class ClusterUnreachable(RuntimeError):
    """No scheduler answered at the address."""


def is_loopback(address: str) -> bool:
    """Whether a scheduler address is this machine's only (then so are its workers)."""
    host = urlsplit(address if "://" in address else f"tcp://{address}").hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


class DaskSlots:
    """Slots on the workers of the Dask scheduler at `address`."""

    remote = True  # no disk shared with the runner: see cluster_worker

    def __init__(self, address: str, data_dir: str, *, wait_for_scheduler: bool = False):
        import cloudpickle

        # The probe travels by value: a worker answers it even without lrsearch.
        cloudpickle.register_pickle_by_value(version_probe)
        self.address, self.data_dir = address, data_dir
        self.client = None
        self.running: dict[Future, object] = {}  # our future -> Dask's
        self.accepted: dict[str, int] = {}  # worker address -> threads
        self.refused: dict[str, str] = {}  # worker address -> why
        self.shipped: dict[str, object] = {}  # sha256 -> Dask future of the files
        self.problem: str | None = None
        self._last_try = self._refreshed = -1e9
        if not self._connect() and not wait_for_scheduler:
            raise ClusterUnreachable(self.problem)

    # ---- the connection ----------------------------------------------------------------

    def _connect(self) -> bool:
        from distributed import Client

        self._last_try = time.monotonic()
        try:
            client = Client(self.address, timeout=CONNECT_SECONDS, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            self.problem = f"Dask scheduler {self.address} unreachable ({exc}); retrying"
            return False
        self.client, self.problem = client, None
        self.accepted.clear()
        self.refused.clear()
        self.shipped.clear()  # a new scheduler knows nothing of what was sent
        self._refreshed = -1e9
        log.info("connected to the Dask scheduler %s", self.address)
        return True

    def _connected(self) -> bool:
        """Whether the client is up; while the scheduler is gone, try again now and then."""
        if self.client is not None and self.client.status == "running":
            return True
        if self.client is not None and self.client.status == "connecting":
            self.problem = f"Dask scheduler {self.address} lost; reconnecting"
            return False  # the client's own reconnection is under way
        if self.client is not None:  # it gave up: a new one
            log.warning("Dask scheduler %s lost; retrying every %gs", self.address,
                        RECONNECT_EVERY)  # fmt: skip
            self._close_client()
            self.problem = f"Dask scheduler {self.address} lost; retrying"
        if time.monotonic() - self._last_try < RECONNECT_EVERY:
            return False
        return self._connect()

    def _refresh_workers(self) -> None:
        """Read the cluster's workers; ask each new one its lrsearch version."""
        self._refreshed = time.monotonic()
        try:
            workers = self.client.scheduler_info(n_workers=-1)["workers"]
            new = [w for w in workers if w not in self.accepted and w not in self.refused]
            versions = self.client.run(version_probe.installed_version, workers=new) if new else {}
        except (OSError, TimeoutError) as exc:
            log.warning("reading the Dask workers failed: %s", exc)
            return
        for gone in (set(self.accepted) | set(self.refused)) - set(workers):
            self.accepted.pop(gone, None)
            self.refused.pop(gone, None)
        for address, version in versions.items():
            if version == lrsearch.__version__:
                self.accepted[address] = int(workers[address].get("nthreads", 1))
                continue
            found = f"lrsearch {version}" if version else "no lrsearch"
            reason = (f"Dask worker {address} refused: it has {found}, the runner "
                      f"lrsearch {lrsearch.__version__}")  # fmt: skip
            self.refused[address] = reason
            log.warning(reason)

    # ---- Slots ---------------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        """Free worker threads of the accepted workers (none while the scheduler is gone)."""
        if not self._connected():
            return 0
        if time.monotonic() - self._refreshed >= REFRESH_EVERY:
            self._refresh_workers()
        return max(0, sum(self.accepted.values()) - len(self.running))

    def submit(self, fn: Callable, *args) -> Future:
        """Run fn(*args) on an accepted worker. A task whose worker died Dask starts again
        elsewhere; a trial's refuses to run twice (see store.attempts.AttemptTaken).

        Tasks are tied to the accepted workers only while some worker is refused: a tied
        task whose workers all died would wait for them for ever (a restarted worker comes
        back at a new address, to be probed first).
        """
        where = {"workers": list(self.accepted), "allow_other_workers": False}
        task = self.client.submit(fn, *args, pure=False, retries=0,
                                  **(where if self.refused else {}))  # fmt: skip
        future: Future = Future()
        future.set_running_or_notify_cancel()
        task.add_done_callback(lambda done: _settle(done, future))
        self.running[future] = task
        return future

    def done(self, future: Future) -> str | None:
        """Free the future's place; say how it died where it did not end by itself."""
        self.running.pop(future, None)
        error = future.exception()
        if isinstance(error, Interrupted):
            return error.args[0]
        if type(error).__name__ == "KilledWorker":
            return f"its Dask workers died: {error}"
        return None

    def shutdown(self) -> None:
        """Cancel the running tasks (a running one stops at its next epoch: its trial is
        re-queued, and its writes refused) and close the connection."""
        if self.client is not None and self.running:
            try:
                self.client.cancel(list(self.running.values()))
            except Exception as exc:  # the scheduler may be gone already
                log.warning("cancelling the Dask tasks failed: %s", exc)
        self.running.clear()
        self._close_client()

    def _close_client(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            try:
                client.close(timeout=CONNECT_SECONDS)
            except Exception as exc:
                log.warning("closing the Dask client: %s", exc)

    # ---- what only a cluster needs -------------------------------------------------------

    def ship(self, datasets: list[tuple[str, str]]) -> None:
        """Send the stored data sets (name, sha256) that the cluster has not had yet: their
        files scattered to one worker, published under their sha256 for the others."""
        for name, sha256 in datasets:
            if sha256 in self.shipped or self.client is None:
                continue
            files = cache.array_files(self.data_dir, name)
            [future] = self.client.scatter([files], hash=False)
            self.client.publish_dataset(future, name=dataset_key(sha256), override=True)
            self.shipped[sha256] = future
            log.info("sent data set %s (%d bytes) to the cluster", name,
                     sum(len(v) for v in files.values()))  # fmt: skip

    def describe(self) -> dict[str, object]:
        """What the dashboard shows of the executor."""
        link = None
        if self.client is not None:
            try:
                link = self.client.dashboard_link
            except Exception:  # no dashboard on the scheduler
                link = None
        problems = [p for p in [self.problem, *self.refused.values()] if p]
        return {
            "executor": "dask",
            "address": self.address,
            "workers": sum(self.accepted.values()),
            "dashboard_url": link,
            "problem": "; ".join(problems) or None,
        }


def _settle(task, future: Future) -> None:
    """Copy how a Dask task ended onto our future (on Dask's callback thread). A task
    cancelled by a lost scheduler is an interruption, not the trial's failure."""
    if task.status == "finished":
        future.set_result(task.result())
    elif task.status == "cancelled":
        future.set_exception(Interrupted("the runner lost the Dask scheduler while it ran"))
    else:
        future.set_exception(task.exception())

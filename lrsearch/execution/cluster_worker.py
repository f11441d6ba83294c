"""What a Dask worker runs for the runner: one trial, with no disk shared with the runner.

The trial's epochs go to the database only; its log.txt and plot are written on the
runner's side from the database (see execution.plots). A stored data set arrives through
Dask: the runner scatters its files once and publishes them under their sha256
(cluster.DaskSlots.ship); a worker without that copy gets them from the cluster, checks the
sha256 the database gives, and keeps them in its own data folder for the next trial.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import lrsearch
from lrsearch.datasets import cache
from lrsearch.execution.worker import run_trial, worker_engine, worker_name
from lrsearch.store.datasets import stored_dataset_of_trial


class VersionMismatch(RuntimeError):
    """This worker's lrsearch is not the runner's."""


def dataset_key(sha256: str) -> str:
    """The name a data set's files are published under on the cluster."""
    return f"lrsearch-dataset-{sha256}"


def worker_data_dir() -> str:
    """This machine's data folder for a worker: LRSEARCH_DATA_DIR where set (a machine that
    is also the runner's then needs no copy), else one in the temporary folder."""
    folder = os.environ.get("LRSEARCH_DATA_DIR") or str(
        Path(tempfile.gettempdir()) / f"lrsearch-worker-{os.getuid()}"
    )
    os.makedirs(folder, exist_ok=True)
    return folder


def one_thread() -> None:
    """One BLAS and one Numba thread: a worker thread runs one trial (Dask's nanny sets the
    BLAS variables for new workers, not NUMBA_NUM_THREADS, and not for an existing pool)."""
    from threadpoolctl import threadpool_limits

    from lrsearch.execution.process import limit_blas

    limit_blas()
    threadpool_limits(1)
    try:
        import numba

        numba.set_num_threads(1)
    except (ImportError, ValueError):  # no Numba, or its layer forbids changing it
        pass


def run_trial_on_worker(
    trial_id: int,
    attempt: int,
    database_url: str,
    claimed_by: str,
    runner_version: str,
    checkpoint_seconds: float = 0.0,
) -> str:
    """Run a claimed trial here; its final status."""
    if lrsearch.__version__ != runner_version:
        raise VersionMismatch(
            f"{worker_name()} has lrsearch {lrsearch.__version__}, the runner {runner_version}"
        )
    one_thread()
    data_dir = worker_data_dir()
    with worker_engine(database_url).connect() as connection:
        name, sha256 = stored_dataset_of_trial(connection, trial_id)
    if sha256 is not None and cache.stored_sha256(data_dir, name) != sha256:
        receive_dataset(data_dir, name, sha256)
    return run_trial(trial_id, attempt, database_url, data_dir, claimed_by, False,
                     checkpoint_seconds)  # fmt: skip


def receive_dataset(data_dir: str, name: str, sha256: str) -> None:
    """Get a stored data set's files from the cluster and keep them here."""
    from distributed import worker_client

    with worker_client() as client:  # leaves the worker's thread pool while it waits
        files = client.get_dataset(dataset_key(sha256), default=None)
        if files is None:
            raise cache.DatasetError(f"data set {name!r} was not sent to the cluster")
        cache.install_arrays(data_dir, name, files.result(), sha256)

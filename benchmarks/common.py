"""What the benchmarks share: a throwaway app and a search run to its end."""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lrsearch import create_app  # noqa: E402
from lrsearch.cli import runner_settings  # noqa: E402
from lrsearch.datasets.cache import datasets_root  # noqa: E402
from lrsearch.execution.local import ProcessSlots  # noqa: E402
from lrsearch.execution.process import warm_up  # noqa: E402
from lrsearch.extensions import db  # noqa: E402
from lrsearch.models import Search  # noqa: E402
from lrsearch.search.runner import Runner  # noqa: E402
from lrsearch.search.sampler import create_search  # noqa: E402
from lrsearch.settings import parse_spec  # noqa: E402
from lrsearch.training.datasets import clear_dataset_cache, load_dataset  # noqa: E402


@contextmanager
def bench_app(datasets: Path | None = None, **config):
    """An app on a fresh data folder with the schema applied.

    datasets: a folder to use as the app's datasets folder (see `shared_datasets`), so that
    a synthetic data set generated once serves every app of a benchmark.
    """
    from flask_migrate import upgrade

    with tempfile.TemporaryDirectory(prefix="lrsearch-bench-") as data_dir:
        if datasets is not None:
            datasets_root(data_dir).symlink_to(datasets, target_is_directory=True)
        app = create_app({"DATA_DIR": data_dir, "SECRET_KEY": "bench", **config})
        with app.app_context():
            upgrade(directory=app.config["MIGRATIONS_DIR"])
            yield app
            db.session.remove()
            db.engine.dispose()


@contextmanager
def shared_datasets(*specs: str):
    """A datasets folder in which each synthetic spec is already generated and cached.

    Generating 60,000 x 784 takes about a second, once per data folder and never again;
    benchmarks of the steady state generate it here, before any timing.
    """
    with tempfile.TemporaryDirectory(prefix="lrsearch-bench-datasets-") as folder:
        for spec in specs:
            load_dataset(spec, folder, seed=0)
        clear_dataset_cache()
        yield Path(folder)


def run_search(
    app, workers: int, *, slots: ProcessSlots | None = None, **settings
) -> tuple[float, float, Search]:
    """Create a search and run it to its end, as the command line does.

    Returns the wall seconds from its creation until its last trial ended, and until the
    runner returned (the plots that short trials left for later drawn by then), and the
    search. It runs on `workers` fresh processes, or on `slots` given, which are left
    running for the next search (the server's case: its runner keeps its pool).
    """
    spec = parse_spec({**settings, "workers": workers}, app.config)
    started = time.perf_counter()
    search = create_search(db.session, spec)
    kept = slots is not None
    runner = Runner(
        runner_settings(app), KeptSlots(slots) if kept else ProcessSlots(workers), search.id
    )
    ended = []
    runner.run(until_done=True, on_end=lambda: ended.append(time.perf_counter() - started))
    returned = time.perf_counter() - started
    db.session.expire_all()
    return ended[0], returned, db.session.get(Search, search.id)


class KeptSlots:
    """Slots that outlive the runner that used them, as the server's pool outlives a search:
    its shutdown stops the workers only if it leaves calls unfinished."""

    def __init__(self, slots: ProcessSlots):
        self.slots = slots

    def __getattr__(self, name: str):
        return getattr(self.slots, name)

    @property
    def capacity(self) -> int:
        return self.slots.capacity

    def shutdown(self) -> None:
        if self.slots.running:
            self.slots.shutdown()


def start_fork_server() -> float:
    """Start the fork server every pool forks from; seconds until a worker answered.

    It imports the worker's modules and prepares plotting once, for every later pool;
    benchmarks of searches start it before any timing, as a runner does once.
    """
    started = time.perf_counter()
    slots = ProcessSlots(1)
    try:
        slots.submit(warm_up).result()
    finally:
        slots.shutdown()
    return time.perf_counter() - started


def machine() -> str:
    """One line about this machine."""
    cores = os.cpu_count()
    return f"{platform.machine()}, {cores} cores, Python {platform.python_version()}"

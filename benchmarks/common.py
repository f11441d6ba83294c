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
from lrsearch.extensions import db  # noqa: E402
from lrsearch.models import Search  # noqa: E402
from lrsearch.search import store  # noqa: E402
from lrsearch.search.runner import ProcessSlots, Runner  # noqa: E402
from lrsearch.search.spec import parse_spec  # noqa: E402


@contextmanager
def bench_app(**config):
    """An app on a fresh data folder with the schema applied."""
    from flask_migrate import upgrade

    with tempfile.TemporaryDirectory(prefix="lrsearch-bench-") as data_dir:
        app = create_app({"DATA_DIR": data_dir, "SECRET_KEY": "bench", **config})
        with app.app_context():
            upgrade(directory=app.config["MIGRATIONS_DIR"])
            yield app
            db.session.remove()
            db.engine.dispose()


def run_search(app, workers: int, **settings) -> tuple[float, Search]:
    """Create a search and run it to its end on `workers` fresh processes; wall seconds."""
    spec = parse_spec({**settings, "workers": workers}, app.config)
    started = time.perf_counter()
    search = store.create_search(db.session, spec)
    Runner(runner_settings(app), ProcessSlots(workers), search.id).run(until_done=True)
    wall = time.perf_counter() - started
    db.session.expire_all()
    return wall, db.session.get(Search, search.id)


def machine() -> str:
    """One line about this machine."""
    cores = os.cpu_count()
    return f"{platform.machine()}, {cores} cores, Python {platform.python_version()}"

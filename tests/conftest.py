"""Fixtures: an app on a temporary data folder, its clients, and a finished-search factory."""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy.exc import OperationalError

from lrsearch import create_app, testing
from lrsearch.extensions import db
from lrsearch.models import COMPLETED, DIVERGED, Epoch, Search
from lrsearch.search.sampler import create_search
from lrsearch.settings import SearchSpec
from lrsearch.testing import CHROMIUM


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Without Chromium, skip the browser tests, except in CI, where they must run."""
    if Path(CHROMIUM).exists() or os.environ.get("CI"):
        return
    skip = pytest.mark.skip(reason=f"{CHROMIUM} is missing: apt-get install chromium")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def app_config(tmp_path) -> dict:
    """Settings of the test app; a test may change them before `app` is built."""
    return {
        "TESTING": True,
        "DATA_DIR": str(tmp_path / "data"),
        "WORKERS": 2,
        "SECRET_KEY": "test-only",
        "WTF_CSRF_ENABLED": False,
        "HEARTBEAT_SECONDS": 0.5,
        "STALE_AFTER_SECONDS": 3.0,
    }


@pytest.fixture
def app(app_config) -> Iterator[Flask]:
    """The dashboard on a fresh, migrated SQLite database."""
    from flask_migrate import upgrade

    app = create_app(app_config)
    with app.app_context():
        upgrade(directory=app.config["MIGRATIONS_DIR"])
        yield app
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def cli(app) -> FlaskCliRunner:
    return app.test_cli_runner()


@pytest.fixture
def make_search(app) -> Callable[..., Search]:
    """Store a finished search with synthetic curves (no training), for pages and API."""

    def make(trials: int = 4, epochs: int = 5, diverge: int | None = None, **spec) -> Search:
        search = create_search(db.session, SearchSpec(trials=trials, epochs=epochs, **spec))
        for trial in search.trials:
            steps = epochs if trial.index != diverge else max(epochs // 2, 1)
            history = []
            for e in range(1, steps + 1):
                skill = 1 - math.exp(-e * trial.lr * 300)
                row = {
                    "epoch": e,
                    "loss": 2.3 * (1 - skill) + 0.05,
                    "acc_train": 0.1 + 0.89 * skill,
                    "val_loss": 2.3 * (1 - skill) + 0.1,
                    "acc_val": 0.1 + 0.85 * skill,
                    "seconds": 0.01,
                }
                history.append(row)
                db.session.add(Epoch(trial_id=trial.id, attempt=1, **row))
            best = max(history, key=lambda r: r["acc_val"])
            trial.attempt, trial.epochs_done = 1, steps
            trial.status = DIVERGED if trial.index == diverge else COMPLETED
            trial.best_val_acc, trial.best_epoch = best["acc_val"], best["epoch"]
            trial.final_acc_train = history[-1]["acc_train"]
            trial.final_val_acc = history[-1]["acc_val"]
            trial.final_val_loss = trial.min_val_loss = history[-1]["val_loss"]
            trial.final_loss = history[-1]["loss"]
        search.status = COMPLETED
        db.session.commit()
        return search

    return make


POSTGRES_SERVER = os.environ.get("LRSEARCH_TEST_POSTGRES", testing.POSTGRES_SERVER)


@pytest.fixture
def postgres_url():
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    with ExitStack() as stack:
        try:
            url = stack.enter_context(testing.fresh_postgres(POSTGRES_SERVER))
        except OperationalError as exc:
            if os.environ.get("CI"):
                raise
            pytest.skip(f"no PostgreSQL server at {POSTGRES_SERVER}: {exc.orig}")
        yield url


@pytest.fixture
def on_postgresql(app_config, postgres_url) -> None:
    """Put `app` (and what is built on it) on a fresh PostgreSQL database.

    Request it before `app`: with @pytest.mark.usefixtures, or first among a fixture's
    arguments.
    """
    app_config["DATABASE_URL"] = postgres_url


@pytest.fixture
def mirror(app):
    """A local mirror serving generated MNIST files (tests/test_fetch.py's), their md5s
    given through the configuration, a mirror answering 404 tried first."""

    from tests.test_fetch import MD5S, _Server

    httpd = _Server()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    app.config["DATASET_MIRRORS"] = f"{httpd.url('missing')}, {httpd.url('{name}')}"
    app.config["DATASET_CHECKSUMS"] = MD5S
    app.config["DATASET_TIMEOUT"] = 2.0
    yield httpd
    httpd.release.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join()

"""A database outage under a running search (issue 22): a throwaway PostgreSQL cluster,
started by the test itself, stopped for 10 s and started again, and SQLite's file on a disk
out of reach for 5 s (tests/unreachable_disk.py); the search's trials train on meanwhile
and end `completed` on their first attempt, every epoch once, while the API answers 503
JSON."""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from lrsearch import create_app
from lrsearch.extensions import db
from lrsearch.models import COMPLETED, Epoch, Search
from lrsearch.search.sampler import create_search
from lrsearch.settings import SearchSpec
from lrsearch.testing import free_port
from tests.faults import RunnerThread, trials, wait_for
from tests.unreachable_disk import UnreachableDisk

pytestmark = pytest.mark.slow
BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))


class Cluster:
    """A PostgreSQL cluster of the test's own (initdb as the postgres user, on a free port),
    so the machine's cluster is left alone."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="lrsearch-pg-"))
        shutil.chown(self.folder, "postgres")
        self.data, self.port = self.folder / "data", free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self.postgres(["initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
                       "--no-sync"])  # fmt: skip

    def postgres(self, command: list[str]) -> None:
        program = str(Path(BIN[-1]) / command[0])
        subprocess.run(["runuser", "-u", "postgres", "--", program, *command[1:]], check=True,
                       capture_output=True, cwd=self.folder)  # fmt: skip

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.postgres(["pg_ctl", "-D", str(self.data), "-o", options, "-l",
                       str(self.folder / "log"), "-w", "start"])  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self.postgres(["pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop"])

    def remove(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass  # stopped already
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture
def cluster():
    if os.geteuid() != 0 or not BIN or not shutil.which("runuser"):
        pytest.skip("needs root, runuser and the PostgreSQL server's programs")
    made = Cluster()
    made.start()
    yield made
    made.remove()


@pytest.fixture
def disk(tmp_path):
    if reason := UnreachableDisk.available():
        pytest.skip(reason)
    with UnreachableDisk(tmp_path / "disk") as made:
        yield made


@pytest.mark.postgres
def test_postgresql_stopped_for_10_s_under_a_search_costs_no_attempt(cluster, tmp_path):
    ride_out_an_outage(tmp_path, cluster.url, cluster.stop, cluster.start, seconds=10)


def test_sqlites_file_out_of_reach_for_5_s_under_a_search_costs_no_attempt(disk, tmp_path):
    """The database file on a disk that answers "Transport endpoint is not connected" to
    every operation, open files' too, as a network disk that lost its server."""
    url = f"sqlite:///{disk.folder / 'lrsearch.sqlite3'}"
    ride_out_an_outage(tmp_path / "data", url, disk.down, disk.up, seconds=5)


def ride_out_an_outage(data_dir, url: str, stop, start, seconds: float) -> None:
    """A search of two trials of 16 epochs, whose database is stopped after their second
    epoch for `seconds`: the API answers 503 meanwhile, the trials train on and end
    `completed` on their first attempt, every epoch written once."""
    from flask_migrate import upgrade

    config = {"DATA_DIR": str(data_dir), "SECRET_KEY": "x", "DATABASE_URL": url,
              "HEARTBEAT_SECONDS": 0.5, "STALE_AFTER_SECONDS": 3.0}  # fmt: skip
    app = create_app(config)
    with app.app_context():
        upgrade(directory=app.config["MIGRATIONS_DIR"])
        spec = SearchSpec(dataset="synthetic:20000x64x10", hidden=[256, 256], trials=2,
                          epochs=16, workers=2, seed=5)  # fmt: skip
        search_id = create_search(db.session, spec).id
        client = app.test_client()
        with RunnerThread(app, workers=2, search_id=search_id):
            wait_for(lambda: all(t.epochs_done >= 2 for t in trials(search_id)), 120)
            db.session.remove()
            db.engine.dispose()  # the request below opens a connection of its own
            stop()
            stopped = time.monotonic()
            answer = client.get("/api/searches")
            assert answer.status_code == 503
            assert answer.get_json() == {"reason": "database unavailable"}
            assert answer.headers["Retry-After"]
            time.sleep(max(0.0, seconds - (time.monotonic() - stopped)))
            start()
            wait_for(lambda: db.session.get(Search, search_id).status == COMPLETED, 180)
        assert client.get("/api/searches").status_code == 200
        for trial in trials(search_id):
            assert (trial.status, trial.attempt, trial.crashes, trial.interruptions) == (
                COMPLETED, 1, 0, 0)  # fmt: skip
            epochs = db.session.execute(
                select(Epoch.epoch, Epoch.created_at, Epoch.seconds)
                .where(Epoch.trial_id == trial.id)
                .order_by(Epoch.epoch)
            ).all()
            assert [e.epoch for e in epochs] == list(range(1, 17))
            # Training went on during the outage: the epochs it held were written together
            # when the database was back, sooner after each other than an epoch trains.
            gaps = [(b.created_at - a.created_at).total_seconds() / b.seconds
                    for a, b in itertools.pairwise(epochs)]  # fmt: skip
            assert min(gaps) < 0.5, gaps
        assert db.session.scalar(select(func.count()).select_from(Epoch)) == 32
        db.session.remove()
        db.engine.dispose()

"""Many writer processes on one SQLite file while the API is polled."""

from __future__ import annotations

import multiprocessing
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from unittest import mock

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import OperationalError

from lrsearch import store
from lrsearch.extensions import db
from lrsearch.models import RUNNING, Epoch, Trial
from lrsearch.search.sampler import create_search
from lrsearch.settings import SearchSpec
from tests.faults import write_epochs

WRITERS, EPOCHS = 8, 650  # 5,200 rows


@pytest.mark.slow
def test_eight_writers_lose_and_duplicate_nothing_while_the_api_is_polled(app, client):
    search = create_search(db.session, SearchSpec(trials=WRITERS, epochs=EPOCHS, workers=WRITERS))
    db.session.execute(update(Trial).values(status=RUNNING, attempt=1))
    db.session.commit()
    # Read now: the poller thread must not touch this session's objects.
    search_id, trial_ids = search.id, [t.id for t in search.trials]
    statuses: list[int] = []
    done = threading.Event()

    def poll() -> None:
        with app.app_context():
            after = 0
            while not done.is_set():
                response = app.test_client().get(f"/api/searches/{search_id}/poll?after={after}")
                statuses.append(response.status_code)
                if response.status_code == 200:
                    after = response.get_json()["last_id"]
                time.sleep(0.1)

    poller = threading.Thread(target=poll)
    poller.start()
    context = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(WRITERS, mp_context=context) as pool:
            futures = [
                pool.submit(write_epochs, app.config["DATABASE_URL"], trial_id, EPOCHS)
                for trial_id in trial_ids
            ]
            results = [f.result(timeout=300) for f in futures]  # a "locked" error would raise
    finally:
        done.set()
        poller.join()
    assert results == [EPOCHS] * WRITERS
    rows = db.session.execute(select(Epoch.trial_id, Epoch.epoch)).all()
    assert len(rows) == WRITERS * EPOCHS  # none lost
    assert len(set(rows)) == len(rows)  # none duplicated
    assert len(statuses) > 5 and all(code == 200 for code in statuses)


def test_a_failed_commit_is_rolled_back_before_the_retry(app):
    """A COMMIT that fails with 'database is locked' leaves the transaction open."""
    calls: list[str] = []
    session = db.session()
    real_commit = session.commit

    def flaky_commit():
        calls.append("commit")
        if calls.count("commit") == 1:
            raise OperationalError("COMMIT", {}, Exception("database is locked"))
        real_commit()

    real_rollback = session.rollback

    def rollback():
        calls.append("rollback")
        real_rollback()

    search = create_search(db.session, SearchSpec(trials=1, epochs=1))
    with (
        mock.patch.object(session, "commit", flaky_commit),
        mock.patch.object(session, "rollback", rollback),
    ):
        store.cancel_search(session, search.id)
    assert calls[:3] == ["commit", "rollback", "commit"]
    assert db.session.execute(select(func.count()).select_from(Trial)).scalar_one() == 1
    assert db.session.get(Trial, search.trials[0].id).status == "cancelled"

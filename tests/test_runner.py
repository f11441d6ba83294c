"""The runner: two runners on one database run each trial once, an idle one polls without
spinning, and any executor will do for its workers."""

from __future__ import annotations

import itertools
import os
import threading
import time

import pytest
from sqlalchemy import select

from lrsearch import create_app, store
from lrsearch.extensions import db
from lrsearch.models import COMPLETED, Epoch
from lrsearch.search.sampler import create_search
from lrsearch.settings import SearchSpec
from tests.faults import (
    RunnerThread,
    claim_race,
    left_over_plots,
    search_status,
    take_plots_race,
    trials,
    wait_for,
)


@pytest.mark.slow
def test_two_runners_on_one_database_run_each_trial_once(app):
    search = create_search(db.session, SearchSpec(trials=8, epochs=5, workers=4))
    with RunnerThread(app, workers=2), RunnerThread(app, workers=2):
        wait_for(lambda: search_status(search.id) == COMPLETED, 120)
    assert all((t.status, t.attempt) == (COMPLETED, 1) for t in trials(search.id))
    rows = db.session.execute(select(Epoch.trial_id, Epoch.epoch)).all()
    assert len(rows) == len(set(rows)) == 8 * 5


@pytest.mark.postgres
@pytest.mark.slow
def test_postgresql_claims_and_two_runners(postgres_url, app_config):
    from flask_migrate import upgrade

    app = create_app({**app_config, "DATABASE_URL": postgres_url, "STALE_AFTER_SECONDS": 60})
    with app.app_context():
        try:
            upgrade(directory=app.config["MIGRATIONS_DIR"])
            race = create_search(db.session, SearchSpec(trials=30, epochs=1, workers=30))
            claimed = claim_race(postgres_url, race.id)
            assert sorted(claimed) == sorted(t.id for t in race.trials)
            pending = left_over_plots(race.id)
            assert sorted(take_plots_race(postgres_url, race.id)) == pending
            store.cancel_search(db.session, race.id)  # done with it
            search = create_search(db.session, SearchSpec(trials=6, epochs=4, workers=4))
            with RunnerThread(app, workers=2), RunnerThread(app, workers=2):
                wait_for(lambda: search_status(search.id) == COMPLETED, 120)
            assert all((t.status, t.attempt) == (COMPLETED, 1) for t in trials(search.id))
            rows = db.session.execute(
                select(Epoch.trial_id, Epoch.epoch).where(
                    Epoch.trial_id.in_([t.id for t in trials(search.id)])
                )
            ).all()
            assert len(rows) == len(set(rows)) == 6 * 4
        finally:
            db.session.remove()
            db.engine.dispose()  # no connection left for the server to drop


def test_an_idle_runner_sleeps_between_polls(app, monkeypatch):
    """With nothing queued the loop polls every poll_seconds; it never spins."""
    real_claim = store.claim_trials
    claimed_at: list[float] = []  # when each poll claimed (nothing), by the monotonic clock
    polled = threading.Event()

    def claim_trials(*args, **kwargs):
        claimed_at.append(time.monotonic())
        if len(claimed_at) == 3:
            polled.set()
        return real_claim(*args, **kwargs)

    monkeypatch.setattr(store, "claim_trials", claim_trials)
    with RunnerThread(app, workers=1) as runner:
        poll = runner.runner.settings.poll_seconds
        assert polled.wait(30), f"{len(claimed_at)} claim(s) in 30 s: the idle runner stopped"
    gaps = [later - earlier for earlier, later in itertools.pairwise(claimed_at[:3])]
    assert all(gap >= poll * 0.8 for gap in gaps), gaps  # each poll waited: no spinning


@pytest.mark.slow
def test_the_runner_takes_any_executor(app):
    """Beyond one machine the runner gets e.g. Dask's executor; any Executor will do."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from lrsearch.cli import runner_settings
    from lrsearch.execution.process import init_worker
    from lrsearch.execution.slots import ExecutorSlots
    from lrsearch.search.runner import Runner

    search = create_search(db.session, SearchSpec(trials=3, epochs=2, workers=3))
    executor = ProcessPoolExecutor(
        2,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=init_worker,
        initargs=(os.getpid(),),
    )
    Runner(runner_settings(app), ExecutorSlots(executor, 2), search.id).run(until_done=True)
    db.session.rollback()  # end the test's read snapshot: the runner wrote on its own engine
    assert search_status(search.id) == COMPLETED
    assert all((t.status, t.attempt) == (COMPLETED, 1) for t in trials(search.id))

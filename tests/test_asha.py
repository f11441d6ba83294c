"""ASHA end to end: the decision at a rung in the epoch's own transaction, two trials
reaching a rung together, a digits search whose slow rates are pruned, and the ranking."""

from __future__ import annotations

import threading
import time

import pytest

from lrsearch import store
from lrsearch.extensions import db
from lrsearch.models import COMPLETED, PRUNED
from lrsearch.scheduling import Rung
from lrsearch.search import ranking
from lrsearch.search.sampler import create_search
from lrsearch.settings import SearchSpec
from lrsearch.store import attempts
from lrsearch.training import EpochMetrics
from tests.faults import RunnerThread, search_status, trials, wait_for

RUNG = Rung(epoch=1, bracket=0, brackets=1, eta=3, metric="val_acc")


def write_at_rung(url: str, trial: tuple[int, int], search_id: int, acc: float) -> str | None:
    """Trial (id, attempt) ends epoch 1, a rung, with validation accuracy `acc`."""
    engine = store.process_engine(url)
    try:
        with engine.connect() as connection:
            metrics = EpochMetrics(1, 3, 1.0, 0.5, 1.0, acc, 0.01)
            return store.write_epoch(connection, *trial, metrics, {}, (search_id, RUNG))
    finally:
        engine.dispose()


def test_each_trial_at_a_rung_sees_the_values_recorded_before(app):
    search = create_search(db.session, SearchSpec(trials=4, epochs=3, workers=4))
    claimed = store.claim_trials(db.session, 4, search_id=search.id)
    url = app.config["DATABASE_URL"]
    decisions = [write_at_rung(url, t, search.id, acc) for t, acc in
                 zip(claimed, [0.5, 0.4, 0.6, 0.55], strict=True)]  # fmt: skip
    # alone: best; 2 recorded: not the best; 3: the best; 4 (top 1 of 4): not
    assert decisions == [None, PRUNED, None, PRUNED]


@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_two_trials_reaching_a_rung_together_see_each_other(request, database, monkeypatch):
    """The first holds its transaction open after deciding; the second, arriving meanwhile,
    must wait and count the first's value (else both would be "the best so far")."""
    if database == "postgresql":
        request.getfixturevalue("on_postgresql")
    app = request.getfixturevalue("app")
    search = create_search(db.session, SearchSpec(trials=2, epochs=3, workers=2))
    first, second = store.claim_trials(db.session, 2, search_id=search.id)
    decided = threading.Event()
    real = attempts.goes_on

    def decide_then_hold(*args):
        answer = real(*args)
        if threading.current_thread() is holder:
            decided.set()
            time.sleep(1.0)  # the first's transaction stays open a while
        return answer

    monkeypatch.setattr(attempts, "goes_on", decide_then_hold)
    url = app.config["DATABASE_URL"]
    found: dict[str, str | None] = {}
    holder = threading.Thread(
        target=lambda: found.update(first=write_at_rung(url, first, search.id, 0.5))
    )
    holder.start()
    assert decided.wait(30)
    found["second"] = write_at_rung(url, second, search.id, 0.4)  # while the first is open
    holder.join(30)
    assert found == {"first": None, "second": PRUNED}


@pytest.mark.slow
def test_a_digits_search_with_asha_prunes_the_slow_rates_and_keeps_the_best(app, client):
    settings = {"trials": 9, "epochs": 9, "lr_min": 1e-5, "lr_max": 3e-2, "sampler": "grid",
                "workers": 1, "seed": 4, "scheduler": "asha", "reduction_factor": 3,
                "grace_period": 1}  # fmt: skip
    outcomes = []
    for _ in range(2):  # the same seed, one worker: the same trials pruned each time
        response = client.post("/api/searches", json=settings)
        assert response.status_code == 201, response.get_json()
        search_id = response.get_json()["id"]
        with RunnerThread(app, workers=1, search_id=search_id):
            wait_for(lambda s=search_id: search_status(s) == COMPLETED, 120)
        outcomes.append([(t.status, t.epochs_done) for t in trials(search_id)])
    assert outcomes[0] == outcomes[1]
    done = trials(search_id)
    pruned = [t for t in done if t.status == PRUNED]
    assert pruned and all(t.epochs_done in (1, 3) for t in pruned)  # at a rung, epochs kept
    # The slowest rates are pruned at the first rung, all but the very first trial, which
    # met the rung alone (asynchronous halving promotes whoever is best so far).
    assert [t.status for t in done[1:4]] == [PRUNED] * 3
    assert sum(t.epochs_done for t in done) < 9 * 9
    best = max(done, key=lambda t: t.best_val_acc or 0)
    assert best.status == COMPLETED and best.epochs_done == 9
    detail = client.get(f"/api/searches/{search_id}").get_json()
    assert detail["best_trial_id"] == best.id
    summary = detail["search"]
    assert summary["counts"][PRUNED] == len(pruned)
    assert summary["epochs_planned"] == summary["epochs_done"]  # what actually ran
    ranked = sorted(detail["trials"], key=lambda t: t["rank_key"])
    statuses = [t["status"] for t in ranked]
    assert statuses == sorted(statuses, key=lambda s: s == PRUNED)  # pruned below completed


def test_a_pruned_trial_is_the_best_only_when_nothing_completed(app, make_search):
    search = make_search(trials=3, epochs=3)
    a, b, c = search.trials
    a.status, a.best_val_acc = PRUNED, 0.99
    db.session.commit()
    assert ranking.best_trial(db.session, search.id).id != a.id
    for trial in (b, c):
        trial.status = PRUNED
    db.session.commit()
    assert ranking.best_trial(db.session, search.id).id == a.id
    listed = {x.search.id: x.best for x in ranking.list_searches(db.session)}
    assert listed[search.id].id == a.id
    assert ranking.healthiest_trial_id(db.session, search.id) is None  # never pruned ones


@pytest.mark.parametrize(("metric", "second"), [("best_val_acc", PRUNED), ("val_acc", None)])
def test_a_rung_on_the_best_so_far_counts_earlier_epochs(app, metric, second):
    """Trial A had 0.9 at epoch 1 and 0.3 at the rung (epoch 2); B has 0.5 then 0.6. On
    best_val_acc A's 0.9 counts, and B (not the best) is pruned; on val_acc B goes on."""
    search = create_search(db.session, SearchSpec(trials=2, epochs=4, workers=2))
    first, other = store.claim_trials(db.session, 2, search_id=search.id)
    rung = Rung(epoch=2, bracket=0, brackets=1, eta=3, metric=metric)
    engine = store.process_engine(app.config["DATABASE_URL"])

    def epochs(trial, accs) -> str | None:
        with engine.connect() as connection:
            for epoch, acc in enumerate(accs, 1):
                summary = {"best_val_acc": max(accs[:epoch]), "min_val_loss": 1.0}
                at_rung = (search.id, rung) if epoch == rung.epoch else None
                metrics = EpochMetrics(epoch, 4, 1.0, 0.5, 1.0, acc, 0.01)
                reason = store.write_epoch(connection, *trial, metrics, summary, at_rung)
        return reason

    try:
        assert epochs(first, [0.9, 0.3]) is None  # alone at the rung
        assert epochs(other, [0.5, 0.6]) == second
    finally:
        engine.dispose()

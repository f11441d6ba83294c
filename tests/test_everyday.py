"""What a new user runs into (issue 21): failed searches, cancelling one trial, deleting a
search, running one again, the ranking as CSV, and searches sharing the pool."""

from __future__ import annotations

import csv
import io
import re
from collections import Counter

import pytest
from sqlalchemy import func, select

from lrsearch import store
from lrsearch.extensions import db
from lrsearch.models import (
    CANCELLED,
    COMPLETED,
    FAILED,
    QUEUED,
    RUNNING,
    Epoch,
    Search,
    Trial,
)
from lrsearch.search.sampler import create_search
from lrsearch.settings import SearchSpec
from tests.faults import RunnerThread, trials, wait_for


def fail_trials(search: Search, n: int, messages: list[str]) -> None:
    """Claim n trials of the search and crash each for good with the next message."""
    claimed = store.claim_trials(db.session, n, search_id=search.id, worker="test/runner")
    for (trial_id, attempt), message in zip(claimed, messages, strict=True):
        store.record_crash(db.session, trial_id, attempt, message, max_attempts=1)


# ---- failed searches -------------------------------------------------------------------


def test_a_search_whose_trials_all_failed_ends_failed_with_its_errors_counted(client, cli):
    search = create_search(db.session, SearchSpec(trials=3, epochs=2, workers=3))
    boom = "ValueError: boom\n  File x.py, line 3"
    fail_trials(search, 3, [boom, boom, "MemoryError: out of memory"])
    detail = client.get(f"/api/searches/{search.id}").get_json()
    assert detail["search"]["status"] == FAILED
    assert detail["search"]["status_note"] == "failed: 3 failed"
    assert detail["errors"] == [
        {"message": "ValueError: boom", "trials": 2},
        {"message": "MemoryError: out of memory", "trials": 1},
    ]
    [listed] = client.get("/api/searches").get_json()["searches"]
    assert listed["status"] == FAILED and listed["status_note"] == "failed: 3 failed"
    shown = cli.invoke(args=["lrsearch", "show", str(search.id)]).output
    assert "failed: 3 failed" in shown and "2 trials: ValueError: boom" in shown
    page = client.get(f"/searches/{search.id}").get_data(as_text=True)
    assert "error-summary" in page


def test_a_search_with_some_trials_failed_completes_and_says_how_many(app, client):
    search = create_search(db.session, SearchSpec(trials=3, epochs=1, workers=1, hidden=[8]))
    fail_trials(search, 1, ["RuntimeError: one bad trial"])
    with RunnerThread(app, workers=1, search_id=search.id):
        wait_for(lambda: db.session.get(Search, search.id).status == COMPLETED, 60)
    summary = client.get(f"/api/searches/{search.id}").get_json()["search"]
    assert summary["status_note"] == "completed, 1 failed"
    assert summary["counts"] == {"completed": 2, "failed": 1}


# ---- cancel one trial ------------------------------------------------------------------


def test_cancel_a_queued_trial_at_once_and_a_finished_one_never(client):
    search = create_search(db.session, SearchSpec(trials=2, epochs=2, workers=1))
    first, second = trials(search.id)
    answer = client.post(f"/api/trials/{second.id}/cancel", json={})
    assert answer.status_code == 200 and answer.get_json()["status"] == CANCELLED
    fail_trials(search, 1, ["x"])
    again = client.post(f"/api/trials/{first.id}/cancel", json={})
    assert again.status_code == 409 and "already failed" in again.get_json()["reason"]
    assert client.post("/api/trials/999999/cancel", json={}).status_code == 404
    db.session.expire_all()
    assert db.session.get(Search, search.id).status == FAILED


def test_cancel_a_running_trial_stops_it_at_its_next_epoch_keeping_its_epochs(app, client, cli):
    spec = SearchSpec(dataset="synthetic:20000x64x10", hidden=[256, 256], trials=2, epochs=40,
                      workers=2, seed=1)  # fmt: skip
    search = create_search(db.session, spec)
    with RunnerThread(app, workers=2, search_id=search.id):
        wait_for(lambda: all(t.epochs_done >= 1 for t in trials(search.id)), 60)
        target = trials(search.id)[0]
        result = cli.invoke(args=["lrsearch", "cancel", str(search.id), "--trial", str(target.id)])
        assert result.exit_code == 0, result.output
        wait_for(lambda: db.session.get(Trial, target.id).status == CANCELLED, 60)
        other = trials(search.id)[1]
        assert other.status == RUNNING  # the rest of the search goes on
        store.cancel_search(db.session, search.id)
    done = db.session.get(Trial, target.id)
    epochs = db.session.scalar(select(func.count()).where(Epoch.trial_id == done.id))
    assert 1 <= done.epochs_done < 40 and epochs == done.epochs_done


# ---- delete ----------------------------------------------------------------------------


def test_delete_a_search_removes_its_rows_and_folder_and_nothing_else(
    app, client, cli, make_search
):
    keep = make_search(trials=2, epochs=2)
    gone = make_search(trials=3, epochs=2)
    folder = store_folder(app, gone.id)
    folder.mkdir(parents=True)
    (folder / "log.txt").write_text("x")
    before = db.session.scalar(select(func.count()).select_from(Epoch))
    answer = client.delete(f"/api/searches/{gone.id}")
    assert answer.status_code == 200 and answer.get_json() == {"deleted": gone.id}
    assert not folder.exists() and db.session.get(Search, gone.id) is None
    assert db.session.scalar(select(func.count()).select_from(Trial)) == 2
    assert db.session.scalar(select(func.count()).select_from(Epoch)) == before - 3 * 2
    assert client.delete(f"/api/searches/{gone.id}").status_code == 404
    result = cli.invoke(args=["lrsearch", "delete", str(keep.id)])
    assert result.exit_code == 0 and db.session.get(Search, keep.id) is None


def test_a_search_with_a_running_trial_cannot_be_deleted(client, cli):
    search = create_search(db.session, SearchSpec(trials=2, epochs=2, workers=1))
    store.claim_trials(db.session, 1, search_id=search.id, worker="test/runner")
    answer = client.delete(f"/api/searches/{search.id}")
    assert answer.status_code == 409 and "cancel it first" in answer.get_json()["reason"]
    result = cli.invoke(args=["lrsearch", "delete", str(search.id)])
    assert result.exit_code == 2 and "cancel it first" in result.output
    assert db.session.get(Search, search.id) is not None


def store_folder(app, search_id):
    from lrsearch import artifacts

    return artifacts.logs_root(app.config["DATA_DIR"]) / artifacts.search_folder_name(search_id)


# ---- run again, export -----------------------------------------------------------------


def test_run_again_copies_the_settings_with_overrides(client, make_search):
    first = make_search(trials=3, epochs=2, seed=9, name="base", hidden=[16],
                        lr_min=0.000123456789, beta2=0.99912345)  # fmt: skip
    answer = client.post("/api/searches", json={"copy_of": first.id, "seed": 10})
    assert answer.status_code == 201, answer.get_json()
    copy = answer.get_json()
    same = ("dataset", "layers", "lr_min", "lr_max", "trials", "epochs", "batch_size")
    assert {k: copy[k] for k in same} == {k: first.config()[k] for k in same}
    assert copy["seed"] == 10 and copy["name"] == "base"
    bad = client.post("/api/searches", json={"copy_of": 999999})
    assert bad.status_code == 400 and "copy_of" in bad.get_json()["errors"]
    page = client.get(f"/searches/{first.id}").get_data(as_text=True)
    assert 'id="run-again"' in page
    form = client.get(f"/searches/new?copy_of={first.id}").get_data(as_text=True)
    values = dict(re.findall(r'<input [^>]*name="(\w+)" [^>]*value="([^"]*)"', form))
    assert values["hidden"] == "16" and values["name"] == "base" and values["trials"] == "3"
    assert values["seed"] == "10"  # moved on: the same seed would draw the same rates
    assert (values["lr_min"], values["beta2"]) == ("0.000123456789", "0.99912345")  # exact


def test_the_ranking_as_csv_has_the_tables_columns_and_full_precision(client, make_search):
    search = make_search(trials=3, epochs=2)
    answer = client.get(f"/searches/{search.id}/ranking.csv")
    assert answer.status_code == 200 and answer.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(answer.get_data(as_text=True))))
    assert [r["rank"] for r in rows] == ["1", "2", "3"]
    by_id = {t.id: t for t in trials(search.id)}
    assert {float(r["lr"]) for r in rows} == {t.lr for t in by_id.values()}  # repr precision
    accuracies = [float(r["best_val_acc"]) for r in rows]
    assert accuracies == sorted(accuracies, reverse=True)
    assert set(rows[0]) >= {"trial", "lr", "status", "epochs", "best_val_acc", "best_epoch",
                            "final_val_acc", "final_acc_train", "gap", "min_val_loss",
                            "final_val_loss", "seconds"}  # fmt: skip
    page = client.get(f"/searches/{search.id}").get_data(as_text=True)
    assert f'href="/searches/{search.id}/ranking.csv"' in page


# ---- sharing the pool ------------------------------------------------------------------


@pytest.mark.slow
def test_a_small_search_finishes_while_a_big_one_still_runs(app):
    spec = SearchSpec(dataset="synthetic:20000x64x10", hidden=[256, 256], trials=30, epochs=4,
                      workers=2)  # fmt: skip
    big = create_search(db.session, spec)
    with RunnerThread(app, workers=2):
        wait_for(lambda: sum(t.epochs_done > 0 for t in trials(big.id)) >= 2, 60)
        small = create_search(db.session, SearchSpec(trials=4, epochs=3, workers=2, hidden=[8]))
        wait_for(lambda: db.session.get(Search, small.id).status == COMPLETED, 120)
        left = [t for t in trials(big.id) if t.status == QUEUED]
        assert len(left) >= 10  # the big one was far from done


def test_claims_take_turns_between_searches_and_favour_the_least_served(app):
    older = create_search(db.session, SearchSpec(trials=10, epochs=1, workers=4))
    newer = create_search(db.session, SearchSpec(trials=3, epochs=1, workers=4))
    first = store.claim_trials(db.session, 2, worker="test/runner")
    assert [db.session.get(Trial, t).search_id for t, _ in first] == [older.id, newer.id]
    # older now runs 1 and newer 1: turns alternate, older first on ties
    more = store.claim_trials(db.session, 3, worker="test/runner")
    assert [db.session.get(Trial, t).search_id for t, _ in more] == [older.id, newer.id, older.id]
    # each still capped by its workers
    rest = store.claim_trials(db.session, 10, worker="test/runner")
    running = Counter(db.session.get(Trial, t).search_id for t, _ in [*first, *more, *rest])
    assert running == {older.id: 4, newer.id: 3}


# ---- many searches ---------------------------------------------------------------------


def named_all() -> set[str]:
    return set(db.session.scalars(select(Search.name)))


def test_the_list_pages_50_at_a_time_and_filters_by_name_data_set_and_status(client):
    for i in range(120):
        name = f"{'big' if i % 2 else 'small'}_{i}"
        dataset = "digits" if i % 3 else "synthetic:500x8x2"
        create_search(db.session, SearchSpec(trials=1, epochs=1, name=name, dataset=dataset))
    db.session.execute(Search.__table__.update().where(Search.id <= 10).values(status=FAILED))
    db.session.commit()
    first = client.get("/api/searches").get_json()
    assert (first["total"], first["pages"], first["page"]) == (120, 3, 1)
    assert [s["id"] for s in first["searches"]] == list(range(120, 70, -1))  # newest first
    third = client.get("/api/searches?page=3").get_json()
    assert [s["id"] for s in third["searches"]] == list(range(20, 0, -1))
    named = client.get("/api/searches?name=BIG_1").get_json()  # any case, a part
    expected = {f"big_{i}" for i in range(1, 120, 2)} & {n for n in named_all() if "big_1" in n}
    assert {s["name"] for s in named["searches"]} == expected and named["total"] == len(expected)
    literal = client.get("/api/searches?name=g_1%25").get_json()  # % is no wildcard
    assert literal["total"] == 0
    both = client.get("/api/searches?dataset=digits&status=failed").get_json()
    assert [s["id"] for s in both["searches"]] == [i for i in range(10, 0, -1) if (i - 1) % 3]
    assert client.get("/api/searches?status=lost").status_code == 400
    page = client.get("/?status=failed&page=1").get_data(as_text=True)
    assert "10 searches" in page and 'id="next-page"' not in page
    page = client.get("/?page=2").get_data(as_text=True)
    assert 'id="prev-page"' in page and 'id="next-page"' in page and "page 2 of 3" in page
    assert page.count('<tr data-id="') == 50

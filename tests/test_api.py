"""The JSON API through the Flask test client: every endpoint, its 4xx answers included."""

from __future__ import annotations

import json
import math

import pytest
from sqlalchemy import func, select

from lrsearch import artifacts
from lrsearch.extensions import db
from lrsearch.models import CANCELLED, QUEUED, RUNNING, Epoch, Search, utcnow
from lrsearch.search import ranking
from lrsearch.search.sampler import create_search
from lrsearch.settings import SearchSpec
from lrsearch.store import reads
from lrsearch.web import serialize

GOOD = {
    "name": "api",
    "dataset": "digits",
    "layers": [64, 16, 10],
    "trials": 3,
    "epochs": 2,
    "lr_min": 1e-4,
    "lr_max": 1e-2,
    "seed": 3,
}


def strict_json(response) -> dict:
    """The body parsed as strict JSON (NaN and Infinity refused)."""
    assert response.mimetype == "application/json"

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in JSON")

    return json.loads(response.get_data(as_text=True), parse_constant=refuse)


def count_searches() -> int:
    return db.session.execute(select(func.count()).select_from(Search)).scalar_one()


def queued_search(trials: int = 2, epochs: int = 2) -> Search:
    return create_search(db.session, SearchSpec(trials=trials, epochs=epochs))


# ---- POST /api/searches ---------------------------------------------------------------


def test_start_a_search(client):
    response = client.post("/api/searches", json=GOOD)
    assert response.status_code == 201
    body = strict_json(response)
    search = db.session.get(Search, body["id"])
    assert body["url"] == f"/searches/{search.id}"
    assert body["api_url"] == f"/api/searches/{search.id}"
    assert response.headers["Location"] == body["api_url"]
    assert body["status"] == QUEUED and body["trials"] == 3 and body["layers"] == [64, 16, 10]
    assert len(search.trials) == 3 and search.name == "api"


def test_start_with_defaults_only(client):
    response = client.post("/api/searches", json={})
    assert response.status_code == 201
    assert strict_json(response)["dataset"] == SearchSpec().dataset


def test_bad_settings_give_an_error_per_field(client):
    bad = {**GOOD, "lr_min": "x", "epochs": 0, "layers": [64, 10, 3], "colour": "red"}
    response = client.post("/api/searches", json=bad)
    assert response.status_code == 400
    body = strict_json(response)
    assert body["reason"] == "invalid settings"
    assert set(body["errors"]) == {"lr_min", "epochs", "layers", "colour"}
    assert body["errors"]["lr_min"] == "must be a number"
    assert count_searches() == 0


@pytest.mark.parametrize(
    ("data", "content_type"),
    [('{"trials": 2}', "text/plain"), ("trials=2", "application/x-www-form-urlencoded")],
)
def test_start_takes_json_only(client, data, content_type):
    response = client.post("/api/searches", data=data, content_type=content_type)
    assert response.status_code == 415
    assert "application/json" in strict_json(response)["reason"]
    assert count_searches() == 0


@pytest.mark.parametrize("body", ["[1, 2]", '"text"', "{not json", "null"])
def test_start_needs_a_json_object(client, body):
    response = client.post("/api/searches", data=body, content_type="application/json")
    assert response.status_code == 400
    assert "JSON object" in strict_json(response)["reason"]


def test_start_obeys_the_cap_on_active_searches(app, client):
    app.config["MAX_ACTIVE_SEARCHES"] = 1
    assert client.post("/api/searches", json=GOOD).status_code == 201
    response = client.post("/api/searches", json=GOOD)
    assert response.status_code == 429
    assert "cap" in strict_json(response)["reason"]


# ---- GET /api/searches, /api/searches/<id> --------------------------------------------


def test_list_newest_first(client, make_search):
    first, second = make_search(trials=2, epochs=2), make_search(trials=1, epochs=3)
    body = strict_json(client.get("/api/searches"))
    assert [s["id"] for s in body["searches"]] == [second.id, first.id]
    one = body["searches"][1]
    assert one["epochs_done"] == one["epochs_planned"] == 4 and one["progress"] == 1.0
    assert one["status"] == "completed" and one["counts"] == {"completed": 2}
    assert one["best"]["lr"] == max(first.trials, key=lambda t: t.best_val_acc).lr


def test_list_empty(client):
    answer = strict_json(client.get("/api/searches"))
    assert answer["searches"] == [] and (answer["total"], answer["page"], answer["pages"]) == (
        0,
        1,
        1,
    )


def test_detail_has_trials_and_both_answers(client, make_search):
    search = make_search(trials=4, epochs=3, diverge=2)
    body = strict_json(client.get(f"/api/searches/{search.id}"))
    assert body["search"]["id"] == search.id
    assert [t["index"] for t in body["trials"]] == [0, 1, 2, 3]
    assert body["trials"][2]["status"] == "diverged"
    best = max((t for t in search.trials if t.index != 2), key=lambda t: t.best_val_acc)
    assert body["best_trial_id"] == best.id
    assert body["healthiest_trial_id"] in {t.id for t in search.trials}
    assert body["eta_seconds"] is None  # finished
    row = body["trials"][0]
    for key in (
        "lr",
        "status",
        "attempt",
        "epochs_done",
        "best_val_acc",
        "final_val_acc",
        "min_val_loss",
        "gap",
        "url",
    ):
        assert key in row
    assert row["url"] == f"/trials/{row['id']}"
    assert math.isclose(row["gap"], row["final_acc_train"] - row["final_val_acc"])


def test_infinite_values_are_null(client, make_search):
    search = make_search(trials=1, epochs=2)
    search.trials[0].final_val_loss = math.inf
    db.session.commit()
    body = strict_json(client.get(f"/api/searches/{search.id}"))
    assert body["trials"][0]["final_val_loss"] is None


# ---- epochs and poll ------------------------------------------------------------------


def test_epochs_are_columns_after_an_id(client, make_search):
    search = make_search(trials=2, epochs=3)
    body = strict_json(client.get(f"/api/searches/{search.id}/epochs?after=0"))
    columns = body["epochs"]
    assert set(columns) == set(serialize.EPOCH_FIELDS)
    assert len(columns["id"]) == 6 and columns["id"] == sorted(columns["id"])
    assert set(columns["attempt"]) == {1} and body["complete"]
    assert body["last_id"] == columns["id"][-1]
    middle = columns["id"][2]
    later = strict_json(client.get(f"/api/searches/{search.id}/epochs?after={middle}"))
    assert later["epochs"]["id"] == columns["id"][3:]
    empty = strict_json(client.get(f"/api/searches/{search.id}/epochs?after={body['last_id']}"))
    assert empty["epochs"]["id"] == [] and empty["last_id"] == body["last_id"]


def epoch_rows(body: dict) -> set[tuple[int, int]]:
    """(trial id, epoch) of each row of an epochs answer."""
    return set(zip(body["epochs"]["trial_id"], body["epochs"]["epoch"], strict=True))


def test_epochs_of_chosen_trials_and_where_to_poll_on(client, make_search):
    """A page drawing a few trials' curves fetches only theirs, then polls from the newest."""
    check_chosen_trials(client, make_search)


@pytest.mark.postgres
@pytest.mark.usefixtures("on_postgresql")
def test_epochs_of_chosen_trials_on_postgresql(client, make_search):
    check_chosen_trials(client, make_search)
    check_ids_past_the_integer_columns(client)


def test_ids_past_the_integer_columns_are_refused(client, make_search):
    make_search(trials=1, epochs=1)
    check_ids_past_the_integer_columns(client)


def check_ids_past_the_integer_columns(client) -> None:
    """PostgreSQL's INTEGER ends at 2**31 - 1, and refused more with a 500."""
    big = 2**31
    for path in (f"/api/searches/{big}", f"/api/trials/{big}", f"/api/searches/{big}/epochs"):
        response = client.get(path)
        assert response.status_code == 404 and "reason" in strict_json(response), path
    for path in (f"/searches/{big}", f"/trials/{big}/log.txt", f"/searches/{big}/archive.zip"):
        assert client.get(path).status_code == 404, path
    search_id = strict_json(client.get("/api/searches"))["searches"][0]["id"]
    for query, name in ((f"after={big}", "after"), (f"trials=1,{big}", "trials")):
        response = client.get(f"/api/searches/{search_id}/epochs?{query}")
        assert response.status_code == 400 and name in strict_json(response)["errors"], query
    edge = client.get(f"/api/searches/{search_id}/poll?after={big - 1}&trials={big - 1}")
    assert edge.status_code == 200


def check_chosen_trials(client, make_search) -> None:
    search = make_search(trials=3, epochs=2)
    first, _, last = (t.id for t in search.trials)
    url = f"/api/searches/{search.id}/epochs"
    newest = db.session.execute(select(func.max(Epoch.id))).scalar()
    body = strict_json(client.get(f"{url}?after=0&trials={first}"))
    assert epoch_rows(body) == {(first, 1), (first, 2)} and body["complete"]
    assert body["last_id"] == newest  # past the last trial's epochs, which it left out
    both = strict_json(client.get(f"{url}?after=0&trials={last},{first},{2**31 - 1}"))
    assert epoch_rows(both) == {(t, e) for t in (first, last) for e in (1, 2)}
    none = strict_json(client.get(f"{url}?after=0&trials="))
    assert none["epochs"]["id"] == [] and none["last_id"] == newest
    search.trials[1].epochs_done = 3
    db.session.add(
        Epoch(trial_id=search.trials[1].id, attempt=1, epoch=3, loss=1.0, acc_train=0.5,
              val_loss=1.0, acc_val=0.5, seconds=0.1)
    )  # fmt: skip
    db.session.commit()
    later = strict_json(client.get(f"/api/searches/{search.id}/poll?after={body['last_id']}"))
    assert epoch_rows(later) == {(search.trials[1].id, 3)}  # nothing twice, nothing missed


def test_epochs_of_chosen_trials_come_in_pages(app, make_search):
    search = make_search(trials=4, epochs=3)
    chosen = [search.trials[0].id, search.trials[2].id]
    after, rows, pages = 0, set(), 0
    while True:
        found = reads.epochs_after(db.session, search.id, after, limit=4, trial_ids=chosen)
        body = serialize.epochs(found, after)
        rows |= epoch_rows(body)
        after, pages = body["last_id"], pages + 1
        if body["complete"]:
            break
    assert rows == {(t, e) for t in chosen for e in (1, 2, 3)} and pages == 2
    assert after == db.session.execute(select(func.max(Epoch.id))).scalar()


@pytest.mark.parametrize(
    "trials", ["a", "1,,2", "-1", "1.5", "1,", " 1", "\uff11", "9" * 40, "9" * 5000]
)
def test_epochs_trials_must_be_ids(client, make_search, trials):
    search = make_search(trials=1, epochs=1)
    response = client.get(f"/api/searches/{search.id}/epochs", query_string={"trials": trials})
    assert response.status_code == 400
    assert "trials" in strict_json(response)["errors"]


def test_epochs_trials_are_capped(client, make_search):
    search = make_search(trials=1, epochs=1)
    many = ",".join(map(str, range(1, 1002)))
    response = client.get(f"/api/searches/{search.id}/epochs?trials={many}")
    assert response.status_code == 400
    assert strict_json(response)["errors"]["trials"] == "over 1000 ids"


def restart(trial) -> None:
    """Make the trial's second attempt current, with one epoch of its own."""
    trial.attempt = 2
    db.session.add(
        Epoch(
            trial_id=trial.id,
            attempt=2,
            epoch=1,
            loss=1.0,
            acc_train=0.5,
            val_loss=1.0,
            acc_val=0.5,
            seconds=0.1,
        )
    )
    db.session.commit()


def test_epochs_of_an_earlier_attempt_are_left_out(client, make_search):
    search = make_search(trials=1, epochs=2)
    trial = search.trials[0]
    restart(trial)
    columns = strict_json(client.get(f"/api/searches/{search.id}/epochs"))["epochs"]
    assert columns["attempt"] == [2] and columns["epoch"] == [1]


@pytest.mark.parametrize("after", ["abc", "-1", "1.5", str(2**70)])
def test_epochs_after_must_be_a_whole_number(client, make_search, after):
    search = make_search(trials=1, epochs=1)
    response = client.get(f"/api/searches/{search.id}/epochs?after={after}")
    assert response.status_code == 400
    assert "after" in strict_json(response)["errors"]


def test_poll_sends_only_what_changed(client, make_search):
    search = make_search(trials=2, epochs=2)
    first = strict_json(client.get(f"/api/searches/{search.id}/poll?after=0"))
    assert len(first["epochs"]["id"]) == 4 and len(first["trials"]) == 2
    assert first["search"]["id"] == search.id and first["best_trial_id"] is not None
    assert "healthiest_trial_id" in first and first["eta_seconds"] is None
    since = first["server_time"]
    assert since.endswith("Z")
    # Nothing changed: old rows drop out once they are older than the poll window.
    for trial in search.trials:
        trial.updated_at = utcnow().replace(year=2000)
    db.session.commit()
    quiet = strict_json(
        client.get(f"/api/searches/{search.id}/poll?after={first['last_id']}&since={since}")
    )
    assert quiet["epochs"]["id"] == [] and quiet["trials"] == []
    search.trials[1].status = RUNNING  # any change to the row bumps updated_at
    db.session.commit()
    changed = strict_json(
        client.get(f"/api/searches/{search.id}/poll?after={first['last_id']}&since={since}")
    )
    assert [t["id"] for t in changed["trials"]] == [search.trials[1].id]


def test_poll_since_must_be_a_time(client, make_search):
    search = make_search(trials=1, epochs=1)
    response = client.get(f"/api/searches/{search.id}/poll?since=yesterday")
    assert response.status_code == 400
    assert "since" in strict_json(response)["errors"]


def test_eta_while_running(client, make_search):
    search = make_search(trials=2, epochs=4)
    search.status = RUNNING
    search.trials[1].status, search.trials[1].epochs_done = RUNNING, 2
    search.trials[1].seconds = 1.0
    db.session.commit()
    body = strict_json(client.get(f"/api/searches/{search.id}/poll"))
    assert body["eta_seconds"] > 0


# ---- cancel ---------------------------------------------------------------------------


def test_cancel_a_search(client):
    search, other = queued_search(), queued_search()
    response = client.post(f"/api/searches/{search.id}/cancel", json={})
    assert response.status_code == 200
    body = strict_json(response)
    assert body["status"] == CANCELLED and body["cancel_requested"]
    assert body["counts"] == {"cancelled": 2}
    db.session.expire_all()
    assert other.status == QUEUED and not other.cancel_requested


def test_cancel_takes_json_only(client):
    search = queued_search()
    response = client.post(f"/api/searches/{search.id}/cancel", data={"x": "1"})
    assert response.status_code == 415
    db.session.expire_all()
    assert not search.cancel_requested


# ---- trials ---------------------------------------------------------------------------


def test_trial_with_epochs_of_every_attempt(app, client, make_search):
    search = make_search(trials=1, epochs=3)
    trial = search.trials[0]
    restart(trial)
    body = strict_json(client.get(f"/api/trials/{trial.id}"))
    assert body["id"] == trial.id and body["attempt"] == 2
    assert [(e["attempt"], e["epoch"]) for e in body["epochs"]] == [(1, 1), (1, 2), (1, 3), (2, 1)]
    assert body["log_url"] == f"/trials/{trial.id}/log.txt"
    assert body["plot_url"] == f"/trials/{trial.id}/plot.png"
    assert body["archive_url"] == f"/trials/{trial.id}/archive.zip"
    assert body["has_log"] is False and body["has_plot"] is True  # drawn when asked
    folder = artifacts.trial_folder(app.config["DATA_DIR"], search.id, trial.index, trial.lr)
    folder.mkdir(parents=True)
    (folder / artifacts.LOG_NAME).write_text("")
    assert strict_json(client.get(f"/api/trials/{trial.id}"))["has_log"] is True


def test_queued_trial_has_no_files_yet(client):
    trial = queued_search().trials[0]
    body = strict_json(client.get(f"/api/trials/{trial.id}"))
    assert body["epochs"] == [] and body["status"] == QUEUED
    assert body["has_log"] is False and body["has_plot"] is False


# ---- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", "/api/searches/999"),
        ("get", "/api/searches/999/epochs"),
        ("get", "/api/searches/999/poll"),
        ("post", "/api/searches/999/cancel"),
        ("get", "/api/trials/999"),
        ("get", "/api/no/such/thing"),
    ],
)
def test_unknown_ids_are_404_json_not_html(client, method, url):
    response = getattr(client, method)(
        url, json={} if method == "post" else None, headers={"Accept": "text/html"}
    )
    assert response.status_code == 404
    assert "reason" in strict_json(response)


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", "/api/searches/1/cancel"),
        ("put", "/api/searches"),
        ("delete", "/api/searches"),
        ("post", "/api/searches/1"),
        ("post", "/api/trials/1"),
    ],
)
def test_wrong_method_is_405_json(client, make_search, method, url):
    make_search(trials=1, epochs=1)
    response = getattr(client, method)(url)
    assert response.status_code == 405
    assert "reason" in strict_json(response)


def test_the_ranking_answers_come_from_the_database_rules(app, client, make_search):
    """Best: top best_val_acc among sound trials; healthiest: smallest gap near the top."""
    search = make_search(trials=4, epochs=3)
    a, b, c, d = search.trials
    values = {  # status, best_val_acc, final_acc_train, final_val_acc
        a: ("completed", 0.97, 1.00, 0.96),  # highest, but overfits
        b: ("completed", 0.95, 0.95, 0.945),  # within 5 points, smallest gap
        c: ("completed", 0.80, 0.80, 0.80),  # no gap at all, but underfits
        d: ("diverged", 0.99, 0.99, 0.99),  # never picked
    }
    for trial, (status, best, train, val) in values.items():
        trial.status, trial.best_val_acc = status, best
        trial.final_acc_train, trial.final_val_acc = train, val
    db.session.commit()
    body = client.get(f"/api/searches/{search.id}").get_json()
    assert body["best_trial_id"] == a.id and body["search"]["best"]["id"] == a.id
    assert body["healthiest_trial_id"] == b.id
    poll = client.get(f"/api/searches/{search.id}/poll").get_json()
    assert (poll["best_trial_id"], poll["healthiest_trial_id"]) == (a.id, b.id)


def test_each_trial_carries_its_place_in_the_ranking_and_the_window_comes_along(
    client, make_search
):
    """The page orders by the server's keys; it re-implements neither the rule nor the window."""
    search = make_search(trials=5, epochs=3, diverge=0)
    a, b, c, d, e = search.trials
    b.best_val_acc = c.best_val_acc  # a tie: the lower rate first
    d.status = "failed"
    e.status = "running"
    db.session.commit()
    body = client.get(f"/api/searches/{search.id}").get_json()
    assert body["healthy_within"] == 0.05
    keys = {t["id"]: t["rank_key"] for t in body["trials"]}
    ordered = [t for t in sorted(keys, key=lambda i: keys[i])]
    expected = ranking.rank_by_accuracy(search.trials)
    assert ordered == [t.id for t in expected]
    assert ordered[-2:] == sorted([a.id, d.id], key=lambda i: keys[i])  # diverged, failed last
    tied = sorted([b, c], key=lambda t: t.lr)
    assert ordered.index(tied[0].id) < ordered.index(tied[1].id)
    poll = client.get(f"/api/searches/{search.id}/poll").get_json()
    assert poll["healthy_within"] == 0.05
    assert {t["id"]: t["rank_key"] for t in poll["trials"]} == keys

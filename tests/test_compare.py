"""Comparing searches: the API's answers and points, the page, and refusals."""

from __future__ import annotations

import pytest

from lrsearch.extensions import db
from lrsearch.search import ranking


def test_compare_two_searches(client, make_search):
    first = make_search(trials=3, epochs=4, name="a")
    second = make_search(trials=5, epochs=2, name="b", lr_min=1e-3, lr_max=1e-1)
    body = client.get(f"/api/compare?ids={second.id},{first.id}").get_json()
    assert [c["search"]["id"] for c in body["searches"]] == [second.id, first.id]
    for compared, search in zip(body["searches"], (second, first), strict=True):
        assert len(compared["points"]) == search.n_trials
        assert {p["lr"] for p in compared["points"]} == {t.lr for t in search.trials}
        best = ranking.best_trial(db.session, search.id)
        assert compared["best_trial_id"] == best.id
        assert compared["best_curve"]["epoch"] == list(range(1, search.epochs + 1))
        assert compared["epochs_spent"] == search.n_trials * search.epochs
    page = client.get(f"/compare?ids={first.id},{second.id}")
    assert page.status_code == 200 and b'id="chart-rates"' in page.data
    assert b"compare.js" in page.data


@pytest.mark.parametrize(("ids", "status"), [("1", 400), ("", 400), ("1,x", 400), ("1,99", 404)])
def test_compare_needs_two_searches_that_exist(client, make_search, ids, status):
    make_search(trials=1, epochs=1)
    response = client.get(f"/api/compare?ids={ids}")
    assert response.status_code == status and response.get_json()["reason"]

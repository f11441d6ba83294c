"""Refine around the best: the new search's range, its link to its parent, and refusals."""

from __future__ import annotations

import pytest

from lrsearch.extensions import db
from lrsearch.models import Search
from lrsearch.search import ranking


def best_lr(search_id: int) -> float:
    return ranking.best_trial(db.session, search_id).lr


def test_refine_through_the_api_keeps_the_settings_around_the_best(client, make_search):
    parent = make_search(trials=4, epochs=3, seed=5, name="first")
    best = best_lr(parent.id)
    response = client.post(f"/api/searches/{parent.id}/refine", json={"factor": 3})
    assert response.status_code == 201, response.get_json()
    child = response.get_json()
    assert child["parent_id"] == parent.id and child["name"] == "first refined x3"
    assert child["lr_min"] == pytest.approx(best / 3) and child["lr_max"] == pytest.approx(best * 3)
    same = ("dataset", "layers", "epochs", "batch_size", "beta1", "beta2", "seed", "trials")
    assert {k: child[k] for k in same} == {k: parent.config()[k] for k in same}
    more = client.post(f"/api/searches/{parent.id}/refine", json={"trials": 7}).get_json()
    assert more["trials"] == 7 and more["lr_max"] == pytest.approx(best * 3)  # the default


@pytest.mark.parametrize(("lr", "bound", "value"), [(9.0, "lr_max", 10.0), (2e-8, "lr_min", 1e-8)])
def test_the_range_is_clamped_to_the_caps(client, make_search, lr, bound, value):
    parent = make_search(trials=2, epochs=2)
    best = db.session.get(Search, parent.id).trials[0]
    best.lr, best.best_val_acc = lr, 0.999
    db.session.commit()
    child = client.post(f"/api/searches/{parent.id}/refine", json={"factor": 10}).get_json()
    assert child[bound] == value


@pytest.mark.parametrize(
    ("body", "field"),
    [({"factor": 1}, "factor"), ({"factor": "x"}, "factor"), ({"trials": 0}, "trials")],
)
def test_bad_refinements_are_refused_with_the_field(client, make_search, body, field):
    parent = make_search(trials=2, epochs=2)
    response = client.post(f"/api/searches/{parent.id}/refine", json=body)
    assert response.status_code == 400 and field in response.get_json()["errors"]
    assert db.session.query(Search).count() == 1


def test_a_search_without_an_epoch_cannot_be_refined(client):
    parent = client.post("/api/searches", json={"trials": 1, "epochs": 1}).get_json()
    response = client.post(f"/api/searches/{parent['id']}/refine", json={})
    assert response.status_code == 400
    assert "no trial with an epoch" in response.get_json()["errors"]["search"]


def test_the_refine_button_and_the_links_both_ways(client, make_search):
    parent = make_search(trials=3, epochs=2, name="base")
    page = client.get(f"/searches/{parent.id}").get_data(as_text=True)
    assert 'id="refine-button"' in page
    response = client.post(f"/searches/{parent.id}/refine", data={"factor": "2", "trials": "2"})
    assert response.status_code == 303
    child_id = int(response.headers["Location"].rsplit("/", 1)[1])
    child = client.get(f"/searches/{child_id}").get_data(as_text=True)
    assert f'href="/searches/{parent.id}" id="parent-link"' in child
    assert 'id="refine-button"' not in child  # not finished yet
    parent_page = client.get(f"/searches/{parent.id}").get_data(as_text=True)
    assert f'href="/searches/{child_id}" class="refinement-link"' in parent_page
    listing = client.get("/").get_data(as_text=True)
    assert f"refines #{parent.id}" in listing
    assert client.get("/api/searches").get_json()["searches"][0]["parent_id"] == parent.id


@pytest.mark.slow
def test_refine_on_the_command_line_runs_the_new_search(app, cli, make_search):
    parent = make_search(trials=3, epochs=2)
    result = cli.invoke(args=["lrsearch", "refine", str(parent.id), "--factor", "2",
                              "--trials", "2"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (
        f"refines={parent.id}" in result.output and "highest validation accuracy" in result.output
    )
    bad = cli.invoke(args=["lrsearch", "refine", "999"])
    assert bad.exit_code == 2 and "no search 999" in bad.output

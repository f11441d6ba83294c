"""The pages, the new-search form, cancel and downloads, through the Flask test client."""

from __future__ import annotations

import contextvars
import io
import json
import re
import zipfile
from html import unescape

import pytest
from flask_migrate import upgrade
from sqlalchemy import func, select

from lrsearch import artifacts, create_app
from lrsearch.extensions import db
from lrsearch.models import CANCELLED, QUEUED, RUNNING, Search
from lrsearch.search.sampler import create_search
from lrsearch.settings import PUBLIC_SETTINGS, SearchSpec

VALID = {
    "name": "form search",
    "dataset": "digits",
    "layers": "64,32,10",
    "lr_min": "0.0001",
    "lr_max": "0.01",
    "trials": "3",
    "epochs": "4",
    "batch_size": "64",
    "beta1": "0.9",
    "beta2": "0.999",
    "workers": "2",
    "seed": "7",
    "sampler": "grid",
    "scheduler": "none",
    "reduction_factor": "3",
    "grace_period": "1",
    "brackets": "1",
    "metric": "val_acc",
    "kind": "search",
    "iterations": "100",
}


def count_searches() -> int:
    return db.session.execute(select(func.count()).select_from(Search)).scalar_one()


def input_value(html: str, name: str) -> str | None:
    """The value attribute of the input named `name`."""
    tag = re.search(rf'<input[^>]*\bname="{name}"[^>]*>', html)
    value = tag and re.search(r'\bvalue="([^"]*)"', tag.group(0))
    return unescape(value.group(1)) if value else None


def field_error(html: str, name: str) -> str | None:
    """The message shown under the field `name`."""
    found = re.search(rf'<p class="field-error" id="{name}-error">([^<]*)</p>', html)
    return unescape(found.group(1)) if found else None


def data_attribute(html: str, name: str) -> str:
    return unescape(re.search(rf"data-{name}='([^']*)'", html).group(1))


def write_log(app, trial, lines: int = 2) -> None:
    folder = artifacts.trial_folder(app.config["DATA_DIR"], trial.search_id, trial.index, trial.lr)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / artifacts.LOG_NAME).write_text(
        "".join(
            artifacts.log_line(e, lines, 1.0, 0.5, 1.1, 0.4) + "\n" for e in range(1, lines + 1)
        )
    )


# ---- searches -------------------------------------------------------------------------


def test_index_without_searches_invites_a_new_one(client):
    response = client.get("/")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "No search yet" in html and 'href="/searches/new"' in html


def test_index_lists_every_search(client, make_search):
    first = make_search(trials=2, epochs=3, name="alpha", lr_min=0.000123456, lr_max=0.0456789)
    second = make_search(trials=1, epochs=2, name="beta")
    html = client.get("/").get_data(as_text=True)
    assert html.index("beta") < html.index("alpha")  # newest first
    assert "0.000123 – 0.0457" in html  # three significant digits
    assert f'href="/searches/{first.id}"' in html and f'href="/searches/{second.id}"' in html
    assert html.count('class="status-bar" data-summary=') == 2  # drawn by index.js
    assert "status-completed" in html
    best = max(first.trials, key=lambda t: t.best_val_acc)
    assert f"{best.best_val_acc:.4f}" in html
    assert 'data-list-url="/api/searches"' in html


# ---- new-search form ------------------------------------------------------------------


def test_form_has_every_setting_prefilled_with_the_defaults(client):
    response = client.get("/searches/new")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    expected = {
        "dataset": "digits",
        "hidden": "128",
        "layers": "",  # the data set's sizes around the hidden ones
        "lr_min": "0.0001",
        "lr_max": "0.01",
        "trials": "4",
        "epochs": "20",
        "batch_size": "64",
        "beta1": "0.9",
        "beta2": "0.999",
        "workers": "2",
        "seed": "0",
        "name": "",
    }
    for name, value in expected.items():
        assert input_value(html, name) == value, name
    assert re.search(r'<option selected value="random">', html)
    assert {s.name for s in PUBLIC_SETTINGS} <= set(re.findall(r'name="(\w+)"', html))


def test_form_workers_default_respects_the_pool(app, client):
    app.config["WORKERS"] = 1
    assert input_value(client.get("/searches/new").get_data(as_text=True), "workers") == "1"


def test_form_starts_a_search_and_redirects_to_it(client):
    response = client.post("/searches/new", data=VALID)
    assert response.status_code == 303
    search = db.session.execute(select(Search)).scalar_one()
    assert response.headers["Location"] == f"/searches/{search.id}"
    assert search.name == "form search" and search.layers == [64, 32, 10]
    assert (search.n_trials, search.epochs, search.seed, search.sampler) == (3, 4, 7, "grid")
    assert search.status == QUEUED and len(search.trials) == 3


def test_form_shows_each_message_next_to_its_field(client):
    bad = {**VALID, "lr_min": "abc", "epochs": "0", "layers": "64,x,10", "beta2": "1"}
    response = client.post("/searches/new", data=bad)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert field_error(html, "lr_min") == "must be a number"
    assert "between 1 and" in field_error(html, "epochs")
    assert "whole numbers separated by commas" in field_error(html, "layers")
    assert field_error(html, "beta2") == "must be in [0, 1)"
    assert field_error(html, "trials") is None
    assert input_value(html, "lr_min") == "abc"  # what was typed stays
    assert 'aria-invalid="true"' in html
    assert count_searches() == 0


def test_form_checks_fields_together(client):
    response = client.post(
        "/searches/new", data={**VALID, "lr_min": "0.1", "lr_max": "0.01", "layers": "32,10"}
    )
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert field_error(html, "lr_max") == "must be greater than lr_min"
    assert "64 input features" in field_error(html, "layers")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("lr_min", "1e999"),
        ("lr_max", "nan"),
        ("trials", "-1"),
        ("trials", "9" * 30),
        ("epochs", " "),
        ("seed", "1.5"),
        ("dataset", "../../etc/passwd"),
        ("sampler", "sobol"),
        ("name", "x" * 300),
        ("hidden", "12,abc"),
        ("batch_size", "64.5"),
    ],
)
def test_form_bad_values_give_a_message_not_a_500(client, field, value):
    response = client.post("/searches/new", data={**VALID, field: value})
    assert response.status_code == 400
    assert field_error(response.get_data(as_text=True), field)
    assert count_searches() == 0


def test_form_obeys_the_cap_on_active_searches(app, client):
    app.config["MAX_ACTIVE_SEARCHES"] = 1
    assert client.post("/searches/new", data=VALID).status_code == 303
    refused = client.post("/searches/new", data=VALID)
    assert refused.status_code == 429
    assert "the cap is 1" in refused.get_data(as_text=True)
    assert count_searches() == 1


def test_form_with_csrf_takes_its_token_and_refuses_without(app_config):
    app = create_app({**app_config, "WTF_CSRF_ENABLED": True})
    with app.app_context():
        upgrade(directory=app.config["MIGRATIONS_DIR"])
        client = app.test_client()
        html = client.get("/searches/new").get_data(as_text=True)
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1)
        refused = client.post("/searches/new", data=VALID)
        assert refused.status_code == 400
        assert "CSRF token is missing" in refused.get_data(as_text=True)
        assert client.post("/searches/new", data={**VALID, "csrf_token": token}).status_code == 303
        assert count_searches() == 1
        db.session.remove()


# ---- search page and cancel -----------------------------------------------------------


def test_search_page_hands_its_data_to_the_script(client, make_search):
    search = make_search(trials=2, epochs=3, name="gamma")
    response = client.get(f"/searches/{search.id}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    summary = json.loads(data_attribute(html, "search"))
    assert summary["id"] == search.id and summary["name"] == "gamma"
    for name, url in [
        ("detail-url", f"/api/searches/{search.id}"),
        ("epochs-url", f"/api/searches/{search.id}/epochs"),
        ("poll-url", f"/api/searches/{search.id}/poll"),
        ("cancel-url", f"/api/searches/{search.id}/cancel"),
    ]:
        assert f'data-{name}="{url}"' in html
    assert f'href="/searches/{search.id}/archive.zip"' in html
    assert 'src="/vendor/plotly.min.js" defer' in html and "js/search.js" in html
    assert re.search(r'<form[^>]*id="cancel-form"[^>]*hidden', html)  # finished: no cancel


def test_search_page_draws_and_preloads_every_curve_of_a_small_search(client, make_search):
    search = make_search(trials=20, epochs=2)
    html = client.get(f"/searches/{search.id}").get_data(as_text=True)
    url = f"/api/searches/{search.id}/epochs?after=0"
    assert f'data-first-epochs-url="{url}"' in html and 'rel="preload" as="fetch"' in html
    assert f'href="{url}"' in html  # the preload is what the script fetches first
    assert json.loads(data_attribute(html, "first-trials")) is None
    assert 'data-top-k="0"' in html


def test_search_page_of_many_trials_draws_the_best_ten_first(client, make_search):
    search = make_search(trials=25, epochs=2, diverge=3)
    search.trials[5].best_val_acc = None  # no epoch finished yet
    db.session.commit()
    html = client.get(f"/searches/{search.id}").get_data(as_text=True)
    first = json.loads(data_attribute(html, "first-trials"))
    ranked = sorted(
        (t for t in search.trials if t.best_val_acc is not None),
        key=lambda t: (-t.best_val_acc, t.lr),
    )
    assert first == [t.id for t in ranked[:10]]
    url = f"/api/searches/{search.id}/epochs?after=0&amp;trials={','.join(map(str, first))}"
    assert f'data-first-epochs-url="{url}"' in html and f'href="{url}"' in html
    assert 'data-top-k="10"' in html
    body = client.get(unescape(url)).get_json()
    assert set(body["epochs"]["trial_id"]) == set(first)


def test_running_search_page_offers_cancel(client):
    search = create_search(db.session, SearchSpec(trials=2, epochs=2))
    html = client.get(f"/searches/{search.id}").get_data(as_text=True)
    form = re.search(r'<form[^>]*id="cancel-form"[^>]*>', html).group(0)
    assert f'action="/searches/{search.id}/cancel"' in form and "hidden" not in form
    assert "Cancel search" in html


def test_cancel_button_cancels_and_goes_back(client):
    search = create_search(db.session, SearchSpec(trials=3, epochs=2))
    other = create_search(db.session, SearchSpec(trials=1, epochs=2))
    response = client.post(f"/searches/{search.id}/cancel")
    assert response.status_code == 303
    assert response.headers["Location"] == f"/searches/{search.id}"
    db.session.expire_all()
    assert search.status == CANCELLED and search.cancel_requested
    assert {t.status for t in search.trials} == {CANCELLED}
    assert other.status == QUEUED


def test_cancel_lets_running_trials_finish_their_epoch(client):
    search = create_search(db.session, SearchSpec(trials=2, epochs=2))
    search.trials[0].status = RUNNING
    db.session.commit()
    assert client.post(f"/searches/{search.id}/cancel").status_code == 303
    db.session.expire_all()
    assert search.cancel_requested and search.status != CANCELLED
    assert [t.status for t in search.trials] == [RUNNING, CANCELLED]


def test_cancel_needs_the_csrf_token(app_config):
    app = create_app({**app_config, "WTF_CSRF_ENABLED": True})
    with app.app_context():
        upgrade(directory=app.config["MIGRATIONS_DIR"])
        search = create_search(db.session, SearchSpec(trials=1, epochs=2))
        client = app.test_client()
        assert client.post(f"/searches/{search.id}/cancel").status_code == 400
        db.session.expire_all()
        assert not search.cancel_requested
        html = client.get(f"/searches/{search.id}").get_data(as_text=True)
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1)
        response = client.post(f"/searches/{search.id}/cancel", data={"csrf_token": token})
        assert response.status_code == 303
        db.session.expire_all()
        assert search.status == CANCELLED
        db.session.remove()


def test_cancel_of_an_unknown_search_is_404_and_get_is_405(client):
    assert client.post("/searches/999/cancel").status_code == 404
    assert client.get("/searches/999/cancel").status_code == 405


# ---- trial page -----------------------------------------------------------------------


def test_trial_page_shows_status_log_and_plot(app, client, make_search):
    search = make_search(trials=2, epochs=3)
    trial = search.trials[1]
    write_log(app, trial, lines=3)
    response = client.get(f"/trials/{trial.id}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "[3/3] loss:1.0000,acc_train:0.5000,val_loss:1.1000,acc_val:0.4000" in html
    assert f'src="/trials/{trial.id}/plot.png"' in html
    assert f'href="/trials/{trial.id}/archive.zip"' in html
    assert f'href="/searches/{search.id}"' in html
    assert json.loads(data_attribute(html, "trial"))["id"] == trial.id
    assert 'data-trial-url="/api/trials/' in html and "js/trial.js" in html


def test_trial_page_of_a_queued_trial_asks_for_no_file(client):
    search = create_search(db.session, SearchSpec(trials=1, epochs=2))
    trial = search.trials[0]
    search.trials[0].error = "attempt 1 crashed: boom; re-queued"
    db.session.commit()
    html = client.get(f"/trials/{trial.id}").get_data(as_text=True)
    assert "plot.png" not in html and "no epoch yet" in html
    assert "attempt 1 crashed: boom; re-queued" in html


@pytest.mark.parametrize(
    "url",
    [
        "/searches/999",
        "/trials/999",
        "/searches/999/archive.zip",
        "/trials/999/archive.zip",
        "/trials/999/log.txt",
        "/trials/999/plot.png",
        "/no/such/page",
    ],
)
def test_unknown_ids_are_a_404_page_for_people(client, url):
    response = client.get(url, headers={"Accept": "text/html"})
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert "404" in response.get_data(as_text=True)


def test_a_404_names_what_is_missing(client):
    html = client.get("/searches/999").get_data(as_text=True)
    assert "no search 999" in html and 'href="/"' in html


# ---- every page: assets and the CSP ---------------------------------------------------


def page_urls(make_search) -> list[str]:
    search = make_search(trials=2, epochs=2)
    return [
        "/",
        "/searches/new",
        f"/searches/{search.id}",
        f"/trials/{search.trials[0].id}",
        "/searches/999",
    ]


def test_pages_have_no_inline_script_or_style(client, make_search):
    for url in page_urls(make_search):
        html = client.get(url).get_data(as_text=True)
        scripts = re.findall(r"<script[^>]*>", html)
        assert scripts and all("src=" in s and " defer" in s for s in scripts), url
        assert "<style" not in html and " style=" not in html and "javascript:" not in html, url
        assert not re.search(r"\son\w+=", html), url  # no inline event handlers
        assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html


def test_every_asset_a_page_links_is_served(client, make_search):
    for url in page_urls(make_search):
        html = client.get(url).get_data(as_text=True)
        for asset in re.findall(r'(?:src|href)="(/(?:static|vendor)/[^"]+)"', html):
            response = client.get(asset)
            assert response.status_code == 200, asset
            response.close()


def test_plotly_is_served_from_the_installed_package(client):
    response = client.get("/vendor/plotly.min.js")
    assert response.status_code == 200
    assert response.mimetype == "text/javascript"
    assert response.get_data()[:40].lstrip().startswith(b"/**\n* plotly.js v")
    assert response.cache_control.max_age > 0
    response.close()


def test_plotly_styles_are_a_stylesheet_not_injected(client, make_search):
    css = client.get("/vendor/plotly.css")
    assert css.status_code == 200 and css.mimetype == "text/css"
    text = css.get_data(as_text=True)
    assert ".js-plotly-plot .plotly .modebar{" in text and ".plotly-notifier" in text
    assert "X " not in text and "Y " not in text
    html = client.get(f"/searches/{make_search(trials=1, epochs=1).id}").get_data(as_text=True)
    assert 'id="plotly.js-style-global" class="no-inline-styles"' in html
    assert re.search(r'<template id="[0-9a-f]{64}"></template>', html)


# ---- downloads ------------------------------------------------------------------------


def test_search_archive_holds_every_file(app, client, make_search):
    search = make_search(trials=2, epochs=3)
    for trial in search.trials:
        write_log(app, trial, lines=3)
    response = client.get(f"/searches/{search.id}/archive.zip")
    assert response.status_code == 200 and response.mimetype == "application/zip"
    prefix = f"search-{search.id:04d}"
    assert f'filename="{prefix}.zip"' in response.headers["Content-Disposition"]
    archive = zipfile.ZipFile(io.BytesIO(response.data))
    names = archive.namelist()
    assert f"{prefix}/search.json" in names and f"{prefix}/epochs.csv" in names
    for trial in search.trials:
        folder = f"{prefix}/{artifacts.trial_folder_name(trial.index, trial.lr)}"
        assert f"{folder}/log.txt" in names and f"{folder}/{artifacts.PLOT_NAME}" in names
    detail = json.loads(archive.read(f"{prefix}/search.json"))
    assert detail["search"]["id"] == search.id and len(detail["trials"]) == 2
    assert len(archive.read(f"{prefix}/epochs.csv").decode().splitlines()) == 1 + 2 * 3


def test_search_archive_streams_after_the_view_returned(app, make_search):
    """As under gunicorn: no outer app context keeps the view's session alive."""
    search = make_search(trials=2, epochs=2)
    search_id = search.id
    db.session.remove()

    def download() -> bytes:
        return app.test_client().get(f"/searches/{search_id}/archive.zip").data

    data = contextvars.Context().run(download)
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert sum(n.endswith(artifacts.PLOT_NAME) for n in names) == 2


def test_trial_archive_log_and_plot(app, client, make_search):
    search = make_search(trials=1, epochs=2)
    trial = search.trials[0]
    write_log(app, trial, lines=2)
    archive = client.get(f"/trials/{trial.id}/archive.zip")
    assert archive.status_code == 200
    names = zipfile.ZipFile(io.BytesIO(archive.data)).namelist()
    folder = artifacts.trial_folder_name(trial.index, trial.lr)
    assert {f"{folder}/epochs.csv", f"{folder}/log.txt", f"{folder}/{artifacts.PLOT_NAME}"} <= set(
        names
    )
    log = client.get(f"/trials/{trial.id}/log.txt")
    assert log.status_code == 200 and log.mimetype == "text/plain"
    assert log.get_data(as_text=True).startswith("[1/2] loss:")
    log.close()
    plot = client.get(f"/trials/{trial.id}/plot.png")
    assert plot.status_code == 200 and plot.mimetype == "image/png"
    assert plot.get_data()[:8] == b"\x89PNG\r\n\x1a\n"
    plot.close()


def test_files_of_a_trial_not_yet_run_are_404(client):
    trial = create_search(db.session, SearchSpec(trials=1, epochs=2)).trials[0]
    assert client.get(f"/trials/{trial.id}/log.txt").status_code == 404
    assert client.get(f"/trials/{trial.id}/plot.png").status_code == 404
    assert client.get(f"/trials/{trial.id}/archive.zip").status_code == 200

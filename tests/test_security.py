"""Hostile input, caps and production defaults."""

from __future__ import annotations

import base64
import io
import json
import os
import zipfile

import pytest
from sqlalchemy import func, select

from lrsearch import ROOT, artifacts, create_app
from lrsearch.extensions import db
from lrsearch.models import Search

GOOD = {"dataset": "digits", "layers": [64, 16, 10], "trials": 2, "epochs": 2}


def searches() -> int:
    return db.session.execute(select(func.count()).select_from(Search)).scalar_one()


def test_security_headers_on_every_answer(client, make_search):
    search = make_search(trials=1, epochs=1)
    for url in ("/", "/searches/new", f"/searches/{search.id}", "/api/searches", "/nope"):
        headers = client.get(url).headers
        csp = headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert headers["X-Content-Type-Options"] == "nosniff"


def test_body_size_is_capped(client):
    response = client.post("/api/searches", json={**GOOD, "name": "x" * 100_000})
    assert response.status_code == 413
    assert "reason" in response.get_json()
    assert searches() == 0


def test_concurrent_searches_are_capped(app, client):
    app.config["MAX_ACTIVE_SEARCHES"] = 2
    for _ in range(2):
        assert client.post("/api/searches", json=GOOD).status_code == 201
    refused = client.post("/api/searches", json=GOOD)
    assert refused.status_code == 429 and "cap" in refused.get_json()["reason"]
    assert searches() == 2


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("trials", 1001),
        ("epochs", 1001),
        ("layers", [64] + [8] * 10 + [10]),
        ("layers", [64, 5000, 10]),
    ],
)
def test_caps_on_the_size_of_a_search(client, field, value):
    response = client.post("/api/searches", json={**GOOD, field: value})
    assert response.status_code == 400
    assert field in response.get_json()["errors"]
    assert searches() == 0


def test_the_api_takes_json_only(client, make_search):
    search = make_search(trials=1, epochs=1)
    form = client.post("/api/searches", data={"trials": "2"})
    assert form.status_code == 415
    plain = client.post("/api/searches", data=json.dumps(GOOD), content_type="text/plain")
    assert plain.status_code == 415
    cancel = client.post(f"/api/searches/{search.id}/cancel", data={"x": "1"})
    assert cancel.status_code == 415
    assert searches() == 1


@pytest.mark.parametrize("url", ["/api/searches/1/cancel", "/searches/1/cancel"])
def test_get_on_a_state_changing_route_is_405(client, make_search, url):
    make_search(trials=1, epochs=1)
    assert client.get(url).status_code == 405


def test_forms_need_the_csrf_token(app_config, tmp_path):
    from flask_migrate import upgrade

    app = create_app({**app_config, "WTF_CSRF_ENABLED": True})
    with app.app_context():
        upgrade(directory=app.config["MIGRATIONS_DIR"])
        client = app.test_client()
        response = client.post("/searches/new", data={"trials": "2", "epochs": "17"})
        assert response.status_code == 400
        page = response.get_data(as_text=True)
        assert "CSRF" in page and 'value="17"' in page  # the form comes back, values kept
        cancel = client.post("/searches/1/cancel")
        assert cancel.status_code == 400 and "CSRF" in cancel.get_data(as_text=True)
        assert searches() == 0
        db.session.remove()


@pytest.mark.parametrize(
    "url",
    [
        "/trials/1/../../etc/passwd",
        "/trials/%2e%2e/log.txt",
        "/trials/..%2f..%2fetc/log.txt",
        "/searches/%2e%2e%2f1/archive.zip",
        "/trials//etc/passwd/log.txt",
        "/static/../instance/secret_key",
        "/static/%2e%2e/app.py",
    ],
)
def test_no_user_string_reaches_a_path(client, make_search, url):
    make_search(trials=1, epochs=1)
    response = client.get(url)
    assert response.status_code == 404
    assert b"root:" not in response.data and b"create_app" not in response.data


def test_archives_follow_no_links_and_hold_clean_relative_names(app, client, make_search):
    search = make_search(trials=2, epochs=2)
    trial = search.trials[0]
    folder = artifacts.trial_folder(app.config["DATA_DIR"], search.id, trial.index, trial.lr)
    folder.mkdir(parents=True)
    (folder / "log.txt").write_text("[1/2] ...\n")
    (folder / "passwd").symlink_to("/etc/passwd")
    other = artifacts.trial_folder(app.config["DATA_DIR"], search.id, 1, search.trials[1].lr)
    other.parent.mkdir(parents=True, exist_ok=True)
    other.symlink_to("/etc", target_is_directory=True)
    for url in (f"/searches/{search.id}/archive.zip", f"/trials/{trial.id}/archive.zip"):
        response = client.get(url)
        assert response.status_code == 200
        names = zipfile.ZipFile(io.BytesIO(response.data)).namelist()
        assert names and not any("passwd" in n or n.startswith("/") or ".." in n for n in names)
        assert all(n == os.path.normpath(n) for n in names)
        assert any(n.endswith("log.txt") for n in names)


def test_production_defaults(tmp_path, monkeypatch):
    monkeypatch.delenv("LRSEARCH_SECRET_KEY", raising=False)
    app = create_app({"DATA_DIR": str(tmp_path)})
    assert not app.debug and not app.testing
    key = app.config["SECRET_KEY"]
    assert len(key) >= 32 and key == (tmp_path / "secret_key").read_text()
    assert oct((tmp_path / "secret_key").stat().st_mode & 0o777) == "0o600"
    assert create_app({"DATA_DIR": str(tmp_path)}).config["SECRET_KEY"] == key
    assert create_app({"DATA_DIR": str(tmp_path / "other")}).config["SECRET_KEY"] != key
    assert app.config["SESSION_COOKIE_HTTPONLY"] and app.config["SESSION_COOKIE_SAMESITE"]
    conf = (ROOT / "gunicorn.conf.py").read_text()
    assert '"127.0.0.1:5000"' in conf


def test_a_password_guards_every_page_and_api_call(app_config, make_search):
    from flask_migrate import upgrade

    app = create_app({**app_config, "PASSWORD": "s3cret"})
    with app.app_context():
        upgrade(directory=app.config["MIGRATIONS_DIR"])
        client = app.test_client()
        for url in ("/", "/searches/new", "/api/searches", "/static/css/app.css"):
            response = client.get(url)
            assert response.status_code == 401 and "Basic" in response.headers["WWW-Authenticate"]
        wrong = base64.b64encode(b"any:wrong").decode()
        assert client.get("/", headers={"Authorization": f"Basic {wrong}"}).status_code == 401
        right = {"Authorization": "Basic " + base64.b64encode(b"any:s3cret").decode()}
        assert client.get("/api/searches", headers=right).status_code == 200
        assert client.post("/api/searches", json=GOOD).status_code == 401
        assert client.post("/api/searches", json=GOOD, headers=right).status_code == 201
        db.session.remove()


def test_password_from_the_environment_is_text(monkeypatch, tmp_path):
    monkeypatch.setenv("LRSEARCH_PASSWORD", "12345")
    app = create_app({"DATA_DIR": str(tmp_path)})
    assert app.config["PASSWORD"] == "12345"


def test_the_secret_key_file_is_not_served(tmp_path):
    app = create_app({"DATA_DIR": str(tmp_path)})
    assert (tmp_path / "secret_key").exists()
    client = app.test_client()
    for url in (
        "/secret_key",
        "/static/secret_key",
        "/instance/secret_key",
        "/static/../secret_key",
        "/vendor/../secret_key",
    ):
        response = client.get(url)
        assert response.status_code == 404
        assert app.config["SECRET_KEY"].encode() not in response.data

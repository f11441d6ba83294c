"""A real server (gunicorn, its runner and pool) and headless Chromium driven by Playwright."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from lrsearch import testing
from tests.faults import children_of, pid_alive

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = [*testing.CHROMIUM_ARGS, "--disable-gpu"]
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="session")
def server_data(tmp_path_factory) -> Path:
    """The server's data folder (its SQLite database among it)."""
    return tmp_path_factory.mktemp("server-data")


@pytest.fixture(scope="session")
def server(server_data) -> Iterator[str]:
    """gunicorn with its one runner on a fresh data folder; its base URL.

    Once stopped, none of its processes (web workers, runner, worker pool) may be left.
    """
    data_dir = server_data
    env = {"LRSEARCH_SECRET_KEY": "test", "PYTHONUNBUFFERED": "1"}
    with (data_dir / "server.log").open("w") as log:
        with testing.server(str(data_dir), log=log, **env) as (host, port, process):
            yield f"http://{host}:{port}"
            family = children_of(process.pid)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(pid_alive(p) for p in family):
        time.sleep(0.1)
    left = sorted(p for p in family if pid_alive(p))
    assert not left, f"processes left after the server stopped: {left}"


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Headless Chromium from Debian (never a downloaded browser build)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=testing.CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@dataclass
class Watch:
    """What a page did that it must not: console errors, uncaught errors, outside requests."""

    errors: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # responses >= 400, to explain errors


@pytest.fixture
def watch() -> Watch:
    return Watch()


@pytest.fixture
def page(browser, server, watch) -> Iterator[object]:
    """A fresh page on the server; fails the test on a console error or an outside request."""
    context = browser.new_context(
        base_url=server, viewport={"width": 1440, "height": 900}, accept_downloads=True
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.on("console", lambda m: m.type == "error" and watch.errors.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: watch.errors.append(f"page error: {e}"))

    def check_request(request) -> None:
        host = urlsplit(request.url).hostname
        if request.url.startswith(("data:", "blob:", "about:")) or host == "127.0.0.1":
            return
        watch.outside.append(request.url)

    page.on("request", check_request)
    page.on("response", lambda r: r.status >= 400 and watch.failed.append(f"{r.status} {r.url}"))
    yield page
    context.close()  # stops the page's polling before the server goes
    assert not watch.errors, f"{watch.errors}; failed responses: {watch.failed}"
    assert not watch.outside, f"requests leaving 127.0.0.1: {watch.outside}"


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """test-artifacts/ at the repository root (git-ignored), for screenshots."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS

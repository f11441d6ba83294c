"""A real server (gunicorn, its runner and pool) and headless Chromium driven by Playwright."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = ROOT / "test-artifacts"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Without Chromium, skip the browser tests, except in CI, where they must run."""
    if Path(CHROMIUM).exists() or os.environ.get("CI"):
        return
    skip = pytest.mark.skip(reason=f"{CHROMIUM} is missing: apt-get install chromium")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid: int) -> set[int]:
    """Every living process below `pid` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_until_up(url: str, server: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {server.returncode}")
        try:
            with urllib.request.urlopen(url + "/api/searches", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the server did not answer at {url} within {timeout} s")


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Iterator[str]:
    """gunicorn with its one runner on a fresh data folder; its base URL."""
    port = free_port()
    data_dir = tmp_path_factory.mktemp("server-data")
    env = {
        **os.environ,
        "LRSEARCH_DATA_DIR": str(data_dir),
        "LRSEARCH_BIND": f"127.0.0.1:{port}",
        "LRSEARCH_WORKERS": "2",
        "LRSEARCH_SECRET_KEY": "test",
        "PYTHONUNBUFFERED": "1",
    }
    log = (data_dir / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:app"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, server)
        yield url
    finally:
        family = descendants(server.pid)
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
            pytest.fail("gunicorn did not stop within 30 s of SIGTERM")
        finally:
            log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(alive(p) for p in family):
            time.sleep(0.1)
        left = sorted(p for p in family if alive(p))
        assert not left, f"processes left after the server stopped: {left}"


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Headless Chromium from Debian (never a downloaded browser build)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
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

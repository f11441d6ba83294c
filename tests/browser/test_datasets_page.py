"""The Datasets page in Chromium: upload a CSV and an NPZ, watch them imported, look at
samples, search on one; the network the form would build."""

from __future__ import annotations

import re

import numpy as np
import pytest

from tests.test_catalog import csv_bytes

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def row(page, name: str):
    return page.locator(f"#datasets tbody tr[data-name='{name}']")


def upload(page, name: str, path, label_column: str = "") -> None:
    page.goto("/datasets")
    page.fill("input[name=name]", name)
    page.set_input_files("input[name=file]", str(path))
    page.fill("input[name=label_column]", label_column)
    page.get_by_role("button", name="Upload").click()
    page.wait_for_url(re.compile(r"/datasets$"))


def test_upload_a_csv_and_an_npz_see_them_ready_and_search(page, tmp_path, artifacts_dir):
    csv = tmp_path / "animals.csv"
    csv.write_bytes(csv_bytes(rows=120))
    upload(page, "web-animals", csv, label_column="animal")
    rng = np.random.default_rng(0)
    npz = tmp_path / "pictures.npz"
    np.savez(npz, x_train=rng.integers(0, 255, (60, 28, 28)), y_train=np.arange(60) % 3,
             x_val=rng.integers(0, 255, (15, 28, 28)), y_val=np.arange(15) % 3)  # fmt: skip
    upload(page, "web-pictures", npz)
    for name in ("web-animals", "web-pictures"):  # the page polls until the runner is done
        row(page, name).locator(".status-ready").wait_for(timeout=60_000)
    animals = row(page, "web-animals").inner_text()
    assert "120" in animals and "uploaded animals.csv" in animals
    assert row(page, "web-animals").locator("svg.balance rect").count() == 3
    row(page, "web-pictures").get_by_role("button", name="Samples").click()
    page.locator("#sample-grid canvas").first.wait_for()
    assert page.locator("#sample-grid canvas").count() == 3
    page.screenshot(path=str(artifacts_dir / "datasets-page.png"), full_page=True)

    page.goto("/searches/new")
    page.fill("input[name=dataset]", "web-animals")
    page.fill("input[name=hidden]", "16,8")
    assert page.locator("#network").inner_text() == "network: 4 → 16 → 8 → 3"
    page.fill("input[name=trials]", "2")
    page.fill("input[name=epochs]", "3")
    page.get_by_role("button", name="Start search").click()
    page.wait_for_url(re.compile(r"/searches/\d+$"))
    page.wait_for_function(
        "() => document.getElementById('search-status').textContent === 'completed'",
        timeout=60_000,
    )


def test_a_bad_file_shows_why_it_failed(page, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"a,b,label\n1,2,x\n3,oops,y\n")
    upload(page, "web-bad", bad)
    failed = row(page, "web-bad")
    failed.locator(".status-failed").wait_for(timeout=60_000)
    assert "row 3" in failed.inner_text()
    page.once("dialog", lambda dialog: dialog.accept())
    failed.get_by_role("button", name="Remove").click()
    page.wait_for_url(re.compile(r"/datasets$"))
    assert row(page, "web-bad").count() == 0

"""The LR range test in the browser: started from the form, its page plots loss against rate
with the suggested range shaded, and "Search this range" fills the new-search form."""

from __future__ import annotations

import re

from tests.browser.test_dashboard import wait_for_status


def test_a_range_test_shades_its_range_and_fills_the_search_form(page, watch):
    page.goto("/searches/new")
    page.locator("#range-test-link").click()
    page.wait_for_url("**/searches/new?kind=range_test")
    # The form switched to a range test: its bounds, no trials, a button that says so.
    assert page.input_value("select[name=kind]") == "range_test"
    assert (page.input_value("input[name=lr_min]"), page.input_value("input[name=lr_max]")) == (
        "1e-07",
        "10",
    )
    assert page.locator("input[name=trials]").is_hidden()
    assert page.locator("input[name=iterations]").is_visible()
    page.fill("input[name=name]", "browser range test")
    page.get_by_role("button", name="Start range test").click()
    page.wait_for_url(re.compile(r"/searches/\d+$"))
    wait_for_status(page, "completed", timeout=60_000)
    page.wait_for_function("() => !document.getElementById('search-range').hidden")

    chart = page.evaluate(
        """() => {
             const gd = document.getElementById('range-chart');
             return {axis: gd._fullLayout.xaxis.type, shapes: gd.layout.shapes,
                     traces: gd.data.map((t) => ({name: t.name, n: t.x.length})),
                     drawn: gd.querySelectorAll('.shapelayer path').length};
           }"""
    )
    assert chart["axis"] == "log"
    assert [t["name"] for t in chart["traces"]] == [
        "batch loss",
        "smoothed (β 0.98)",
        "centred median (suggestion)",
    ]
    assert all(t["n"] >= 20 for t in chart["traces"])
    (shape,) = chart["shapes"]
    assert chart["drawn"] >= 1
    detail = page.request.get(page.url.replace("/searches/", "/api/searches/")).json()
    suggestion = detail["range_test"]["suggestion"]
    assert (shape["x0"], shape["x1"]) == (suggestion["lr_min"], suggestion["lr_max"])
    assert 1e-7 < shape["x0"] < shape["x1"] < 10
    shown = page.locator("#suggested-range").inner_text()
    assert re.fullmatch(r"\S+ – \S+", shown)

    page.locator("#search-range").click()
    page.wait_for_url(re.compile(r"/searches/new\?"))
    assert page.input_value("select[name=kind]") == "search"
    low, high = (float(page.input_value(f"input[name={n}]")) for n in ("lr_min", "lr_max"))
    assert abs(low / suggestion["lr_min"] - 1) < 0.01
    assert abs(high / suggestion["lr_max"] - 1) < 0.01
    assert page.input_value("input[name=dataset]") == "digits"
    assert page.locator("input[name=trials]").is_visible()
    page.get_by_role("button", name="Start search").click()
    page.wait_for_url(re.compile(r"/searches/\d+$"))
    assert page.locator("#chart-acc").count() == 1

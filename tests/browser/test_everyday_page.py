"""What a person sees of issue 21's changes: a failed search's errors and its empty charts,
the delete confirmation, cancelling one trial from the ranking, the trial page's legend."""

from __future__ import annotations

import re

from tests.browser.test_dashboard import wait_for_rows, wait_for_status


def insert_search(server_data, name: str, status: str, trials: list[tuple[str, str | None]]):
    """A search made in the server's database directly, its trials in the given (status,
    error), run by no process of the server's (a queued one its runner would claim). Its
    id."""
    from lrsearch import create_app
    from lrsearch.extensions import db
    from lrsearch.models import Search, Trial
    from lrsearch.settings import SearchSpec

    app = create_app({"DATA_DIR": str(server_data), "SECRET_KEY": "test"})
    with app.app_context():
        search = Search.from_spec(SearchSpec(trials=len(trials), epochs=3, name=name),
                                  status=status)  # fmt: skip
        search.trials = [
            Trial(index=i, lr=10 ** (-4 + i / 2), seed=i, status=s, attempt=1, error=e,
                  worker="elsewhere:1")
            for i, (s, e) in enumerate(trials)
        ]  # fmt: skip
        db.session.add(search)
        db.session.commit()
        return search.id


def test_a_failed_search_shows_why_and_its_charts_say_so(page, server_data, watch):
    boom = "ValueError: boom (attempt 2 of 2)"
    made = [("failed", boom), ("failed", boom), ("failed", "OSError: disk")]
    failed = insert_search(server_data, "all failed", "failed", made)
    page.goto(f"/searches/{failed}")
    wait_for_rows(page, 3)
    assert page.locator("#error-summary").is_visible()
    items = page.locator("#error-list li").all_inner_texts()
    assert items == ["2 trials ValueError: boom", "1 trial OSError: disk"]
    assert page.locator("#status-note").inner_text() == "failed: 3 failed"
    for chart in ("chart-acc", "chart-loss", "scatter-acc", "scatter-loss"):
        assert page.locator(f"#{chart} .chart-empty").inner_text() == "every trial failed"
    assert page.locator("#chart-acc .xaxislayer-above").count() == 0  # no empty axes
    # the list: a red bar, the note beside the badge
    page.goto("/")
    row = page.locator(f"tr[data-id='{failed}']")
    part = row.locator(".status-bar .part-failed")
    assert part.count() == 1 and part.evaluate("(e) => e.style.width") == "100%"
    assert row.locator(".status-bar .part-completed").count() == 0
    assert "3 failed" in row.inner_text()

    # running elsewhere, both (a queued one the server's runner would claim and train)
    running = insert_search(server_data, "nothing yet", "running",
                            [("running", None), ("running", None)])  # fmt: skip
    page.goto(f"/searches/{running}")
    wait_for_rows(page, 2)
    assert page.locator("#chart-acc .chart-empty").inner_text() == "no epochs yet"
    assert page.locator("#error-summary").is_hidden()


def test_delete_asks_first_and_then_removes_the_search(page, server_data, watch):
    search_id = insert_search(server_data, "to delete", "completed", [("completed", None)])
    page.goto(f"/searches/{search_id}")
    asked = []

    def answer(dialog) -> None:
        asked.append(dialog.message)
        dialog.dismiss() if len(asked) == 1 else dialog.accept()

    page.on("dialog", answer)
    page.locator("#delete-button").click()
    assert "cannot be undone" in asked[0] and page.url.endswith(f"/searches/{search_id}")
    page.locator("#delete-button").click()
    page.wait_for_url(re.compile(r"/$"))
    assert len(asked) == 2
    assert page.locator(f"tr[data-id='{search_id}']").count() == 0
    assert page.request.get(f"/api/searches/{search_id}").status == 404


def test_cancel_one_trial_from_the_ranking(page, server, watch):
    settings = {"name": "browser cancel one", "dataset": "synthetic:20000x64x10",
                "hidden": "256,256", "trials": 2, "epochs": 300, "workers": 2}  # fmt: skip
    search_id = page.request.post("/api/searches", data=settings).json()["id"]
    try:
        page.goto(f"/searches/{search_id}")
        page.wait_for_function(
            "() => document.querySelectorAll('#ranking .status-running').length === 2",
            timeout=60_000,
        )
        page.locator("#ranking tbody tr").first.locator("button.cancel-trial").click()
        page.wait_for_function(
            "() => document.querySelectorAll('#ranking .status-cancelled').length === 1",
            timeout=60_000,
        )
        assert page.locator("#ranking .status-running").count() == 1  # the other goes on
        trials = page.request.get(f"/api/searches/{search_id}").json()["trials"]
        cancelled = next(t for t in trials if t["status"] == "cancelled")
        assert 0 < cancelled["epochs_done"] < 300  # stopped at an epoch boundary, kept
    finally:
        page.request.post(f"/api/searches/{search_id}/cancel", data={})
    wait_for_status(page, "cancelled", timeout=60_000)


def test_the_trial_pages_toolbar_leaves_the_legend_readable(page, server_data, watch):
    search_id = insert_search(server_data, "legend", "running", [("running", None)])
    trial_id = page.request.get(f"/api/searches/{search_id}").json()["trials"][0]["id"]
    page.goto(f"/trials/{trial_id}")
    assert page.locator("#chart-loss .chart-empty").inner_text() == "no epochs yet"
    from lrsearch import create_app
    from lrsearch.extensions import db
    from lrsearch.models import Epoch

    app = create_app({"DATA_DIR": str(server_data), "SECRET_KEY": "test"})
    with app.app_context():
        for e in (1, 2):
            values = {"loss": 1 / e, "acc_train": 0.5, "val_loss": 1.1 / e, "acc_val": 0.4}
            db.session.add(Epoch(trial_id=trial_id, attempt=1, epoch=e, seconds=0.1, **values))
        db.session.commit()
    page.goto(f"/trials/{trial_id}")
    page.wait_for_selector("#chart-loss .legend")
    page.hover("#chart-loss")  # the toolbar shows
    boxes = page.evaluate(
        """() => ['.modebar', '.legend'].map((s) => {
             const r = document.querySelector('#chart-loss ' + s).getBoundingClientRect();
             return [r.left, r.top, r.right, r.bottom];
           })"""
    )
    (bl, bt, br, bb), (ll, lt, lr, lb) = boxes
    assert br <= ll or lr <= bl or bb <= lt or lb <= bt  # no overlap

"""The dashboard in headless Chromium against a real server, runner and worker pool."""

from __future__ import annotations

import io
import json
import re
import urllib.request
import zipfile

import pytest
from sqlalchemy import func, select, update

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SMALL = {
    "name": "browser small",
    "trials": "3",
    "epochs": "8",
    "lr_min": "0.0003",
    "lr_max": "0.03",
}
# Long enough (minutes) to be cancelled while it runs; a running trial stops within an epoch.
LONG = {
    "name": "browser long",
    "dataset": "synthetic:10000x64x10",
    "layers": "64,256,256,10",
    "trials": "4",
    "epochs": "200",
}


def start_search(page, settings: dict[str, str]) -> int:
    """Fill the new-search form (over its defaults) and submit; the new search's id."""
    page.goto("/")
    page.get_by_role("link", name="New search").first.click()
    page.wait_for_url("**/searches/new")
    for name, value in settings.items():
        page.fill(f"input[name={name}]", value)
    page.get_by_role("button", name="Start search").click()
    page.wait_for_url(re.compile(r"/searches/\d+$"))
    return int(page.url.rsplit("/", 1)[1])


def wait_for_status(page, status: str, timeout: float = 15_000) -> None:
    """Wait until the page's status badge reads `status`."""
    page.wait_for_function(
        "(status) => document.getElementById('search-status').textContent === status",
        arg=status,
        timeout=timeout,
    )


# The accuracy chart holds n curves; false, not an error, before Plotly has drawn it (a
# predicate that throws ends the wait at once).
CURVES = "() => document.getElementById('chart-acc').data?.length === {}"


def wait_for_rows(page, n: int) -> None:
    """Wait until the ranking table shows n rows."""
    page.wait_for_function(
        "(n) => document.querySelectorAll('#ranking tbody tr').length === n", arg=n
    )


def traces(page, chart: str, role: str) -> list[dict]:
    """The traces of a Plotly chart that play `role` (val, train, scatter)."""
    return page.evaluate(
        """([id, role]) => document.getElementById(id).data
             .filter((t) => t.meta && t.meta.role === role)
             .map((t) => ({trial: t.meta.trial, points: t.x.length, name: t.name}))""",
        [chart, role],
    )


def ranking_column(page, header: str) -> list[str]:
    """The cells of one ranking column, top to bottom."""
    index = [h.strip() for h in page.locator("#ranking thead th").all_text_contents()].index(header)
    return page.locator(f"#ranking tbody tr td:nth-child({index + 1})").all_inner_texts()


@pytest.fixture(scope="module")
def finished(browser, server, artifacts_dir) -> dict:
    """A small search started from the form and watched to the end, without reloading."""
    context = browser.new_context(base_url=server, viewport={"width": 1440, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(str(e)))
    search_id = start_search(page, SMALL)
    page.evaluate("window.__sameDocument = true")
    page.wait_for_function(
        """() => document.getElementById('progress').value
                   === document.getElementById('progress').max
                 && document.getElementById('progress-percent').textContent === '100%'""",
        timeout=90_000,
    )
    wait_for_status(page, "completed")
    assert page.evaluate("window.__sameDocument"), "the page reloaded"
    # A poll's redraw may come a little later than its summary (see search.js).
    page.wait_for_function(
        """(epochs) => document.getElementById('chart-acc').data
                         .filter((t) => t.meta && t.meta.role === 'val')
                         .every((t) => t.x.length === epochs)""",
        arg=int(SMALL["epochs"]),
    )
    page.wait_for_timeout(300)  # let Plotly finish drawing before the picture
    page.screenshot(path=str(artifacts_dir / "search-page.png"), full_page=True)
    result = {
        "id": search_id,
        "errors": errors,
        "val": traces(page, "chart-acc", "val"),
        "trials": ranking_column(page, "Trial"),
    }
    context.close()
    return result


def test_form_search_runs_to_completion_live(finished):
    assert finished["errors"] == []
    assert len(finished["trials"]) == 3


def test_accuracy_chart_holds_one_trace_per_trial(finished):
    val = finished["val"]
    assert len(val) == 3
    assert len({t["trial"] for t in val}) == 3
    assert all(t["points"] == 8 for t in val)


def test_finished_search_page(page, finished):
    page.goto(f"/searches/{finished['id']}")
    wait_for_rows(page, 3)
    assert page.locator("#answer-best").inner_text().startswith("lr = ")
    assert page.locator("#ranking tr.best").count() == 1
    assert len(traces(page, "chart-acc", "val")) == 3
    page.check("#show-train")
    assert len(traces(page, "chart-acc", "train")) == 3
    assert len(traces(page, "chart-loss", "val")) == 3
    scatter = page.evaluate("document.getElementById('scatter-acc').data.length")
    assert scatter >= 1
    page.select_option("#top-k", "5")
    assert len(traces(page, "chart-acc", "val")) == 3


def test_sort_ranking_by_gap(page, finished):
    page.goto(f"/searches/{finished['id']}")
    wait_for_rows(page, 3)
    page.get_by_role("button", name="Train–val gap").click()
    header = page.locator("#ranking th[data-sort=gap]")
    assert header.get_attribute("aria-sort") == "ascending"
    gaps = [abs(float(g.replace("−", "-"))) for g in ranking_column(page, "Train–val gap")]
    assert gaps == sorted(gaps)
    page.get_by_role("button", name="Train–val gap").click()
    assert header.get_attribute("aria-sort") == "descending"
    gaps = [abs(float(g.replace("−", "-"))) for g in ranking_column(page, "Train–val gap")]
    assert gaps == sorted(gaps, reverse=True)


def test_trial_page(page, finished):
    page.goto(f"/searches/{finished['id']}")
    page.locator("#ranking tbody tr td:nth-child(2) a").first.click()
    page.wait_for_url(re.compile(r"/trials/\d+$"))
    page.wait_for_function("() => document.getElementById('chart-acc').data?.length === 2")
    assert page.locator("#trial-status").inner_text() == "completed"
    assert page.locator("#log").inner_text().splitlines()[0].startswith("[1/8] loss:")
    assert page.locator("#plot").is_visible()
    assert page.evaluate("document.getElementById('plot').naturalWidth") > 0


def test_archive_download(page, finished):
    page.goto(f"/searches/{finished['id']}")
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download archive.zip").click()
    download = download_info.value
    assert download.suggested_filename == f"search-{finished['id']:04d}.zip"
    with zipfile.ZipFile(download.path()) as archive:
        names = archive.namelist()
        prefix = f"search-{finished['id']:04d}/"
        assert prefix + "search.json" in names and prefix + "epochs.csv" in names
        folders = {n.split("/")[1] for n in names if n.count("/") == 2}
        assert len(folders) == 3
        for folder in folders:
            assert f"{prefix}{folder}/log.txt" in names
            assert any(n.startswith(f"{prefix}{folder}/") and n.endswith(".png") for n in names)
        detail = json.loads(archive.read(prefix + "search.json"))
        assert detail["search"]["status"] == "completed"
        rows = archive.read(prefix + "epochs.csv").decode().splitlines()
        assert len(rows) == 1 + 3 * 8


def test_cancel_a_running_search(page, server):
    search_id = start_search(page, LONG)
    page.wait_for_function(
        "() => document.getElementById('search-status').textContent === 'running'"
    )
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Cancel search").click()
    wait_for_status(page, "cancelled", timeout=30_000)
    assert page.locator("#cancel-form").is_hidden()
    with urllib.request.urlopen(f"{server}/api/searches/{search_id}") as response:
        detail = json.load(response)
    assert detail["search"]["status"] == "cancelled"
    assert {t["status"] for t in detail["trials"]} <= {"cancelled", "completed"}
    assert detail["search"]["epochs_done"] < detail["search"]["epochs_planned"]


def test_many_trials_draw_the_best_ten_curves_and_rows_first(page, server):
    """Watched live, then reloaded: the page fetches the curves it draws, the rest on demand,
    and lays out the ranking's first 100 rows until asked for all."""
    settings = {"name": "browser many", "trials": 110, "epochs": 3, "workers": 2}
    search_id = page.request.post("/api/searches", data=settings).json()["id"]
    page.goto(f"/searches/{search_id}")  # while it runs: the best ten change as it goes
    wait_for_status(page, "completed", timeout=90_000)
    detail = page.request.get(f"/api/searches/{search_id}").json()
    ranked = sorted(detail["trials"], key=lambda t: (-t["best_val_acc"], t["lr"]))
    best = {t["id"] for t in ranked[:10]}

    def drawn() -> dict[int, int]:
        return {t["trial"]: t["points"] for t in traces(page, "chart-acc", "val")}

    page.wait_for_function(  # the last redraw may come a little after the summary's
        """(ids) => { const data = document.getElementById('chart-acc').data;
                      return data.length === ids.length
                        && data.every((t) => ids.includes(t.meta.trial) && t.x.length === 3); }""",
        arg=sorted(best),
    )
    assert drawn() == dict.fromkeys(best, 3)
    fetched: list = []
    page.on("response", lambda r: "/epochs?" in r.url and fetched.append(r))
    page.reload()
    wait_for_rows(page, 100)
    assert page.locator("#ranking-shown").inner_text() == "the first 100 of 110 trials"
    page.wait_for_function(CURVES.format(10))
    assert drawn() == dict.fromkeys(best, 3)
    rows = [len(r.json()["epochs"]["id"]) for r in fetched]
    assert sum(rows) == 10 * 3, rows  # the ten curves' epochs, none of the other hundred's
    page.get_by_role("button", name="lr").click()  # sorted by rate: the lowest 100 rates
    lowest = sorted(detail["trials"], key=lambda t: t["lr"])[:100]
    assert ranking_column(page, "Trial") == [str(t["index"]) for t in lowest]
    page.get_by_role("button", name="Show all 110").click()
    wait_for_rows(page, 110)
    assert page.locator("#ranking-more").is_hidden()
    page.select_option("#top-k", "0")  # all trials: their curves are fetched now
    page.wait_for_function(
        """() => { const data = document.getElementById('chart-acc').data;
                   return data.length === 110 && data.every((t) => t.x.length === 3); }"""
    )
    page.select_option("#top-k", "5")
    assert set(drawn()) == {t["id"] for t in ranked[:5]}


def test_an_epoch_committed_after_a_later_one_still_reaches_its_curve(
    page, server, server_data, monkeypatch
):
    """Two PostgreSQL transactions may commit in either order, so a page's epoch-id cursor
    can pass over an epoch not yet visible: the page sees the gap and fetches that curve
    again. Here the rows are written as a worker elsewhere would, ids out of order."""
    from lrsearch import create_app
    from lrsearch.extensions import db
    from lrsearch.models import COMPLETED, RUNNING, Epoch, Search, Trial, utcnow
    from lrsearch.search.sampler import create_search
    from lrsearch.settings import SearchSpec

    app = create_app({"DATA_DIR": str(server_data), "SECRET_KEY": "test"})

    def add_epoch(trial_id: int, epoch: int, row_id: int | None = None) -> None:
        db.session.add(
            Epoch(id=row_id, trial_id=trial_id, attempt=1, epoch=epoch, loss=1.0 / epoch,
                  acc_train=0.5, val_loss=1.0 / epoch, acc_val=0.1 * epoch, seconds=0.1)
        )  # fmt: skip
        db.session.execute(
            update(Trial)
            .where(Trial.id == trial_id)
            .values(epochs_done=epoch, updated_at=utcnow(), heartbeat_at=utcnow())
        )
        db.session.commit()

    with app.app_context():
        # Running elsewhere from its first commit on, so that this server's runner never sees
        # it queued (it would claim and train it) and neither claims nor times it out.
        with monkeypatch.context() as patch:
            patch.setattr(db.session, "commit", db.session.flush)
            search = create_search(db.session, SearchSpec(trials=1, epochs=5, name="late"))
        search.status = RUNNING
        trial = search.trials[0]
        trial.status, trial.attempt, trial.worker = RUNNING, 1, "elsewhere:1"
        trial.started_at = utcnow()
        db.session.commit()
        search_id, trial_id = search.id, trial.id
        add_epoch(trial_id, 1)
        page.goto(f"/searches/{search_id}")
        page.wait_for_function(CURVES.format(1))
        newest = db.session.execute(select(func.max(Epoch.id))).scalar()
        add_epoch(trial_id, 3, row_id=newest + 10)  # committed first
        with page.expect_response(lambda r: "/poll?" in r.url and f"after={newest + 10}" in r.url):
            pass  # a poll has gone past epoch 3's id
        add_epoch(trial_id, 2, row_id=newest + 5)  # then the earlier epoch, below the cursor
        page.wait_for_function(
            "() => document.getElementById('chart-acc').data?.[0]?.x.join() === '1,2,3'"
        )
        db.session.execute(update(Trial).where(Trial.id == trial_id).values(status=COMPLETED))
        db.session.execute(update(Search).where(Search.id == search_id).values(status=COMPLETED))
        db.session.commit()
        db.engine.dispose()


def test_every_page_loads_cleanly(page, finished, watch):
    trial_url = page.request.get(f"/api/searches/{finished['id']}").json()["trials"][0]["url"]
    for path in ["/", "/searches/new", f"/searches/{finished['id']}", trial_url]:
        page.goto(path)
        page.wait_for_load_state("networkidle")
    page.goto("/")
    assert page.locator("table.searches-table tbody tr").count() >= 1
    assert watch.errors == [] and watch.outside == []


def test_form_shows_errors_next_to_fields(page, watch):
    page.goto("/searches/new")
    page.fill("input[name=lr_min]", "0.1")
    page.fill("input[name=lr_max]", "0.01")
    page.fill("input[name=layers]", "64,abc")
    page.get_by_role("button", name="Start search").click()
    assert page.locator(".field.has-error").count() == 2
    assert "must be greater than lr_min" in page.locator(".field:has(#lr_max)").inner_text()
    assert "whole numbers" in page.locator(".field:has(#layers)").inner_text()
    assert page.input_value("input[name=lr_min]") == "0.1"
    # The answer is a 400, which Chromium reports in the console: expected here, once.
    assert watch.failed == [f"400 {page.url}"]
    assert len(watch.errors) == 1 and "status of 400" in watch.errors[0]
    watch.errors.clear()


def test_search_json_api_is_json(server):
    with urllib.request.urlopen(f"{server}/api/searches") as response:
        body = json.load(io.TextIOWrapper(response, encoding="utf-8"))
    assert "searches" in body


def test_the_page_ranks_by_the_servers_keys_and_shows_its_window(page, server, server_data):
    """Failed and diverged trials last, a tie in accuracy by the lower rate: the order the
    API's rank keys give, which the page does not work out itself; the healthiest curve's
    window, before any trial completes, as the API says it."""
    from lrsearch import create_app
    from lrsearch.extensions import db
    from lrsearch.models import COMPLETED, DIVERGED, FAILED, RUNNING, Search, Trial
    from lrsearch.settings import SearchSpec

    app = create_app({"DATA_DIR": str(server_data), "SECRET_KEY": "test"})
    rates = [(0.001, 1), (0.003, 2), (0.002, 3), (0.004, 4), (0.005, 5)]
    # (status, best val acc): the best one failed; a tie between the second and the third,
    # the third with the lower rate
    made = [(FAILED, 0.99), (RUNNING, 0.90), (RUNNING, 0.90), (DIVERGED, 0.95), (RUNNING, 0.50)]
    with app.app_context():
        search = Search.from_spec(SearchSpec(trials=5, epochs=3, name="ranked"), status=RUNNING)
        search.trials = [
            Trial(index=i, lr=lr, seed=seed, status=status, attempt=1, epochs_done=1,
                  best_val_acc=best, best_epoch=1, worker="elsewhere:1")
            for i, ((lr, seed), (status, best)) in enumerate(zip(rates, made, strict=True))
        ]  # fmt: skip
        db.session.add(search)  # running elsewhere: this server's runner never claims it
        db.session.commit()
        search_id = search.id
        page.goto(f"/searches/{search_id}")
        wait_for_rows(page, 5)
        detail = page.request.get(f"/api/searches/{search_id}").json()
        by_key = sorted(detail["trials"], key=lambda t: t["rank_key"])
        assert [t["index"] for t in by_key] == [2, 1, 4, 0, 3]  # then the unranked
        assert ranking_column(page, "Trial") == [str(t["index"]) for t in by_key]
        assert detail["healthy_within"] == 0.05
        assert "within 5 points of the top" in page.locator("#answer-healthy-note").inner_text()
        db.session.execute(
            update(Trial).where(Trial.search_id == search_id).values(status=COMPLETED)
        )
        db.session.execute(update(Search).where(Search.id == search_id).values(status=COMPLETED))
        db.session.commit()
        db.engine.dispose()


def test_pruned_trials_show_as_pruned(page, server):
    """ASHA's pruned trials: their badge, their place below the completed ones, a dashed
    curve that stops at its rung, and their count in the progress card."""
    settings = {"name": "browser asha", "trials": 9, "epochs": 9, "lr_min": 1e-5,
                "lr_max": 3e-2, "sampler": "grid", "workers": 1, "seed": 4,
                "scheduler": "asha", "reduction_factor": 3, "grace_period": 1}  # fmt: skip
    search_id = page.request.post("/api/searches", data=settings).json()["id"]
    page.goto(f"/searches/{search_id}")
    wait_for_status(page, "completed", timeout=90_000)
    wait_for_rows(page, 9)
    statuses = ranking_column(page, "Status")
    pruned = statuses.count("pruned")
    assert pruned >= 3 and statuses == sorted(statuses, key=lambda s: s == "pruned")
    assert f"{pruned} pruned" in page.locator("#counts").inner_text()
    curves = page.evaluate(
        """() => document.getElementById('chart-acc').data
             .filter((t) => t.meta && t.meta.role === 'val')
             .map((t) => ({pruned: t.meta.pruned, dash: t.line.dash, points: t.x.length}))"""
    )
    dashed = [c for c in curves if c["pruned"]]
    assert len(dashed) == pruned and all(c["dash"] == "dash" for c in dashed)
    assert all(c["points"] < 9 for c in dashed)
    assert all(c["dash"] == "solid" and c["points"] == 9 for c in curves if not c["pruned"])


def test_refine_then_compare_with_the_parent(page, server, watch):
    """The Refine button on a finished search starts a child around its best rate; the
    child's page links back and to a comparison, whose charts draw both."""
    settings = {"name": "browser parent", "trials": 3, "epochs": 3, "workers": 2}
    parent_id = page.request.post("/api/searches", data=settings).json()["id"]
    page.goto(f"/searches/{parent_id}")
    wait_for_status(page, "completed", timeout=60_000)
    page.reload()
    page.fill("#refine-form input[name=trials]", "2")
    page.get_by_role("button", name="Refine around the best").click()
    page.wait_for_url(re.compile(r"/searches/\d+$"))
    assert page.url.rsplit("/", 1)[1] != str(parent_id)
    assert page.locator("#parent-link").inner_text() == f"#{parent_id}"
    wait_for_status(page, "completed", timeout=60_000)
    page.locator("#compare-parent").click()
    page.wait_for_function("() => document.getElementById('chart-rates').data?.length === 2")
    assert page.locator("#compare-table tbody tr").count() == 2

"""The LR range test: the test itself, its suggestion on a known curve and on digits, the
settings of kind range_test, and the test through the CLI, the API and the archive."""

from __future__ import annotations

import io
import math
import zipfile
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest

from lrsearch.extensions import db
from lrsearch.models import RangePoint as StoredPoint
from lrsearch.models import Search
from lrsearch.settings import SpecError, parse_spec
from lrsearch.training import Hyperparameters, load_dataset, train
from lrsearch.training.range_test import (
    SMOOTHING,
    STOP_FACTOR,
    RangePoint,
    range_test,
    rate_at,
    suggest_range,
)

LIMITS = {"MAX_TRIALS": 1000, "MAX_EPOCHS": 1000, "MAX_TRIAL_EPOCHS": 10**6,
          "MAX_WORKERS": 64, "MAX_LAYERS": 10, "MAX_WIDTH": 4096}  # fmt: skip


def curve_points(loss_at, lr_min=1e-7, lr_max=10.0, n=100, noise=0.0, seed=0) -> list[RangePoint]:
    """Points of a loss curve given as a function of the rate, with the test's smoothing."""
    rng = np.random.default_rng(seed)
    points, average = [], 0.0
    for step in range(1, n + 1):
        lr = rate_at(step, lr_min, lr_max, n)
        loss = loss_at(lr) * (1 + noise * rng.standard_normal())
        average = SMOOTHING * average + (1 - SMOOTHING) * loss
        points.append(RangePoint(step, lr, loss, average / (1 - SMOOTHING**step)))
    return points


def valley(lr: float) -> float:
    """2.3 while the rate is too small; falls between 1e-4 and 1e-2 (steepest at 1e-3) to
    its lowest, 0.2, at 1e-2; explodes past it."""
    x = math.log10(lr)
    if x <= -2:
        return 0.2 + 2.1 / (1 + math.exp(4 * (x + 3)))
    return 0.2 + 40 * (x + 2) ** 2


# ---- the suggestion on a known curve ---------------------------------------------------


@pytest.mark.parametrize("noise", [0.0, 0.05])
def test_the_suggestion_on_a_curve_with_a_known_valley(noise):
    points = curve_points(valley, noise=noise, seed=3)
    points[60] = RangePoint(61, points[60].lr, 9.0, points[60].smoothed)  # one lone spike
    s = suggest_range(points)
    # The valley's floor, read off the median of 11 batches (5 either side, 0.4 decades at
    # 12.4 batches a decade): a steep wall on its right pulls it left by up to that much.
    assert -0.45 <= math.log10(s.min_loss_lr / 1e-2) <= 0.1
    assert s.lr_max == pytest.approx(s.min_loss_lr / 10)  # a decade below it
    assert abs(math.log10(s.steepest / 1e-3)) <= 0.3  # where the fall is steepest
    # The lower end: where a tenth of the fall is made (near 10**-4.2), but at least a
    # decade below the upper end.
    assert 10**-4.7 <= s.lr_min <= s.lr_max / 10 * (1 + 1e-12)
    assert valley(s.lr_min) > 2.0


def test_no_suggestion_where_the_loss_never_falls():
    assert suggest_range(curve_points(lambda lr: 2.3, noise=0.02)) is None
    # ...nor where it only rises (the range starts past any useful rate)
    assert suggest_range(curve_points(lambda lr: 2.3 + lr, lr_min=1e-2)) is None
    assert suggest_range([]) is None


# ---- the test itself -------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return load_dataset("digits", str(tmp_path_factory.mktemp("data")), seed=0)


def hyper(data, **values) -> Hyperparameters:
    return Hyperparameters(layers=[data.n_features, 64, data.n_classes], **values)


def test_the_rate_grows_geometrically_and_the_test_stops_at_four_times_the_minimum(digits):
    points = range_test(digits, hyper(digits), 1e-7, 10.0, 100, seed=1)
    assert points[0].lr == 1e-7 and points[0].smoothed == points[0].loss  # bias-corrected
    ratios = [b.lr / a.lr for a, b in zip(points, points[1:], strict=False)]
    assert np.allclose(ratios, (10.0 / 1e-7) ** (1 / 99))
    assert [p.step for p in points] == list(range(1, len(points) + 1))
    # digits cannot learn at a rate of 10: the loss blows up before the last batch
    assert len(points) < 100
    lowest = min(p.smoothed for p in points[:-1])
    assert points[-1].smoothed > STOP_FACTOR * lowest or not math.isfinite(points[-1].smoothed)
    assert all(p.smoothed <= STOP_FACTOR * lowest for p in points[:-1])


def test_the_test_is_fixed_by_its_seed(digits):
    first = range_test(digits, hyper(digits), 1e-6, 1.0, 40, seed=5)
    assert first == range_test(digits, hyper(digits), 1e-6, 1.0, 40, seed=5)
    assert first != range_test(digits, hyper(digits), 1e-6, 1.0, 40, seed=6)


def test_the_test_runs_its_iterations_past_an_epoch(digits):
    """A narrow, harmless range: no stop, as many batches as asked, over several epochs."""
    points = range_test(digits, hyper(digits, batch_size=256), 1e-5, 1e-4, 30, seed=0)
    assert len(points) == 30 and points[-1].lr == pytest.approx(1e-4)


def test_on_digits_the_suggested_range_trains_well_and_its_edges_less(digits):
    """The middle of the suggested range trains digits well in 20 epochs; a rate two
    decades below the range's lower end does not."""
    s = suggest_range(range_test(digits, hyper(digits), 1e-7, 10.0, 100, seed=0))
    assert s is not None and 1e-7 < s.lr_min < s.lr_max < 10
    middle = math.sqrt(s.lr_min * s.lr_max)

    def accuracy(lr: float) -> float:
        result = train(digits, hyper(digits, epochs=20), lr, seed=0)
        return max(e.acc_val for e in result.history)

    assert accuracy(middle) > 0.93
    assert accuracy(s.lr_min / 100) < accuracy(middle) - 0.2


def test_too_few_iterations_are_refused(digits):
    with pytest.raises(ValueError, match="at least 20"):
        range_test(digits, hyper(digits), 1e-7, 10.0, 19)


# ---- settings --------------------------------------------------------------------------


def test_a_range_test_takes_its_own_lr_bounds_and_fixes_what_does_not_apply():
    spec = parse_spec({"kind": "range_test", "trials": "50", "epochs": "9"}, LIMITS)
    assert (spec.lr_min, spec.lr_max, spec.iterations) == (1e-7, 10.0, 100)
    assert (spec.trials, spec.epochs, spec.scheduler, spec.workers) == (1, 1, "none", 1)
    given = parse_spec({"kind": "range_test", "lr_min": 1e-5, "iterations": 300}, LIMITS)
    assert (given.lr_min, given.lr_max, given.iterations) == (1e-5, 10.0, 300)
    assert parse_spec({}, LIMITS).lr_min == 1e-4  # a search keeps its own


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"kind": "range_test", "iterations": 19}, "iterations"),
        ({"kind": "range_test", "trials": "abc"}, "trials"),  # checked, though not used
        ({"kind": "range_test", "lr_min": 20}, "lr_min"),
        ({"kind": "lr_find"}, "kind"),
    ],
)
def test_bad_range_test_settings_name_the_field(raw, field):
    with pytest.raises(SpecError) as caught:
        parse_spec(raw, LIMITS)
    assert field in caught.value.errors


# ---- end to end ------------------------------------------------------------------------


def test_the_cli_runs_a_range_test_and_prints_the_range_and_the_command(cli, app):
    result = cli.invoke(args=["lrsearch", "range-test", "--hidden", "64", "--seed", "2"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    (line,) = [x for x in lines if x.startswith("suggested range: ")]
    low, high = (float(w.split("=")[1]) for w in line.split()[2:4])
    assert 1e-7 < low < high < 10
    (command,) = [x for x in lines if x.startswith("search it: ")]
    assert f"--lr-min {low:.3g}" in command and f"--lr-max {high:.3g}" in command
    assert "--hidden 64" in command and "--seed 2" in command
    search = db.session.execute(db.select(Search)).scalar_one()
    assert (search.kind, search.status, search.n_trials) == ("range_test", "completed", 1)
    stored = db.session.execute(db.select(StoredPoint)).scalars().all()
    assert 20 <= len(stored) <= 100
    assert all(math.isfinite(p.loss) and math.isfinite(p.smoothed) for p in stored)
    assert search.trials[0].epochs_done == 1

    shown = cli.invoke(args=["lrsearch", "show", str(search.id)])
    assert line in shown.stdout.splitlines()
    bad = cli.invoke(args=["lrsearch", "range-test", "--iterations", "5"])
    assert bad.exit_code == 2 and bad.output.count("\n") == 1


def test_the_api_starts_a_range_test_and_answers_its_points_and_the_form_link(cli, client):
    response = client.post("/api/searches", json={"kind": "range_test", "dataset": "digits",
                                                 "hidden": [32], "seed": 4})  # fmt: skip
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert (created["kind"], created["trials"], created["lr_min"]) == ("range_test", 1, 1e-7)
    listed = client.get("/api/searches").get_json()["searches"]
    assert [s["kind"] for s in listed] == ["range_test"]
    # a runner for the queued test: the foreground one of `lrsearch run` is for new searches
    from lrsearch.cli import runner_settings
    from lrsearch.execution.local import ProcessSlots
    from lrsearch.search.runner import Runner

    runner = Runner(runner_settings(client.application), ProcessSlots(1), created["id"])
    runner.run(until_done=True)
    detail = client.get(created["api_url"]).get_json()
    assert detail["search"]["status"] == "completed"
    test = detail["range_test"]
    n = len(test["points"]["lr"])
    assert n >= 20 and all(len(v) == n for v in test["points"].values())
    s = test["suggestion"]
    assert s["lr_min"] < s["lr_max"] and s["steepest"] > 0 and s["min_loss_lr"] > s["lr_max"]
    query = parse_qs(urlsplit(test["new_search_url"]).query)
    assert query["kind"] == ["search"] and query["hidden"] == ["32"] and query["seed"] == ["4"]
    assert float(query["lr_min"][0]) == pytest.approx(s["lr_min"], rel=0.01)
    form = client.get(test["new_search_url"]).get_data(as_text=True)
    assert f'value="{query["lr_max"][0]}"' in form

    archive = client.get(f"/searches/{created['id']}/archive.zip")
    names = zipfile.ZipFile(io.BytesIO(archive.data)).namelist()
    assert any(x.endswith("log.txt") for x in names) and any(x.endswith(".png") for x in names)
    # Neither refined nor compared: it has no rates to refine or compare.
    refine = client.post(f"/api/searches/{created['id']}/refine", json={})
    assert refine.status_code == 400 and "range test" in refine.get_json()["errors"]["search"]
    other = client.post("/api/searches", json={"trials": 1, "epochs": 1}).get_json()
    compare = client.get(f"/api/compare?ids={created['id']},{other['id']}")
    assert compare.status_code == 400

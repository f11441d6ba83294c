"""Search settings are checked once, with a reason per field."""

from __future__ import annotations

import pytest

from lrsearch.config import Defaults
from lrsearch.settings import PUBLIC_SETTINGS, SETTINGS, SearchSpec, SpecError, parse_spec

LIMITS = {k: getattr(Defaults, k) for k in dir(Defaults) if k.isupper()}


def test_defaults_follow_the_seed():
    spec = parse_spec({}, LIMITS)
    assert spec == SearchSpec()
    assert (spec.lr_min, spec.lr_max, spec.trials, spec.epochs) == (1e-4, 1e-2, 4, 20)
    assert (spec.batch_size, spec.beta1, spec.beta2) == (64, 0.9, 0.999)


def test_text_values_as_from_a_form_or_the_cli():
    spec = parse_spec({"layers": "64, 32,10", "lr_min": "1e-5", "trials": "8", "seed": "3"}, LIMITS)
    assert spec.layers == [64, 32, 10] and spec.lr_min == 1e-5 and spec.trials == 8


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"lr_min": 1e-2, "lr_max": 1e-3}, "lr_max"),
        ({"lr_min": "nan"}, "lr_min"),
        ({"lr_max": float("inf")}, "lr_max"),
        ({"trials": 0}, "trials"),
        ({"trials": True}, "trials"),
        ({"trials": 2.5}, "trials"),
        ({"epochs": -1}, "epochs"),
        ({"beta1": 1.0}, "beta1"),
        ({"layers": "64,abc,10"}, "layers"),
        ({"layers": [32, 10]}, "layers"),
        ({"layers": [64, 128, 7]}, "layers"),
        ({"dataset": "imagenet"}, "dataset"),
        ({"sampler": "sobol"}, "sampler"),
        ({"seed": -1}, "seed"),
        ({"name": "x" * 201}, "name"),
        ({"trials": 1000, "epochs": 1000}, "epochs"),
        ({"workers": ""}, "workers"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_settings_name_the_field(raw, field):
    with pytest.raises(SpecError) as info:
        parse_spec(raw, LIMITS)
    assert field in info.value.errors
    assert all(info.value.errors.values())


# ---- one list of settings -------------------------------------------------------------


def test_the_form_the_cli_and_the_api_take_the_same_settings(app, client):
    """Each comes from PUBLIC_SETTINGS; the API's keys are found by asking it."""
    from lrsearch.cli import run_command
    from lrsearch.web.forms import SearchForm

    app.config["MAX_ACTIVE_SEARCHES"] = 1000  # one search per accepted setting
    with app.test_request_context():
        form = {field.name for field in SearchForm() if field.name != "csrf_token"}
    options = [p for p in run_command.params if p.param_type_name == "option"]
    cli = {option.name for option in options} - {"dask_scheduler"}  # where, not what
    assert {flag for option in options for flag in option.opts} == {
        "--" + name.replace("_", "-") for name in cli | {"dask_scheduler"}
    }
    defaults = {**SearchSpec().as_dict(), "layers": [64, 8, 10], "trials": 1, "epochs": 1}
    candidates = form | cli | {f for f in SearchSpec.__dataclass_fields__} | {"n_trials"}
    api = set()
    for name in sorted(candidates):
        value = defaults.get(name, 1e-8)
        response = client.post("/api/searches", json={"trials": 1, "epochs": 1, name: value})
        assert response.status_code in (201, 400), response.get_data(as_text=True)
        if response.status_code == 201:
            api.add(name)
    assert form == cli == api == {s.name for s in PUBLIC_SETTINGS}


def test_a_search_row_keeps_every_setting_and_gives_them_back(app):
    """Search.from_spec and Search.spec round-trip every setting, hidden ones included."""
    from lrsearch.extensions import db
    from lrsearch.models import Search

    values = {"name": "x", "layers": [64, 7, 10], "lr_min": 1e-5, "sampler": "grid"}
    values |= {"trials": 3, "epochs": 4, "batch_size": 9, "beta1": 0.8, "beta2": 0.99}
    spec = SearchSpec(**values, eps=1e-7, workers=1, seed=5)
    search = Search.from_spec(spec, status="queued")
    db.session.add(search)
    db.session.commit()
    db.session.expire_all()
    stored = db.session.get(Search, search.id)
    assert stored.spec() == spec
    assert stored.n_trials == 3 and stored.layers == [64, 7, 10] and stored.eps == 1e-7
    assert stored.config() == {s.name: getattr(spec, s.name) for s in SETTINGS}


def test_the_trainer_gets_its_hyperparameters_from_the_settings():
    spec = SearchSpec(layers=[64, 7, 10], epochs=4, batch_size=9, beta1=0.8, beta2=0.99)
    hyper = spec.training()
    assert (hyper.layers, hyper.epochs, hyper.batch_size) == ([64, 7, 10], 4, 9)
    assert (hyper.beta1, hyper.beta2, hyper.eps) == (0.8, 0.99, 1e-8)

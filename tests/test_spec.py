"""Search settings are checked once, with a reason per field."""

from __future__ import annotations

import pytest

from lrsearch.config import Defaults
from lrsearch.search.spec import SearchSpec, SpecError, parse_spec

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

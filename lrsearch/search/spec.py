"""A search's settings, checked once for the form, the JSON API and the CLI alike."""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from lrsearch.search.sampler import SAMPLERS
from lrsearch.training import DatasetError, dataset_shape

LR_FLOOR, LR_CEILING = 1e-8, 10.0
MAX_INTEGER = 2**31 - 1  # INTEGER columns (ids, the seed) are 32-bit signed on PostgreSQL
MAX_SEED = MAX_INTEGER
_SIGNED_DECIMAL = re.compile(r"[+-]?\d+")


class SpecError(ValueError):
    """Settings that cannot start a search; `errors` maps each field to its reason."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


@dataclass(frozen=True)
class SearchSpec:
    """Everything that defines a search; the seed's settings are the defaults."""

    dataset: str = "digits"
    layers: list[int] = field(default_factory=lambda: [64, 128, 10])
    lr_min: float = 1e-4
    lr_max: float = 1e-2
    trials: int = 4
    epochs: int = 20
    batch_size: int = 64
    beta1: float = 0.9
    beta2: float = 0.999
    workers: int = 2
    seed: int = 0
    sampler: str = "random"
    name: str = ""

    def as_dict(self) -> dict[str, Any]:
        """Plain values, as the JSON API takes them."""
        return asdict(self)


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("must be a whole number")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    # \d (like isdecimal) is what int() reads; isdigit would also pass "²", which int() refuses.
    if isinstance(value, str) and _SIGNED_DECIMAL.fullmatch(value.strip()) and len(value) < 20:
        return int(value.strip())
    raise ValueError("must be a whole number")


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("must be a number")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise ValueError("must be a number") from None
    if not math.isfinite(number):
        raise ValueError("must be a finite number")
    return number


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be text")
    # A lone surrogate cannot be stored as UTF-8, and PostgreSQL text refuses NUL.
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in value.strip()):
        raise ValueError("must not contain control characters or unpaired surrogates")
    return value.strip()


def _layers(value: Any) -> list[int]:
    if isinstance(value, str):
        parts = [p for p in value.replace(" ", "").split(",")]
        if len(value) > 400 or not all(p.isdecimal() for p in parts):
            raise ValueError("must be whole numbers separated by commas, like 64,128,10")
        return [int(p) for p in parts]
    if isinstance(value, list) and value:
        return [_integer(v) for v in value]
    raise ValueError("must be a list of layer sizes, like [64, 128, 10]")


def _in_range(low: float, high: float) -> Callable[[float], str | None]:
    shown = [f"{x:g}" if isinstance(x, float) else str(x) for x in (low, high)]  # not 2.1e+09
    return lambda v: None if low <= v <= high else f"must be between {shown[0]} and {shown[1]}"


def _check_fields(raw: Mapping[str, Any], limits: Mapping[str, Any]) -> tuple[dict, dict]:
    """Convert and range-check each field on its own."""
    rules: dict[str, tuple[Callable[[Any], Any], Callable[[Any], str | None]]] = {
        "name": (_text, lambda v: None if len(v) <= 200 else "must be at most 200 characters"),
        "dataset": (_text, lambda v: None if len(v) <= 100 else "must be at most 100 characters"),
        "layers": (_layers, lambda v: None),
        "lr_min": (_number, _in_range(LR_FLOOR, LR_CEILING)),
        "lr_max": (_number, _in_range(LR_FLOOR, LR_CEILING)),
        "trials": (_integer, _in_range(1, limits["MAX_TRIALS"])),
        "epochs": (_integer, _in_range(1, limits["MAX_EPOCHS"])),
        "batch_size": (_integer, _in_range(1, 65536)),
        "beta1": (_number, lambda v: None if 0 <= v < 1 else "must be in [0, 1)"),
        "beta2": (_number, lambda v: None if 0 <= v < 1 else "must be in [0, 1)"),
        "workers": (_integer, _in_range(1, limits["MAX_WORKERS"])),
        "seed": (_integer, _in_range(0, MAX_SEED)),
        "sampler": (_text, lambda v: None if v in SAMPLERS else f"must be one of {SAMPLERS}"),
    }
    defaults, values, errors = SearchSpec().as_dict(), {}, {}
    for name, (convert, check) in rules.items():
        value = raw.get(name)
        if value is None or value == "":
            if name == "name" or name not in raw:
                values[name] = defaults[name]
                continue
            errors[name] = "is required"
            continue
        try:
            values[name] = convert(value)
        except ValueError as exc:
            errors[name] = str(exc)
            continue
        problem = check(values[name])
        if problem:
            errors[name] = problem
    return values, errors


def _check_together(values: dict, limits: Mapping[str, Any]) -> dict[str, str]:
    """Checks that involve several fields."""
    errors: dict[str, str] = {}
    if values.get("lr_min") is not None and values.get("lr_max") is not None:
        if values["lr_min"] >= values["lr_max"]:
            errors["lr_max"] = "must be greater than lr_min"
    if "trials" in values and "epochs" in values:
        budget = values["trials"] * values["epochs"]
        if budget > limits["MAX_TRIAL_EPOCHS"]:
            errors["epochs"] = (
                f"trials x epochs is {budget}, above the cap of {limits['MAX_TRIAL_EPOCHS']}"
            )
    if "dataset" in values:
        try:
            n_features, n_classes = dataset_shape(values["dataset"])
        except DatasetError as exc:
            errors["dataset"] = str(exc)
            return errors
        if "layers" in values:
            problem = _layers_problem(values["layers"], n_features, n_classes, limits)
            if problem:
                errors["layers"] = problem
    return errors


def _layers_problem(layers: list[int], n_features: int, n_classes: int, limits) -> str | None:
    if len(layers) < 2:
        return "needs at least an input and an output size"
    if len(layers) > limits["MAX_LAYERS"]:
        return f"at most {limits['MAX_LAYERS']} layers"
    if any(size < 1 or size > limits["MAX_WIDTH"] for size in layers[1:-1]):
        return f"hidden sizes must be between 1 and {limits['MAX_WIDTH']}"
    if layers[0] != n_features:
        return f"the first size must be the dataset's {n_features} input features"
    if layers[-1] != n_classes:
        return f"the last size must be the dataset's {n_classes} classes"
    return None


def parse_spec(raw: Mapping[str, Any], limits: Mapping[str, Any]) -> SearchSpec:
    """Check raw settings (text from a form or CLI, or JSON values); raise SpecError."""
    unknown = sorted(set(raw) - set(SearchSpec.__dataclass_fields__))
    values, errors = _check_fields(raw, limits)
    errors.update({k: v for k, v in _check_together(values, limits).items() if k not in errors})
    for name in unknown[:5]:
        errors[str(name)[:50]] = "is not a setting of a search"
    if errors:
        raise SpecError(errors)
    return SearchSpec(**values)

"""A search's settings, declared once: the form, the CLI options, the JSON API's keys, the
Search row and the trainer's hyper-parameters all come from `SearchSpec`'s fields.

A new setting needs its field here (with its checks and help text), its column on
`Search` with a migration, and its use; nothing else lists the settings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from lrsearch.scheduling import METRICS, SCHEDULERS
from lrsearch.setting_values import (
    Check,
    as_hidden,
    as_integer,
    as_layers,
    as_number,
    as_text,
    at_most,
    beta_range,
    between,
    hidden_sizes,
)
from lrsearch.training import DatasetError, Hyperparameters, dataset_shape
from lrsearch.training.range_test import MIN_ITERATIONS

LR_FLOOR, LR_CEILING = 1e-8, 10.0
MAX_INTEGER = 2**31 - 1  # INTEGER columns (ids, the seed) are 32-bit signed on PostgreSQL
MAX_SEED = MAX_INTEGER
SAMPLERS = ("random", "grid")
SEARCH, RANGE_TEST = "search", "range_test"
KINDS = (SEARCH, RANGE_TEST)
# A range test trains one network once, its rate from far below to far above any useful
# one (fastai's lr_find range); its lr bounds default to these where not given.
RANGE_TEST_DEFAULTS = {"lr_min": 1e-7, "lr_max": 10.0}
# ...and these settings of a search do not apply to it: fixed, whatever was given.
RANGE_TEST_FIXED = {"trials": 1, "epochs": 1, "sampler": "grid", "scheduler": "none", "workers": 1}


class SpecError(ValueError):
    """Settings that cannot start a search; `errors` maps each field to its reason."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


REQUIRED = object()  # a setting that may be left out but not given empty
# A data set's (features, classes), or DatasetError saying why there are none yet.
ShapeOf = Callable[[str], tuple[int, int]]


@dataclass(frozen=True)
class Setting:
    """How one setting is read, checked, shown and stored."""

    name: str
    convert: Callable[[Any], Any]  # text or JSON value -> Python value, ValueError if not
    check: Check  # the converted value against the app's caps
    label: str  # the form's label
    help: str  # the form's description and the CLI option's help
    column: str | None  # the Search attribute that stores it (its column's name too), if any
    choices: tuple[str, ...] = ()  # a select in the form
    public: bool = True  # taken from the form, the CLI and the API (else: fixed, stored only)
    blank: Any = REQUIRED  # what an empty value means, where it may be empty
    group: str = "Training"  # the form's fieldset

    @property
    def flag(self) -> str:
        """The CLI option: --batch-size for batch_size."""
        return "--" + self.name.replace("_", "-")


def setting(default: Any, convert, check: Check | None = None, **about: Any) -> Any:
    """A SearchSpec field: its default, and the Setting (name and column filled in later)."""
    metadata = {"about": (convert, check or (lambda v, limits: None), about)}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class SearchSpec:
    """Everything that defines a search; the seed's settings are the defaults."""

    kind: str = setting(
        "search", as_text, label="Kind", choices=KINDS, group="What to train",
        help="search: train one network per rate; range_test: one network, its rate "
        "growing batch by batch, to suggest the range to search",
    )  # fmt: skip
    name: str = setting(
        "", as_text, at_most(200), label="Name", help="optional, to tell searches apart",
        blank="", group="What to train",
    )  # fmt: skip
    dataset: str = setting(
        "digits", as_text, at_most(100), label="Dataset",
        help="digits, synthetic[:NxDxK], or one fetched or added on the Datasets page",
        group="What to train",
    )  # fmt: skip
    hidden: list[int] = setting(
        [128], as_hidden, hidden_sizes, label="Hidden layers",
        help="sizes, e.g. 128 or 256,128; empty for none", column=None, blank=[],
        group="What to train",
    )  # fmt: skip
    layers: list[int] | None = setting(
        None, as_layers, label="All layer sizes",
        help="instead of hidden: input first, output last, as the data set has them",
        blank=None,
        group="What to train",
    )  # fmt: skip
    lr_min: float = setting(
        1e-4, as_number, between(LR_FLOOR, LR_CEILING), label="Smallest lr",
        help="smallest learning rate",
        group="Learning rates",
    )  # fmt: skip
    lr_max: float = setting(
        1e-2, as_number, between(LR_FLOOR, LR_CEILING), label="Largest lr",
        help="largest learning rate",
        group="Learning rates",
    )  # fmt: skip
    sampler: str = setting(
        "random", as_text, label="Sampler", help="random: log-uniform draws; grid: log-spaced",
        choices=SAMPLERS,
        group="Learning rates",
    )  # fmt: skip
    iterations: int = setting(
        100, as_integer, between(MIN_ITERATIONS, 10000), label="Iterations",
        help="range_test: mini-batches, the rate growing from the smallest to the largest",
        group="Learning rates",
    )  # fmt: skip
    trials: int = setting(
        4, as_integer, between(1, "MAX_TRIALS"), label="Trials", help="learning rates to try",
        column="n_trials",
        group="Learning rates",
    )  # fmt: skip
    epochs: int = setting(
        20, as_integer, between(1, "MAX_EPOCHS"), label="Epochs", help="epochs per trial"
    )
    batch_size: int = setting(
        64, as_integer, between(1, 65536), label="Batch size", help="minibatch size"
    )
    beta1: float = setting(0.9, as_number, beta_range, label="Adam beta1", help="Adam's beta1")
    beta2: float = setting(0.999, as_number, beta_range, label="Adam beta2", help="Adam's beta2")
    eps: float = setting(1e-8, as_number, label="Adam epsilon", help="Adam's epsilon", public=False)
    workers: int = setting(
        2, as_integer, between(1, "MAX_WORKERS"), label="Workers",
        help="trials of this search at once",
    )  # fmt: skip
    seed: int = setting(
        0, as_integer, between(0, MAX_SEED), label="Seed", help="of the rates and of every trial",
        group="Learning rates",
    )  # fmt: skip
    scheduler: str = setting(
        "none", as_text, label="Early stopping", choices=SCHEDULERS, group="Early stopping",
        help="asha: at each rung (grace period x η^k epochs) a trial goes on only if it is in "
        "the top 1/η so far; none: every trial trains to the end",
    )  # fmt: skip
    reduction_factor: int = setting(
        3, as_integer, between(2, 100), label="Reduction factor η", group="Early stopping",
        help="asha: the top 1/η go on at each rung",
    )  # fmt: skip
    grace_period: int = setting(
        1, as_integer, between(1, "MAX_EPOCHS"), label="Grace period", group="Early stopping",
        help="asha: epochs before the first rung",
    )  # fmt: skip
    brackets: int = setting(
        1, as_integer, between(1, 10), label="Brackets", group="Early stopping",
        help="asha: more than 1 mixes later first rungs (Hyperband); a trial's by its index",
    )  # fmt: skip
    metric: str = setting(
        "val_acc", as_text, label="Rung metric", choices=tuple(METRICS), group="Early stopping",
        help="val_acc or val_loss at the rung's epoch, or best_val_acc or min_val_loss up to it",
    )  # fmt: skip

    def __post_init__(self) -> None:
        # The layers and the hidden sizes say the same: given layers fix the hidden sizes;
        # else a built-in data set's shape makes the layers (parse_spec passes any other's).
        if self.layers is not None:
            object.__setattr__(self, "hidden", list(self.layers[1:-1]))
            return
        features, classes = dataset_shape(self.dataset)
        object.__setattr__(self, "layers", [features, *self.hidden, classes])

    def as_dict(self) -> dict[str, Any]:
        """Plain values of the public settings, as the JSON API takes them."""
        values = asdict(self)
        return {s.name: values[s.name] for s in PUBLIC_SETTINGS}

    def training(self) -> Hyperparameters:
        """What the trainer needs of these settings."""
        return Hyperparameters(**{f.name: getattr(self, f.name) for f in fields(Hyperparameters)})


def _declared(spec_field) -> Setting:
    convert, check, about = spec_field.metadata["about"]
    about = {"column": spec_field.name, **about}  # column=None: derived, not stored
    return Setting(spec_field.name, convert, check, **about)


SETTINGS: tuple[Setting, ...] = tuple(_declared(f) for f in fields(SearchSpec))
STORED_SETTINGS: tuple[Setting, ...] = tuple(s for s in SETTINGS if s.column)
PUBLIC_SETTINGS: tuple[Setting, ...] = tuple(s for s in SETTINGS if s.public)


def _check_fields(raw: Mapping[str, Any], limits: Mapping[str, Any]) -> tuple[dict, dict]:
    """Convert and range-check each public setting on its own."""
    defaults = {
        f.name: f.default if f.default_factory is MISSING else f.default_factory()
        for f in fields(SearchSpec)
    }
    values, errors = {}, {}
    for spec in PUBLIC_SETTINGS:
        name = spec.name
        value = raw.get(name)
        if name not in raw:
            values[name] = defaults[name]
            continue
        if value is None or value == "":
            if spec.blank is REQUIRED:
                errors[name] = "is required"
            else:
                values[name] = spec.blank
            continue
        try:
            values[name] = spec.convert(value)
        except ValueError as exc:
            errors[name] = str(exc)
            continue
        problem = spec.check(values[name], limits)
        if not problem and spec.choices and values[name] not in spec.choices:
            problem = f"must be one of {spec.choices}"
        if problem:
            errors[name] = problem
    return values, errors


def _check_together(values: dict, limits: Mapping[str, Any], shape_of: ShapeOf) -> dict[str, str]:
    """Checks that involve several fields; makes the layers from the hidden sizes."""
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
    if values.get("scheduler") == "asha" and "grace_period" in values and "epochs" in values:
        if values["grace_period"] >= values["epochs"]:
            errors["grace_period"] = "must be below epochs, or asha never stops a trial"
    if "dataset" not in values:
        return errors
    try:
        n_features, n_classes = shape_of(values["dataset"])
    except DatasetError as exc:
        errors["dataset"] = str(exc)
        return errors
    if values.get("layers") is not None:  # given: they win over the hidden sizes
        field = "layers"
    elif "hidden" in values:
        field = "hidden"
        values["layers"] = [n_features, *values["hidden"], n_classes]
    else:
        return errors
    problem = _layers_problem(values["layers"], n_features, n_classes, limits)
    if problem and field not in errors:
        errors[field] = problem
    return errors


def _layers_problem(layers: list[int], n_features: int, n_classes: int, limits) -> str | None:
    if len(layers) < 2:
        return "needs at least an input and an output size"
    if len(layers) > limits["MAX_LAYERS"]:
        return f"at most {limits['MAX_LAYERS']} layers, input and output included"
    if any(size < 1 or size > limits["MAX_WIDTH"] for size in layers[1:-1]):
        return f"hidden sizes must be between 1 and {limits['MAX_WIDTH']}"
    if layers[0] != n_features:
        return f"the first size must be the dataset's {n_features} input features"
    if layers[-1] != n_classes:
        return f"the last size must be the dataset's {n_classes} classes"
    return None


def parse_spec(
    raw: Mapping[str, Any], limits: Mapping[str, Any], shape_of: ShapeOf = dataset_shape
) -> SearchSpec:
    """Check raw settings (text from a form or CLI, or JSON values); raise SpecError.

    shape_of gives a data set's (features, classes); by default the built-in ones'.
    """
    unknown = sorted(set(raw) - {s.name for s in PUBLIC_SETTINGS})
    kind = raw.get("kind")
    if isinstance(kind, str) and kind.strip() == RANGE_TEST:
        raw = {**RANGE_TEST_DEFAULTS, **raw}
    values, errors = _check_fields(raw, limits)
    if values.get("kind") == RANGE_TEST:  # what was given was checked, but does not apply
        values.update(RANGE_TEST_FIXED)
    together = _check_together(values, limits, shape_of)
    errors.update({k: v for k, v in together.items() if k not in errors})
    for name in unknown[:5]:
        errors[str(name)[:50]] = "is not a setting of a search"
    if errors:
        raise SpecError(errors)
    return SearchSpec(**values)


def setting_text(value: object) -> str:
    """A setting's value as text that parse_spec reads back the same: lists joined with
    commas, numbers at full precision (a link's query, a command line)."""
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def format_lr(lr: float) -> str:
    """A rate for people: three significant digits."""
    return f"{lr:.3g}"

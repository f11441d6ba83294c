"""Forms of the pages: the new-search form (checked by parse_spec alone) and cancel."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask_wtf import FlaskForm
from wtforms import SelectField, StringField

from lrsearch.search.sampler import SAMPLERS
from lrsearch.search.spec import SearchSpec


class SearchForm(FlaskForm):
    """Every setting of `flask lrsearch run`, as text; parse_spec says what is wrong."""

    name = StringField("Name", description="optional, to tell searches apart")
    dataset = StringField("Dataset", description="digits, mnist, synthetic or synthetic:NxDxK")
    layers = StringField("Layer sizes", description="input first, output last")
    lr_min = StringField("Smallest lr")
    lr_max = StringField("Largest lr")
    sampler = SelectField(
        "Sampler",
        choices=list(SAMPLERS),
        validate_choice=False,
        description="random: log-uniform draws; grid: log-spaced",
    )
    trials = StringField("Trials", description="learning rates to try")
    epochs = StringField("Epochs", description="per trial")
    batch_size = StringField("Batch size")
    beta1 = StringField("Adam beta1")
    beta2 = StringField("Adam beta2")
    workers = StringField("Workers", description="trials of this search at once")
    seed = StringField("Seed", description="of the rates and of every trial")

    SETTINGS = tuple(SearchSpec.__dataclass_fields__)

    @classmethod
    def with_defaults(cls) -> SearchForm:
        """A blank form filled with the seed's settings."""
        defaults = SearchSpec().as_dict()
        defaults["workers"] = min(current_app.config["WORKERS"], defaults["workers"])
        return cls(data={name: as_text(value) for name, value in defaults.items()})

    def settings(self) -> dict[str, Any]:
        """The submitted settings, as text, for parse_spec."""
        return {name: self[name].data for name in self.SETTINGS}

    def show_errors(self, errors: dict[str, str]) -> None:
        """Put each message of a SpecError next to its field (or above the form)."""
        for name, message in errors.items():
            if name in self.SETTINGS:
                self[name].errors = [*self[name].errors, message]
            else:
                self.form_errors.append(f"{name}: {message}")


class CancelForm(FlaskForm):
    """The cancel button: nothing but its CSRF token."""


def as_text(value: object) -> str:
    """A default as the form shows it: lists joined with commas, floats without noise."""
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)

"""Forms of the pages: the new-search form (one field per public setting, checked by
parse_spec alone) and cancel."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import current_app
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import Field, SelectField, StringField

from lrsearch.settings import (
    PUBLIC_SETTINGS,
    RANGE_TEST,
    RANGE_TEST_DEFAULTS,
    SearchSpec,
    Setting,
)


class SearchForm(FlaskForm):
    """Every public setting, as text; parse_spec says what is wrong."""

    SETTINGS = tuple(s.name for s in PUBLIC_SETTINGS)

    @classmethod
    def with_defaults(cls, given: Mapping[str, str] | None = None) -> SearchForm:
        """A blank form filled with the seed's settings (the layers left to the hidden sizes),
        and any settings `given` as text (a link's query: "Search this range", a range test).
        """
        defaults = SearchSpec().as_dict()
        defaults["workers"] = min(current_app.config["WORKERS"], defaults["workers"])
        defaults["layers"] = None
        data = {name: as_text(value) for name, value in defaults.items()}
        given = {k: v for k, v in (given or {}).items() if k in data}
        if given.get("kind") == RANGE_TEST:
            data.update({k: as_text(v) for k, v in RANGE_TEST_DEFAULTS.items()})
        return cls(data={**data, **given})

    def groups(self) -> list[tuple[str, list[Field]]]:
        """The fields by fieldset, in the settings' order."""
        grouped: dict[str, list[Field]] = {}
        for setting in PUBLIC_SETTINGS:
            grouped.setdefault(setting.group, []).append(self[setting.name])
        return list(grouped.items())

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


def _form_field(setting: Setting) -> Field:
    """A setting's field: a select where it has choices, else text."""
    if setting.choices:
        choices = list(setting.choices)
        return SelectField(
            setting.label, choices=choices, validate_choice=False, description=setting.help
        )
    return StringField(setting.label, description=setting.help)


for _setting in PUBLIC_SETTINGS:
    setattr(SearchForm, _setting.name, _form_field(_setting))


class CancelForm(FlaskForm):
    """The cancel button: nothing but its CSRF token."""


class RefineForm(FlaskForm):
    """Refine around the best rate: how wide, and how many trials (checked by refine)."""

    factor = StringField("Factor", default="3", description="rates in [best / f, best x f]")
    trials = StringField("Trials", description="empty: as many as this search")


class RemoveForm(FlaskForm):
    """A data set's Fetch or Remove button: nothing but its CSRF token."""


class DatasetForm(FlaskForm):
    """Upload a CSV or NPZ as a new data set (the file is streamed to disk)."""

    name = StringField("Name", description="letters, digits, - and _; used in searches")
    file = FileField("File", description="CSV (a header row is detected) or NPZ")
    label_column = StringField(
        "Label column", description="CSV only: a name or number; empty for the last column"
    )


def as_text(value: object) -> str:
    """A default as the form shows it: lists joined with commas, floats without noise."""
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return "" if value is None else str(value)

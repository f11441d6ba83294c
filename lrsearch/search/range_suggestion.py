"""What a finished range test says: its points, the suggested range, and the settings of
the search that covers that range ("Search this range")."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from lrsearch.models import Search
from lrsearch.settings import RANGE_TEST, SEARCH, format_lr, setting_text
from lrsearch.store import reads
from lrsearch.store.range_points import range_points
from lrsearch.training.range_test import (
    RangePoint,
    Suggestion,
    suggest_range,
    suggestion_curve,
)

# What a search started from a range test takes over from it; the rest are the defaults.
CARRIED = ("dataset", "hidden", "batch_size", "beta1", "beta2", "seed")


@dataclass(frozen=True)
class RangeTestResult:
    points: list[RangePoint]
    suggestion: Suggestion | None
    curve: list[float]  # what the suggestion is read off, one value per point


def range_test_result(session: Session, search: Search) -> RangeTestResult | None:
    """A range test's points and suggestion (None for a search, or a test not run yet)."""
    if search.kind != RANGE_TEST:
        return None
    trials = reads.trials_of(session, search.id)
    points = range_points(session, trials[0].id) if trials else []
    if not points:
        return RangeTestResult(points, None, [])
    _, curve = suggestion_curve(points)  # the stored points are finite
    return RangeTestResult(points, suggest_range(points), [float(v) for v in curve])


def search_settings(search: Search, suggestion: Suggestion) -> dict[str, str]:
    """The new-search settings, as text, for the suggested range of a range test."""
    config = search.config()
    raw = {name: setting_text(config[name]) for name in CARRIED}
    raw.update(
        kind=SEARCH,
        lr_min=format_lr(suggestion.lr_min),
        lr_max=format_lr(suggestion.lr_max),
        name=f"{search.name or f'range test {search.id}'}: suggested range"[:200],
    )
    return raw

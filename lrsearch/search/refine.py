"""Settings from another search: refine around its best (its settings, the rates drawn in
[best / factor, best x factor], clamped to the caps, linked to it as its parent), or copy
it to run it again."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from lrsearch.models import Search
from lrsearch.search import ranking
from lrsearch.settings import LR_CEILING, LR_FLOOR, MAX_INTEGER, RANGE_TEST, SpecError

DEFAULT_FACTOR = 3.0
MAX_FACTOR = 1000.0


def refined_settings(
    session: Session, parent: Search, factor: Any = None, trials: Any = None
) -> dict[str, Any]:
    """The settings of a search refining `parent` (for parse_spec), or SpecError saying why
    there can be none."""
    factor = _factor(DEFAULT_FACTOR if factor in (None, "") else factor)
    if parent.kind == RANGE_TEST:
        raise SpecError({"search": f"search {parent.id} is a range test; search the range it "
                         "suggests instead"})  # fmt: skip
    best = ranking.best_trial(session, parent.id)
    if best is None:
        raise SpecError({"search": f"search {parent.id} has no trial with an epoch to refine"})
    raw: dict[str, Any] = parent.spec().as_dict()
    raw.pop("hidden")  # the parent's layers say it
    raw["lr_min"] = max(best.lr / factor, LR_FLOOR)
    raw["lr_max"] = min(best.lr * factor, LR_CEILING)
    if trials not in (None, ""):
        raw["trials"] = trials
    raw["name"] = f"{parent.name or f'search {parent.id}'} refined x{factor:g}"[:200]
    return raw


def _factor(value: Any) -> float:
    try:
        factor = float(value)
    except (TypeError, ValueError):
        raise SpecError({"factor": "must be a number"}) from None
    if not 1.0 < factor <= MAX_FACTOR:
        raise SpecError({"factor": f"must be above 1 and at most {MAX_FACTOR:g}"})
    return factor


def copied_settings(session: Session, search_id: Any) -> dict[str, Any]:
    """The settings of search `search_id`, to run it again (SpecError under "copy_of" if
    there is no such search); the layers stand for the hidden sizes."""
    try:
        found = session.get(Search, int(search_id)) if 0 <= int(search_id) <= MAX_INTEGER else None
    except (TypeError, ValueError):
        raise SpecError({"copy_of": "must be a search's id"}) from None
    if found is None:
        raise SpecError({"copy_of": f"no search {search_id}"})
    raw = found.spec().as_dict()
    raw.pop("hidden")
    return raw

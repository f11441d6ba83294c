"""What the views read of a search, serialized: its summary, its state, its detail."""

from __future__ import annotations

from flask import url_for

from lrsearch.extensions import db
from lrsearch.models import Search
from lrsearch.search import range_suggestion, ranking
from lrsearch.store import reads
from lrsearch.web import serialize


def search_state(search: Search) -> dict[str, object]:
    """The search's summary, the ranking's answers and an ETA, read without its trials."""
    totals = reads.trial_totals(db.session, search.id)
    best = ranking.best_trial(db.session, search.id)
    healthiest = ranking.healthiest_trial_id(db.session, search.id)
    return serialize.search_state(search, totals, best, healthiest)


def search_summary(search: Search) -> dict[str, object]:
    """One search's summary, as the list shows it."""
    totals = reads.trial_totals(db.session, search.id)
    return serialize.search_summary(search, totals, ranking.best_trial(db.session, search.id))


def search_detail(search: Search) -> dict[str, object]:
    """A search's state with every trial; a range test's points and suggestion too."""
    detail = serialize.search_detail(search_state(search), reads.trials_of(db.session, search.id))
    result = range_suggestion.range_test_result(db.session, search)
    if result is not None:
        url = None
        if result.suggestion is not None:
            settings = range_suggestion.search_settings(search, result.suggestion)
            url = url_for("pages.new_search", **settings)
        detail["range_test"] = serialize.range_test(result, url)
    return detail

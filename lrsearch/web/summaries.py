"""What the views read of a search, serialized: its summary, its state, its detail."""

from __future__ import annotations

from datetime import timedelta

from flask import current_app, url_for
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from lrsearch.extensions import db
from lrsearch.models import FAILED, Search, utcnow
from lrsearch.search import range_suggestion, ranking
from lrsearch.store import reads
from lrsearch.store.runners import live_runners
from lrsearch.store.trial_errors import error_summary
from lrsearch.supervision import read_state
from lrsearch.web import serialize


def search_state(search: Search) -> dict[str, object]:
    """The search's summary, the ranking's answers and an ETA, read without its trials."""
    totals = reads.trial_totals(db.session, search.id)
    best = ranking.best_trial(db.session, search.id)
    healthiest = ranking.healthiest_trial_id(db.session, search.id)
    failed = error_summary(db.session, search.id) if totals.counts.get(FAILED) else None
    return serialize.search_state(search, totals, best, healthiest, failed)


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


def runners_shown() -> dict[str, object]:
    """The runners that reported within the stale limit, for every page's footer and the
    API (None where the database cannot say: an error page must still render)."""
    since = utcnow() - timedelta(seconds=current_app.config["STALE_AFTER_SECONDS"])
    supervisor = read_state(current_app.config["DATA_DIR"])
    try:
        runners = [serialize.runner(r) for r in live_runners(db.session, since)]
    except SQLAlchemyError:
        db.session.rollback()
        return {"runners": None, "supervisor": supervisor}
    return {"runners": runners, "supervisor": supervisor}


def health() -> tuple[dict[str, object], bool]:
    """The database's and the runners' health, and whether all is well (see /api/health)."""
    try:
        db.session.execute(select(1))
        database = "ok"
    except SQLAlchemyError:
        db.session.rollback()
        database = "unavailable"
    shown = runners_shown() if database == "ok" else {"runners": [], "supervisor": None}
    supervisor = shown["supervisor"] or read_state(current_app.config["DATA_DIR"])
    if shown["runners"]:
        runner = "running"
    elif supervisor and supervisor.get("state") == "restarting":
        runner = f"restarting: {supervisor.get('last_error')}"
    else:
        runner = "not running"
    body = {"database": database, "runner": runner, "runners": shown["runners"],
            "supervisor": supervisor}  # fmt: skip
    return body, database == "ok" and runner == "running"

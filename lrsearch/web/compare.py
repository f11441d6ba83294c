"""Compare searches: their rates against best validation accuracy on one axis, each one's
best curve, and a table of their answers and the epochs each spent."""

from __future__ import annotations

from flask import Blueprint, render_template, url_for

from lrsearch.extensions import db
from lrsearch.models import Search
from lrsearch.search import ranking
from lrsearch.settings import RANGE_TEST
from lrsearch.store import reads
from lrsearch.web import serialize, summaries
from lrsearch.web.api import ids_arg
from lrsearch.web.errors import ApiError
from lrsearch.web.pages import chart_assets

bp = Blueprint("compare", __name__)
MAX_COMPARED = 10


def compared_searches() -> list[Search]:
    """The `ids` argument's searches, in its order: two to MAX_COMPARED that exist, else a
    400 or 404."""
    ids = list(dict.fromkeys(ids_arg("ids") or []))
    if not 2 <= len(ids) <= MAX_COMPARED:
        raise ApiError(400, f"give 2 to {MAX_COMPARED} search ids to compare, like ids=1,2",
                       errors={"ids": f"{len(ids)} ids"})  # fmt: skip
    found = db.session.execute(db.select(Search).where(Search.id.in_(ids))).scalars()
    by_id = {s.id: s for s in found}
    missing = sorted(set(ids) - set(by_id))
    if missing:
        raise ApiError(404, f"no search {', '.join(map(str, missing))}")
    tests = [i for i in ids if by_id[i].kind == RANGE_TEST]
    if tests:
        reason = f"{', '.join(map(str, tests))}: a range test has no rates to compare"
        raise ApiError(400, reason, errors={"ids": "range tests"})
    return [by_id[i] for i in ids]


def comparison(searches: list[Search]) -> dict[str, object]:
    """What the page and the API show of the compared searches, in the order given."""
    ids = [s.id for s in searches]
    by_id = {s.id: s for s in searches}
    points = reads.rate_points(db.session, ids)
    best = {i: ranking.best_trial(db.session, i) for i in ids}
    curves = reads.curves_of(db.session, [b.id for b in best.values() if b])
    compared = []
    for search_id in ids:
        summary = summaries.search_summary(by_id[search_id])
        mine = [p for p in points if p.search_id == search_id]
        top = best[search_id]
        compared.append({
            "search": summary,
            "points": [{"trial_id": p.id, "lr": p.lr, "status": p.status,
                        "best_val_acc": serialize.number(p.best_val_acc)} for p in mine],
            "best_trial_id": top.id if top else None,
            "best_curve": curves.get(top.id) if top else None,
            "healthiest_trial_id": ranking.healthiest_trial_id(db.session, search_id),
            "epochs_spent": summary["epochs_done"],
        })  # fmt: skip
    return {"searches": compared, "api_url": url_for("compare.api", ids=",".join(map(str, ids)))}


@bp.get("/api/compare")
def api() -> dict:
    """Two or more searches side by side (`ids=1,2,3`)."""
    return comparison(compared_searches())


@bp.get("/compare")
def page() -> str:
    """The comparison page: rates against best val acc, best curves, a table."""
    data = comparison(compared_searches())
    return render_template("compare.html", data=data, **chart_assets())

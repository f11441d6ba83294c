"""The JSON API: start, list, watch and cancel searches."""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, current_app, request, url_for

from lrsearch import artifacts, store
from lrsearch.datasets import catalog
from lrsearch.extensions import db
from lrsearch.models import QUEUED, RUNNING, SEARCH_FINAL, Search, Trial, utcnow
from lrsearch.search import ranking, refine, sampler
from lrsearch.settings import MAX_INTEGER, SpecError, parse_spec
from lrsearch.store import reads
from lrsearch.web import downloads, serialize, summaries
from lrsearch.web.errors import ApiError

bp = Blueprint("api", __name__, url_prefix="/api")


def json_body() -> dict:
    """The request's JSON object; only application/json, so no cross-site form can post."""
    if not request.is_json:
        raise ApiError(415, "send the settings as application/json")
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # nested deeper than the parser goes, like "[[[[...": silent misses it
        body = None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


def start_search(raw: dict, parent_id: int | None = None) -> Search:
    """Check settings and caps, then store the search (nothing is written on failure)."""
    spec = parse_spec(raw, current_app.config, catalog.shape_of(db.session))
    active = reads.active_searches(db.session)
    if active >= current_app.config["MAX_ACTIVE_SEARCHES"]:
        raise ApiError(
            429,
            f"{active} searches are already queued or running; "
            f"the cap is {current_app.config['MAX_ACTIVE_SEARCHES']}",
        )
    return sampler.create_search(db.session, spec, parent_id)


def refine_search(parent: Search, factor: object, trials: object) -> Search:
    """Start a search refining `parent` around its best rate (SpecError if it cannot)."""
    raw = refine.refined_settings(db.session, parent, factor, trials)
    return start_search(raw, parent_id=parent.id)


@bp.post("/searches")
def create_search() -> tuple[dict, int, dict]:
    """Start a search; 201 with its id and URLs, or 400 with an error per field.

    `{"copy_of": ID, ...}`: that search's settings, overridden by the others given.
    """
    body = json_body()
    try:
        if "copy_of" in body:
            body = {**refine.copied_settings(db.session, body.pop("copy_of")), **body}
        search = start_search(body)
    except SpecError as exc:
        raise ApiError(400, "invalid settings", errors=exc.errors) from None
    summary = summaries.search_summary(search)
    return {"id": search.id, **summary}, 201, {"Location": summary["api_url"]}


PER_PAGE = 50
SEARCH_STATUSES = (QUEUED, RUNNING, *SEARCH_FINAL)


def listing_args() -> tuple[reads.SearchFilter, int]:
    """The searches list's filters and page from the query (`name`, `dataset`, `status`,
    `page`); ApiError 400 naming a bad one."""
    args = request.args
    status = args.get("status", "").strip()
    if status and status not in SEARCH_STATUSES:
        raise ApiError(400, "bad filter", errors={"status": f"one of {', '.join(SEARCH_STATUSES)}"})
    where = reads.SearchFilter(
        name=args.get("name", "").strip()[:200],
        dataset=args.get("dataset", "").strip()[:100],
        status=status,
    )
    return where, max(1, int_arg("page", 1))


def search_page(where: reads.SearchFilter, page: int) -> dict[str, object]:
    """A page of the searches list: PER_PAGE summaries, newest first, and where it is."""
    total = reads.count_searches(db.session, where)
    pages = max(1, -(-total // PER_PAGE))
    listed = ranking.list_searches(db.session, where=where, limit=PER_PAGE,
                                   offset=(min(page, pages) - 1) * PER_PAGE)  # fmt: skip
    return {
        "searches": serialize.search_list(listed),
        "total": total,
        "page": min(page, pages),
        "pages": pages,
        "per_page": PER_PAGE,
        "filters": {"name": where.name, "dataset": where.dataset, "status": where.status},
    }


@bp.get("/searches")
def list_searches() -> dict:
    """The searches, newest first, 50 a page (`page`), filtered by `name` (a part of it),
    `dataset` and `status`."""
    return search_page(*listing_args())


@bp.get("/health")
def health() -> tuple[dict, int]:
    """200 when the database answers and a runner reported within the stale limit, else
    503: for a load balancer or a monitor."""
    body, ok = summaries.health()
    return body, 200 if ok else 503


@bp.get("/runners")
def list_runners() -> dict:
    """The runners alive (reported within the stale limit): executor, workers, problem."""
    return summaries.runners_shown()


@bp.get("/searches/<int:search_id>")
def search_detail(search_id: int) -> dict:
    """Progress, trials and ranking of one search."""
    return summaries.search_detail(get_search(search_id))


@bp.get("/searches/<int:search_id>/epochs")
def search_epochs(search_id: int) -> dict:
    """Epochs of the current attempts with an id above `after`, column by column.

    `trials` (ids, comma-separated) keeps only those trials' epochs: a page drawing the best
    few of thousands of trials fetches just their curves (see reads.epochs_after).
    """
    get_search(search_id)
    after = int_arg("after", 0)
    found = reads.epochs_after(db.session, search_id, after, trial_ids=ids_arg("trials"))
    return serialize.epochs(found, after)


@bp.get("/searches/<int:search_id>/poll")
def search_poll(search_id: int) -> dict:
    """What changed since the page's last poll: new epochs and changed trials only."""
    search = get_search(search_id)
    since, after = serialize.poll_window(time_arg("since")), int_arg("after", 0)
    now = serialize.when(utcnow())  # before the trials are read: the next poll's `since`
    changed = reads.trials_changed(db.session, search_id, since)
    epochs = serialize.epochs(reads.epochs_after(db.session, search_id, after), after)
    if not changed and not epochs["epochs"]["id"]:
        # Nothing new: the totals and answers, which read every trial, are as they were.
        return {"unchanged": True, "search_row": serialize.search_row(search),
                "server_time": now, "trials": [], **epochs}  # fmt: skip
    return {
        **summaries.search_state(search),
        "server_time": now,
        "trials": [serialize.trial_row(t) for t in changed],
        **epochs,
    }


@bp.post("/searches/<int:search_id>/refine")
def refine_a_search(search_id: int) -> tuple[dict, int, dict]:
    """Refine around the best rate: `{"factor": 3, "trials": N}` (both optional); 201."""
    body = json_body()
    try:
        search = refine_search(get_search(search_id), body.get("factor"), body.get("trials"))
    except SpecError as exc:
        raise ApiError(400, "cannot refine this search", errors=exc.errors) from None
    summary = summaries.search_summary(search)
    return {"id": search.id, **summary}, 201, {"Location": summary["api_url"]}


@bp.post("/searches/<int:search_id>/cancel")
def cancel_search(search_id: int) -> dict:
    """Cancel a search: queued trials at once, running ones at their next epoch."""
    json_body()
    get_search(search_id)
    store.cancel_search(db.session, search_id)
    db.session.expire_all()
    return summaries.search_summary(get_search(search_id))


@bp.delete("/searches/<int:search_id>")
def delete_search(search_id: int) -> dict:
    """Delete a search, its trials, epochs and log folder; 409 while a trial of it runs."""
    get_search(search_id)
    remove_search(search_id)
    return {"deleted": search_id}


def remove_search(search_id: int) -> None:
    """Delete the search's rows (ApiError 409 while a trial runs), then its log folder."""
    try:
        deleted = store.delete_search(db.session, search_id)
    except store.Refused as exc:
        raise ApiError(409, str(exc)) from None
    if not deleted:
        raise ApiError(404, f"no search {search_id}")
    artifacts.remove_search_folder(current_app.config["DATA_DIR"], search_id)


@bp.post("/trials/<int:trial_id>/cancel")
def cancel_trial(trial_id: int) -> dict:
    """Cancel one trial: a queued one at once, a running one at its next epoch boundary
    (its epochs kept); 409 if it has ended."""
    json_body()
    stop_trial(trial_id)
    db.session.expire_all()
    return serialize.trial_row(db.session.get(Trial, trial_id))


def stop_trial(trial_id: int) -> None:
    """Cancel a trial (ApiError 404 or 409 where it cannot be)."""
    try:
        trial = store.cancel_trial(db.session, trial_id)
    except store.Refused as exc:
        raise ApiError(409, str(exc)) from None
    if trial is None:
        raise ApiError(404, f"no trial {trial_id}")


@bp.get("/trials/<int:trial_id>")
def trial_detail(trial_id: int) -> dict:
    """One trial with the epochs of every attempt."""
    trial = db.session.get(Trial, trial_id)
    if trial is None:
        raise ApiError(404, f"no trial {trial_id}")
    return {
        **serialize.trial_row(trial),
        "epochs": serialize.epoch_rows(reads.epochs_of_trial(db.session, trial_id)),
        "archive_url": url_for("files.trial_archive", trial_id=trial_id),
        "log_url": url_for("files.trial_log", trial_id=trial_id),
        "plot_url": url_for("files.trial_plot", trial_id=trial_id),
        # So a page asks for the log and plot only once they exist (no 404 in its console).
        "has_log": (downloads.trial_path(trial) / artifacts.LOG_NAME).is_file(),
        "has_plot": downloads.plot_ready(trial),
    }


def get_search(search_id: int) -> Search:
    """The search, or a 404 in JSON."""
    search = db.session.get(Search, search_id)
    if search is None:
        raise ApiError(404, f"no search {search_id}")
    return search


def int_arg(name: str, default: int) -> int:
    """A non-negative integer query argument, or a 400 naming it."""
    value = request.args.get(name, default)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ApiError(
            400, f"{name} must be a whole number", errors={name: "not a number"}
        ) from None
    if number < 0 or number > MAX_INTEGER:
        raise ApiError(400, f"{name} is out of range", errors={name: "out of range"})
    return number


MAX_IDS = 1000  # ids a query argument may list


def ids_arg(name: str) -> list[int] | None:
    """A comma-separated list of ids (possibly empty), None when absent; else a 400 naming it."""
    value = request.args.get(name)
    if value is None:
        return None
    parts = value.split(",") if value else []
    if len(parts) > MAX_IDS:
        raise ApiError(
            400, f"{name} lists more than {MAX_IDS} ids", errors={name: f"over {MAX_IDS} ids"}
        )
    if not all(p.isascii() and p.isdigit() for p in parts):
        raise ApiError(
            400,
            f"{name} must be ids separated by commas",
            errors={name: "not a comma-separated list of ids"},
        )
    # (the length first: int() refuses a string of over 4,300 digits)
    if any(len(p) > len(str(MAX_INTEGER)) or int(p) > MAX_INTEGER for p in parts):
        raise ApiError(400, f"{name} lists an id out of range", errors={name: "out of range"})
    return [int(p) for p in parts]


def time_arg(name: str) -> datetime | None:
    """An ISO 8601 time query argument (as the API writes them), or a 400 naming it."""
    value = request.args.get(name)
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.removesuffix("Z")).replace(tzinfo=None)
    except ValueError:
        raise ApiError(
            400, f"{name} must be an ISO 8601 time", errors={name: "not a time"}
        ) from None

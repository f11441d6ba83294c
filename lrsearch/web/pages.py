"""The dashboard's pages: searches, the new-search form, a search, a trial; plotly.js."""

from __future__ import annotations

import logging
import re
from functools import cache
from pathlib import Path

import plotly
from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask_wtf.csrf import CSRFError
from werkzeug.wrappers import Response as BaseResponse

from lrsearch import artifacts, store
from lrsearch.datasets import catalog
from lrsearch.execution import plots
from lrsearch.extensions import db
from lrsearch.models import SEARCH_FINAL, Search, Trial
from lrsearch.search import ranking, refine
from lrsearch.settings import (
    KINDS,
    MAX_SEED,
    PUBLIC_SETTINGS,
    RANGE_TEST,
    RANGE_TEST_DEFAULTS,
    RANGE_TEST_FIXED,
    SEARCH,
    SearchSpec,
    SpecError,
    format_lr,
    setting_text,
)
from lrsearch.store import reads
from lrsearch.store.trial_errors import error_summary
from lrsearch.web import api, downloads, errors, serialize, summaries
from lrsearch.web.errors import ApiError
from lrsearch.web.forms import CancelForm, RefineForm, SearchForm, as_text

log = logging.getLogger(__name__)
bp = Blueprint("pages", __name__)
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
CHART_PAGES_MAX_AGE = 24 * 3600


@bp.get("/")
def index() -> str:
    """The searches, newest first, 50 a page, filtered as the query says; live while any
    shown is active."""
    try:
        where, page = api.listing_args()
    except ApiError as exc:
        abort(400, description=f"{exc.reason}: {exc.errors}")
    listing = api.search_page(where, page)
    datasets = reads.dataset_names(db.session)
    return render_template(
        "index.html", searches=listing["searches"], listing=listing, datasets=datasets,
        statuses=api.SEARCH_STATUSES,
    )  # fmt: skip


@bp.route("/searches/new", methods=["GET", "POST"])
def new_search() -> str | BaseResponse | tuple[str, int]:
    """The form that starts a search; on success, the new search's page."""
    if request.method == "GET":
        return render_new(SearchForm.with_defaults(given_settings(request.args.to_dict())))
    form = SearchForm()
    if not form.validate_on_submit():
        problems = " ".join(message for field in form for message in field.errors)
        form.form_errors.append(f"{problems} Reload the page and submit again.".strip())
        return render_new(form), 400
    try:
        search = api.start_search(form.settings())
    except SpecError as exc:
        form.show_errors(exc.errors)
        return render_new(form), 400
    except ApiError as exc:  # too many active searches
        form.form_errors.append(exc.reason)
        return render_new(form), exc.status
    return redirect(url_for("pages.search", search_id=search.id), 303)


def given_settings(args: dict[str, str]) -> dict[str, str]:
    """The new-search form's settings from its link: given one by one, or `copy_of` a
    search ("Run again": its settings, the seed moved on, so that new rates are drawn)."""
    if "copy_of" not in args:
        return args
    try:
        copied = refine.copied_settings(db.session, args.pop("copy_of"))
    except SpecError as exc:
        abort(404, description=exc.errors["copy_of"])
    copied["seed"] = (copied["seed"] + 1) % (MAX_SEED + 1)
    hidden = copied.pop("layers")[1:-1]
    # At full precision: the form's defaults' text (as_text) rounds to 6 digits.
    given = {k: setting_text(v) for k, v in copied.items()}
    return {**given, "hidden": setting_text(hidden), **args}


@bp.app_errorhandler(CSRFError)
def csrf_error(error: CSRFError) -> tuple[str, int]:
    """A form whose CSRF token expired or is missing: the new-search form keeps its values."""
    if request.endpoint != "pages.new_search":
        return errors.error_response(400, f"{error.description} Reload the page and try again.")
    form = SearchForm()
    form.form_errors.append(f"{error.description} Your settings are kept: submit them again.")
    return render_new(form), 400


def render_new(form: SearchForm) -> str:
    """The new-search page, with the data sets a search may train on now and their shapes."""
    shapes = catalog.ready_shapes(db.session)
    return render_template("new.html", form=form, shapes=shapes, kinds=kinds())


@cache
def kinds() -> dict[str, object]:
    """What the form changes with its kind: the lr bounds' defaults, the fields it hides."""
    lr_defaults = {
        kind: {name: as_text(getattr(SearchSpec(), name) if kind == SEARCH else value)
               for name, value in RANGE_TEST_DEFAULTS.items()}
        for kind in KINDS
    }  # fmt: skip
    search_only = [s.name for s in PUBLIC_SETTINGS
                   if s.name in RANGE_TEST_FIXED or s.group == "Early stopping"]  # fmt: skip
    return {"lr_defaults": lr_defaults, "search_only": search_only, "range_only": ["iterations"]}


@bp.get("/searches/<int:search_id>")
def search(search_id: int) -> str:
    """One search: live curves, ranking, progress and cancel."""
    found = db.get_or_404(Search, search_id, description=f"no search {search_id}")
    summary = summaries.search_summary(found)
    if found.kind == RANGE_TEST:
        return render_template(
            "range_test.html",
            search=summary,
            cancel_form=CancelForm(),
            finished=found.status in SEARCH_FINAL,
            **chart_assets(),
        )
    top_k, drawn = first_curves(found)
    epochs_url = url_for("api.search_epochs", search_id=search_id) + "?after=0"
    if drawn is not None:
        epochs_url += "&trials=" + ",".join(map(str, drawn))
    failures = serialize.errors(error_summary(db.session, search_id))
    return render_template(
        "search.html",
        search=summary,
        failures=failures,
        refinements=reads.refinements_of(db.session, search_id),
        refine_form=RefineForm(),
        cancel_form=CancelForm(),
        finished=found.status in SEARCH_FINAL,
        top_k=top_k,
        first_trials=drawn,
        first_epochs_url=epochs_url,
        healthy_within=ranking.HEALTHY_WITHIN,
        **chart_assets(),
    )


# The search page draws every trial's curves up to this many trials, else the best few
# (its "show" menu changes that); it fetches the epochs of the curves it draws, no others.
ALL_CURVES_UP_TO = 20
DEFAULT_TOP_K = 10


def first_curves(search: Search) -> tuple[int, list[int] | None]:
    """The search page's first top K (0: all) and the trials it draws (None: all).

    The first K of the ranking (see ranking.rank_key), as the page ranks them.
    """
    if search.n_trials <= ALL_CURVES_UP_TO:
        return 0, None
    return DEFAULT_TOP_K, ranking.top_trial_ids(db.session, search.id, DEFAULT_TOP_K)


@bp.post("/searches/<int:search_id>/refine")
def refine_search(search_id: int) -> BaseResponse:
    """The Refine button: a new search around this one's best rate, then its page."""
    parent = db.get_or_404(Search, search_id, description=f"no search {search_id}")
    form = RefineForm()
    if not form.validate_on_submit():
        abort(400, description="The form expired; reload the page and try again.")
    try:
        child = api.refine_search(parent, form.factor.data, form.trials.data)
    except SpecError as exc:
        abort(400, description="; ".join(f"{k}: {v}" for k, v in exc.errors.items()))
    except ApiError as exc:
        abort(exc.status, description=exc.reason)
    return redirect(url_for("pages.search", search_id=child.id), 303)


@bp.post("/searches/<int:search_id>/cancel")
def cancel_search(search_id: int) -> BaseResponse:
    """Cancel a search from its page's button, then show the page again."""
    db.get_or_404(Search, search_id, description=f"no search {search_id}")
    pressed("cancel", lambda: store.cancel_search(db.session, search_id))
    return redirect(url_for("pages.search", search_id=search_id), 303)


@bp.post("/searches/<int:search_id>/delete")
def delete_search(search_id: int) -> BaseResponse:
    """The Delete button (its page asked for a confirmation): then the searches list."""
    db.get_or_404(Search, search_id, description=f"no search {search_id}")
    pressed("delete", lambda: api.remove_search(search_id))
    return redirect(url_for("pages.index"), 303)


@bp.post("/trials/<int:trial_id>/cancel")
def cancel_trial(trial_id: int) -> BaseResponse:
    """Cancel one trial from its page's button, then show the page again."""
    db.get_or_404(Trial, trial_id, description=f"no trial {trial_id}")
    pressed("cancel", lambda: api.stop_trial(trial_id))
    return redirect(url_for("pages.trial", trial_id=trial_id), 303)


def pressed(action: str, do) -> None:
    """A button's form (its CSRF token alone) checked, then its action done; a 400 for an
    expired form, the API's status and reason where the action is refused."""
    if not CancelForm().validate_on_submit():
        abort(400, description=f"The form expired; reload the page and {action} again.")
    try:
        do()
    except ApiError as exc:
        abort(exc.status, description=exc.reason)


@bp.get("/trials/<int:trial_id>")
def trial(trial_id: int) -> str:
    """One trial: its four curves, log, plot and status."""
    found = db.get_or_404(Trial, trial_id, description=f"no trial {trial_id}")
    log_path = plots.ensure_log(db.session, found, current_app.config["DATA_DIR"])
    log_path = log_path or downloads.trial_path(found) / artifacts.LOG_NAME
    log_text = log_path.read_text(encoding="utf-8", errors="replace") if log_path.is_file() else ""
    return render_template(
        "trial.html",
        cancel_form=CancelForm(),
        trial=serialize.trial_row(found),
        search=summaries.search_summary(found.search),
        log_text=log_text,
        has_plot=downloads.plot_ready(found),
        **chart_assets(),
    )


@bp.get("/vendor/plotly.min.js")
def plotly_js() -> Response:
    """plotly.js from the installed plotly package: no CDN, works offline."""
    return send_file(PLOTLY_JS, mimetype="text/javascript", max_age=CHART_PAGES_MAX_AGE)


@bp.get("/vendor/plotly.css")
def plotly_css() -> Response:
    """The style rules plotly.js would inject itself, which the strict CSP forbids."""
    response = Response(plotly_style()[0], mimetype="text/css")
    response.cache_control.max_age = CHART_PAGES_MAX_AGE
    return response


def chart_assets() -> dict[str, object]:
    """What a page with charts puts in its head (see base.html)."""
    return {"charts": True, "plotly_style_ids": plotly_style()[1]}


@cache
def plotly_style() -> tuple[str, tuple[str, ...]]:
    """plotly.js's own CSS rules, and the ids of styles it injects unless they exist.

    plotly.js adds its rules to a <style> element (blocked by `style-src 'self'`) unless
    the page links them under the id `plotly.js-style-global` with class
    `no-inline-styles`; its map styles are skipped when an element has their id.
    """
    source = PLOTLY_JS.read_text(encoding="utf-8")
    ids = tuple(dict.fromkeys(re.findall(r'getElementById\("([0-9a-f]{64})"\)', source)))
    try:
        start = source.index('{"X,X div"')
        rules = source[start : source.index("};", start) + 1]
    except ValueError:
        log.warning("plotly.js's style rules not found in %s; charts may look plain", PLOTLY_JS)
        return "", ids
    css = []
    for selector, body in re.findall(rf"({JS_STRING})\s*:\s*({JS_STRING})", rules):
        selector = js_text(selector).replace("X", ".js-plotly-plot .plotly")
        css.append(f"{selector.replace('Y', '.plotly-notifier')}{{{js_text(body)}}}")
    return "\n".join(css) + "\n", ids


JS_STRING = r""""(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'"""


def js_text(literal: str) -> str:
    """The text of a JavaScript string literal (simple escapes only)."""
    return re.sub(r"\\(.)", r"\1", literal[1:-1])


@bp.app_template_filter("lr")
def lr_filter(value: float | None) -> str:
    """A learning rate, three significant digits."""
    return "–" if value is None else format_lr(value)


@bp.app_template_filter("fixed")
def fixed_filter(value: float | None, digits: int = 4) -> str:
    """A number with a fixed number of decimals, or a dash."""
    return "–" if value is None else f"{value:.{digits}f}"

"""Downloads: zip archives of a search or a trial, a trial's log and plot."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from flask import Blueprint, Response, abort, current_app, send_file, stream_with_context

from lrsearch import artifacts, export
from lrsearch.execution import plots
from lrsearch.extensions import db
from lrsearch.models import TRIAL_FINAL, Search, Trial
from lrsearch.search import ranking
from lrsearch.store import reads
from lrsearch.web import summaries

bp = Blueprint("files", __name__)
CSV_HEADER = ("trial_index", "lr", "attempt", "epoch", *reads.METRICS, "seconds")


def trial_path(trial: Trial) -> Path:
    """The trial's folder, built from stored ids and numbers only: no user string."""
    return artifacts.trial_folder(
        current_app.config["DATA_DIR"], trial.search_id, trial.index, trial.lr
    )


def zip_response(entries: Iterator[tuple[str, Path | bytes]], filename: str) -> Response:
    """A streamed zip download."""
    return Response(
        stream_with_context(artifacts.stream_zip(entries)),
        mimetype="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


RANKING_COLUMNS = ("rank", "trial", "lr", "status", "epochs", "best_val_acc", "best_epoch",
                   "final_val_acc", "final_acc_train", "gap", "min_val_loss", "final_val_loss",
                   "seconds", "worker", "error")  # fmt: skip


@bp.get("/searches/<int:search_id>/ranking.csv")
def ranking_csv(search_id: int) -> Response:
    """The ranking table as CSV, in the ranking's order; rates at full precision (repr)."""
    search = db.get_or_404(Search, search_id, description=f"no search {search_id}")
    ranked = ranking.rank_by_accuracy(reads.trials_of(db.session, search_id))
    rows = (
        (
            rank,
            t.index,
            repr(t.lr),
            t.status,
            t.epochs_done,
            t.best_val_acc,
            t.best_epoch,
            t.final_val_acc,
            t.final_acc_train,
            ranking.gap(t),
            t.min_val_loss,
            t.final_val_loss,
            round(t.seconds or 0.0, 3),
            t.worker,
            t.error,
        )  # fmt: skip
        for rank, t in enumerate(ranked, 1)
    )
    name = f"{artifacts.search_folder_name(search.id)}-ranking.csv"
    return Response(
        artifacts.epochs_csv(rows, RANKING_COLUMNS),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@bp.get("/searches/<int:search_id>/archive.zip")
def search_archive(search_id: int) -> Response:
    """Every trial's folder, epochs.csv and search.json, streamed."""
    search = db.get_or_404(Search, search_id, description=f"no search {search_id}")
    detail = summaries.search_detail(search)
    prefix = artifacts.search_folder_name(search_id)

    def entries() -> Iterator[tuple[str, Path | bytes]]:
        yield f"{prefix}/search.json", artifacts.json_bytes(detail)
        rows = reads.epoch_rows(db.session, Trial.search_id == search_id)
        yield f"{prefix}/epochs.csv", artifacts.epochs_csv(rows, CSV_HEADER)
        # The view's session is gone once streaming starts: load the trials anew.
        trials = reads.trials_of(db.session, search_id)
        for trial in trials:
            yield from _trial_entries(trial, prefix + "/")
        best = next((t for t in trials if t.id == detail["best_trial_id"]), None)
        if best is not None:
            try:  # the answer's model, beside the logs
                model = export.model_npz(db.session, best, current_app.config["DATA_DIR"])
                yield f"{prefix}/best-model.npz", model
            except export.NoModel:
                pass

    return zip_response(entries(), f"{prefix}.zip")


@bp.get("/trials/<int:trial_id>/model.npz")
def trial_model(trial_id: int) -> Response:
    """A completed trial's model: layer sizes, weights, biases, input transform, settings."""
    trial = db.get_or_404(Trial, trial_id, description=f"no trial {trial_id}")
    try:
        data = export.model_npz(db.session, trial, current_app.config["DATA_DIR"])
    except export.NoModel as exc:
        abort(404, description=str(exc))
    name = f"model-search-{trial.search_id}-trial-{trial.index}.npz"
    return Response(data, mimetype="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})  # fmt: skip


@bp.get("/trials/<int:trial_id>/archive.zip")
def trial_archive(trial_id: int) -> Response:
    """One trial's folder (log.txt, plot) and its epochs as CSV."""
    trial = db.get_or_404(Trial, trial_id, description=f"no trial {trial_id}")
    name = trial_path(trial).name
    rows = reads.epoch_rows(db.session, Trial.id == trial_id)
    csv = (f"{name}/epochs.csv", artifacts.epochs_csv(rows, CSV_HEADER))
    return zip_response(iter([csv, *_trial_entries(trial, "")]), f"{name}.zip")


def _trial_entries(trial: Trial, prefix: str) -> Iterator[tuple[str, Path]]:
    """A trial folder's files, its plot drawn and its log written first if they were left
    for later (or to this side: a trial run on a Dask worker)."""
    plots.ensure_log(db.session, trial, current_app.config["DATA_DIR"])
    plots.ensure_plot(db.session, trial, current_app.config["DATA_DIR"])
    folder = trial_path(trial)
    return artifacts.trial_files(folder, prefix + folder.name)


@bp.get("/trials/<int:trial_id>/log.txt")
def trial_log(trial_id: int) -> Response:
    """The trial's log.txt, as text."""
    trial = db.get_or_404(Trial, trial_id, description=f"no trial {trial_id}")
    path = plots.ensure_log(db.session, trial, current_app.config["DATA_DIR"])
    if path is None:
        abort(404, description=f"trial {trial_id} has no log yet")
    return send_file(path, mimetype="text/plain", max_age=0)


def plot_ready(trial: Trial) -> bool:
    """Whether plot.png answers now: drawn already, or drawable from an ended trial's epochs."""
    if (trial_path(trial) / artifacts.PLOT_NAME).is_file():
        return True
    return trial.status in TRIAL_FINAL and trial.epochs_done > 0


@bp.get("/trials/<int:trial_id>/plot.png")
def trial_plot(trial_id: int) -> Response:
    """The trial's matplotlib plot, drawn now if it was left for later."""
    trial = db.get_or_404(Trial, trial_id, description=f"no trial {trial_id}")
    path = plots.ensure_plot(db.session, trial, current_app.config["DATA_DIR"])
    if path is None:
        abort(404, description=f"trial {trial_id} has no plot until it ends")
    return send_file(path, mimetype="image/png", max_age=0)

"""Data sets: the Datasets page, its fetch, upload and remove buttons, and their JSON API.

A request only records what to do and streams an upload to disk (202); the runner fetches
or imports in the background, and the page polls the progress.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for
from werkzeug.datastructures import FileStorage
from werkzeug.wrappers import Response as BaseResponse

from lrsearch.datasets import cache, catalog
from lrsearch.datasets.fetch import SOURCES
from lrsearch.extensions import db
from lrsearch.store import datasets as records
from lrsearch.training import DatasetError
from lrsearch.web import serialize
from lrsearch.web.errors import ApiError
from lrsearch.web.forms import DatasetForm, RemoveForm

bp = Blueprint("datasets", __name__)
UPLOAD_ENDPOINTS = ("datasets.upload", "datasets.api_upload")


@bp.url_value_preprocessor
def allow_large_uploads(endpoint: str | None, values: dict | None) -> None:
    """An upload may be up to MAX_DATASET_MB; checked before the body is read (413), and
    before the CSRF check reads the form."""
    if endpoint in UPLOAD_ENDPOINTS:
        request.max_content_length = int(current_app.config["MAX_DATASET_MB"]) * 1024 * 1024


def listing() -> list[dict[str, object]]:
    """Every data set as the page and the API list it: built in, fetchable, stored."""
    stored = records.list_datasets(db.session)
    used = records.searches_using(db.session)
    return serialize.dataset_list(stored, used, tuple(SOURCES))


@bp.get("/datasets")
def index() -> str:
    """The Datasets page: every data set, fetch buttons and the upload form."""
    return render_template(
        "datasets.html", datasets=listing(), form=DatasetForm(), remove_form=RemoveForm()
    )


@bp.post("/datasets/<name>/fetch")
def fetch(name: str) -> BaseResponse:
    """The Fetch button: the runner downloads it; the page shows the progress."""
    if not RemoveForm().validate_on_submit():
        abort(400, description="The form expired; reload the page and try again.")
    try:
        catalog.request_fetch(db.session, name)
    except catalog.DatasetRequestError as exc:
        abort(exc.status, description=str(exc))
    return redirect(url_for("datasets.index"), 303)


@bp.post("/datasets/upload")
def upload() -> BaseResponse | tuple[str, int]:
    """The upload form: the file is saved, the runner imports it."""
    form = DatasetForm()
    if not form.validate_on_submit():
        return render_template("datasets.html", datasets=listing(), form=form,
                               remove_form=RemoveForm()), 400  # fmt: skip
    try:
        start_import(form.name.data, form.file.data, form.label_column.data)
    except catalog.DatasetRequestError as exc:
        form.name.errors = [*form.name.errors, str(exc)] if exc.field == "name" else []
        if exc.field != "name":
            form.file.errors = [str(exc)]
        return render_template("datasets.html", datasets=listing(), form=form,
                               remove_form=RemoveForm()), exc.status  # fmt: skip
    return redirect(url_for("datasets.index"), 303)


@bp.post("/datasets/<name>/remove")
def remove(name: str) -> BaseResponse:
    """The Remove button."""
    if not RemoveForm().validate_on_submit():
        abort(400, description="The form expired; reload the page and try again.")
    try:
        catalog.remove(db.session, current_app.config["DATA_DIR"], name)
    except catalog.DatasetRequestError as exc:
        abort(exc.status, description=str(exc))
    return redirect(url_for("datasets.index"), 303)


def start_import(name: str, file: FileStorage | None, label_column: str | None) -> object:
    """Check the name and the file's kind, stream it to disk, record it for the runner."""
    name = (name or "").strip()
    catalog.check_new_name(db.session, name)
    if file is None or not file.filename:
        raise catalog.DatasetRequestError("choose a CSV or NPZ file", field="file")
    kind = Path(file.filename).suffix.lower().lstrip(".")
    if kind not in catalog.FORMATS:
        raise catalog.DatasetRequestError(
            f"{file.filename} is not a CSV or NPZ file (.csv or .npz)", field="file"
        )
    data_dir = current_app.config["DATA_DIR"]
    path = catalog.uploads_folder(data_dir) / f"{secrets.token_hex(8)}.{kind}"
    try:
        file.save(path)
        if path.stat().st_size == 0:
            raise catalog.DatasetRequestError(f"{file.filename} is empty", field="file")
        return catalog.request_import(db.session, data_dir, name, path, file.filename,
                                      (label_column or "").strip() or None)  # fmt: skip
    except BaseException:
        path.unlink(missing_ok=True)  # nothing left behind
        raise


# ---- JSON API ---------------------------------------------------------------------------


@bp.get("/api/datasets")
def api_list() -> dict:
    """Every data set."""
    return {"datasets": listing()}


@bp.get("/api/datasets/<name>")
def api_detail(name: str) -> dict:
    """One data set, with its searches."""
    return _one(name)


def _one(name: str) -> dict:
    found = [d for d in listing() if d["name"] == name]
    if not found:
        raise ApiError(404, f"no data set {name}")
    return found[0]


@bp.get("/api/datasets/<name>/samples")
def api_samples(name: str) -> dict:
    """A few samples of each class, as pixels 0-255, for image-shaped data sets."""
    row = _one(name)
    if row["status"] != "ready" or not row["image_shape"]:
        raise ApiError(404, f"{name} has no sample images (not ready, or not image-shaped)")
    per_class = min(max(request.args.get("per_class", 8, type=int), 1), 20)
    try:
        found = cache.samples_per_class(name, current_app.config["DATA_DIR"], per_class)
    except DatasetError as exc:
        raise ApiError(404, str(exc)) from None
    classes = [{"label": label, "images": pixels.tolist()} for label, pixels in found]
    return {"name": name, "shape": row["image_shape"], "classes": classes}


@bp.post("/api/datasets")
def api_upload() -> tuple[dict, int, dict]:
    """Upload a CSV or NPZ (multipart: name, file, label_column): 202, imported behind."""
    if not request.mimetype == "multipart/form-data" or not request.headers.get("X-Requested-With"):
        raise ApiError(
            415,
            "send multipart/form-data with an X-Requested-With header "
            "(a cross-site form cannot set it)",
        )
    try:
        start_import(request.form.get("name", ""), request.files.get("file"),
                     request.form.get("label_column"))  # fmt: skip
    except catalog.DatasetRequestError as exc:
        raise ApiError(exc.status, str(exc), errors={exc.field: str(exc)}) from None
    name = request.form["name"].strip()
    return _one(name), 202, {"Location": url_for("datasets.api_detail", name=name)}


@bp.post("/api/datasets/<name>/fetch")
def api_fetch(name: str) -> tuple[dict, int]:
    """Fetch mnist or fashion-mnist: 202, downloaded behind."""
    if not request.is_json:
        raise ApiError(415, "send {} as application/json")
    try:
        catalog.request_fetch(db.session, name)
    except catalog.DatasetRequestError as exc:
        raise ApiError(exc.status, str(exc)) from None
    return _one(name), 202


@bp.delete("/api/datasets/<name>")
def api_remove(name: str) -> dict:
    """Remove a data set and its files (409 while a queued or running search uses it)."""
    try:
        catalog.remove(db.session, current_app.config["DATA_DIR"], name)
    except catalog.DatasetRequestError as exc:
        raise ApiError(exc.status, str(exc)) from None
    return {"removed": name}

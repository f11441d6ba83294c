"""Which data sets there are, what a search may train on, and requests to add or remove one.

Built in: digits and synthetic[:NxDxK]. Fetchable: the fetch module's SOURCES (mnist,
fashion-mnist). Any other name is a data set someone uploaded. The pages, the API and the
CLI ask here, so that each says the same thing, in the same words, about a data set.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lrsearch.datasets import cache
from lrsearch.datasets.fetch import SOURCES, mirrors_from
from lrsearch.models import DATASET_BUSY, FAILED, FETCHING, IMPORTING, READY, Dataset
from lrsearch.settings import ShapeOf
from lrsearch.store import datasets as records
from lrsearch.training import DatasetError, dataset_shape

NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
FORMATS = ("csv", "npz")
FETCH_HINT = "press Fetch on the Datasets page or run flask --app app lrsearch datasets fetch {n}"
ADD_HINT = "add it on the Datasets page or run flask --app app lrsearch datasets add {n} FILE"


class DatasetRequestError(ValueError):
    """A request about a data set that cannot be done; `status` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400, field: str = "name"):
        super().__init__(message)
        self.status, self.field = status, field


def shape_of(session: Session) -> ShapeOf:
    """(features, classes) of a data set a search may train on now, else DatasetError
    saying what to do."""

    def shape(name: str) -> tuple[int, int]:
        if cache.is_built_in(name):
            return dataset_shape(name)
        record = records.get_dataset(session, name) if NAME.fullmatch(name) else None
        if record is None:
            if name in SOURCES:
                raise DatasetError(f"{name} is not downloaded: {FETCH_HINT.format(n=name)}")
            raise DatasetError(
                f"unknown data set {name!r}: {ADD_HINT.format(n=name)} "
                "(built in: digits, synthetic or synthetic:NxDxK)"
            )
        if record.status in DATASET_BUSY:
            doing = "downloaded" if record.status == FETCHING else "imported"
            raise DatasetError(
                f"{name} is still being {doing} ({record.progress:.0%}): "
                "start the search once it is ready"
            )
        if record.status != READY:
            again = FETCH_HINT if name in SOURCES else ADD_HINT
            raise DatasetError(
                f"{name} failed ({record.error}): remove it, then {again.format(n=name)}"
            )
        return record.features, record.classes

    return shape


def ready_shapes(session: Session) -> dict[str, list[int]]:
    """[features, classes] of every data set a search may train on now, built in first."""
    shapes = {name: list(dataset_shape(name)) for name in cache.BUILT_IN}
    ready = records.list_datasets(session)
    return shapes | {r.name: [r.features, r.classes] for r in ready if r.status == READY}


def check_new_name(session: Session, name: str) -> None:
    """Refuse a name that is not a plain identifier, is built in, or is taken."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise DatasetRequestError(
            "must start with a letter and hold only letters, digits, '-' and '_' "
            "(at most 64 characters)"
        )
    if cache.is_built_in(name) or name.lower() in cache.BUILT_IN:
        raise DatasetRequestError(f"{name} is built in: choose another name")
    if records.get_dataset(session, name) is not None:
        raise DatasetRequestError(f"a data set named {name} exists already: choose another name")


def request_fetch(session: Session, name: str, taken: bool = False) -> Dataset:
    """Record a fetch of one of SOURCES for the runner (or, `taken`, for the caller); a
    failed one is tried again."""
    if name not in SOURCES:
        known = ", ".join(SOURCES)
        raise DatasetRequestError(f"{name!r} cannot be fetched: choose one of {known}", 404)
    record = records.get_dataset(session, name)
    if record is not None and record.status != FAILED:
        state = "ready" if record.status == READY else "being fetched"
        raise DatasetRequestError(f"{name} is {state} already", status=409)
    if record is not None:
        records.delete_dataset(session, name)
    source = "fetched from its mirrors"
    return _added(session, name, name, FETCHING, source, {}, taken=taken, status=409)


def request_import(
    session: Session,
    data_dir: str,
    name: str,
    upload: Path,
    filename: str,
    label_column: str | None,
) -> Dataset:
    """Record an upload (already on disk at `upload`) for the runner to import."""
    options = {
        "file": str(upload.relative_to(data_dir)),
        "filename": filename,
        "label_column": label_column or None,
    }
    source = f"uploaded {filename}"[:400]
    return _added(session, name, _kind(filename), IMPORTING, source, options)


def request_local_import(
    session: Session, name: str, path: Path, label_column: str | None
) -> Dataset:
    """Record the import of a file on this machine, taken by the caller (the command line):
    the file stays where it is."""
    options = {"file": str(path), "filename": path.name, "label_column": label_column,
               "keep_file": True}  # fmt: skip
    source = f"added from {path}"[:400]
    return _added(session, name, _kind(path.name), IMPORTING, source, options, taken=True)


def _added(session: Session, name: str, *args, taken: bool = False, status: int = 400) -> Dataset:
    """records.add_dataset; a name taken by a request in the meantime is the caller's error."""
    try:
        return records.add_dataset(session, name, *args, taken=taken)
    except IntegrityError:
        session.rollback()
        raise DatasetRequestError(f"a data set named {name} exists already", status) from None


def _kind(filename: str) -> str:
    return Path(filename).suffix.lower().lstrip(".") or "file"


def uploads_folder(data_dir: str) -> Path:
    """Where uploads wait for their import."""
    folder = cache.datasets_root(data_dir) / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def remove(session: Session, data_dir: str, name: str) -> None:
    """Remove a data set and its files; refused while a queued or running search uses it."""
    record = records.get_dataset(session, name)
    if record is None:
        raise DatasetRequestError(f"no data set {name}", status=404)
    active = records.active_searches_using(session, name)
    if active:
        raise DatasetRequestError(
            f"{name} is used by {active} queued or running search(es): "
            "cancel them or wait until they end",
            status=409,
        )
    if record.status in (FETCHING, IMPORTING) and record.started_at is not None:
        raise DatasetRequestError(f"{name} is being prepared: wait until it ends", status=409)
    options = record.options
    records.delete_dataset(session, name)
    cache.remove_arrays(data_dir, name)
    cache.remove_upload(data_dir, options)


def runner_options(config: Mapping) -> dict:
    """What a runner's data set jobs need of the app's configuration (plain values)."""
    return {
        "mirrors": mirrors_from(config.get("DATASET_MIRRORS")),
        "checksums": dict(config.get("DATASET_CHECKSUMS") or {}),
        "timeout": float(config["DATASET_TIMEOUT"]),
        "caps": {
            "max_rows": int(config["MAX_DATASET_ROWS"]),
            "max_features": int(config["MAX_DATASET_FEATURES"]),
            "max_classes": int(config["MAX_DATASET_CLASSES"]),
        },
    }

"""Fetching or importing one data set, as a job the runner hands to one of its workers.

Never inside a web request: the request records the data set (and streams an upload to
disk); the runner takes the record and runs `prepare_dataset` in a worker process, which
reports its progress and ends the record ready or failed, its files all written or none.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import numpy as np
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from lrsearch.datasets import cache as stored
from lrsearch.datasets.cache import VAL_FRACTION
from lrsearch.datasets.fetch import SOURCES, FetchError, fetch_files, read_images
from lrsearch.datasets.readers import (
    Caps,
    DatasetFileError,
    RawData,
    check_data,
    read_csv,
    read_dataset,
    read_npz,
)
from lrsearch.models import READY, Dataset
from lrsearch.store import datasets as records
from lrsearch.store.transactions import process_engine
from lrsearch.training import DatasetError

log = logging.getLogger(__name__)
PROGRESS_EVERY_SECONDS = 0.5  # a page polls each second; more often would only cost writes
HEARTBEAT_SECONDS = 5.0  # well inside the runner's stale limit


@cache
def _engine(database_url: str) -> Engine:
    return process_engine(database_url)


def prepare_dataset(
    dataset_id: int,
    database_url: str,
    data_dir: str,
    options: dict,
    on_progress: Callable[[float, str], None] | None = None,
) -> str:
    """Fetch or import one data set in this process; return its final status.

    options: `mirrors` (base URLs, or None), `checksums` (file -> md5 overrides),
    `timeout` (seconds per read), `caps` (Caps' fields). on_progress(share, note) is
    called as it goes (the command line's progress bar).
    """
    with Session(_engine(database_url)) as session:
        record = session.get(Dataset, dataset_id)
        if record is None:
            return "gone"
        name, kind, own = record.name, record.kind, record.options
        report = _reporter(session, dataset_id, on_progress)
        source_file = Path(data_dir) / own["file"] if own.get("file") else None
        try:
            with _heartbeat(database_url, dataset_id):
                caps = Caps(**options.get("caps", {}))
                if kind in SOURCES:
                    data = _fetched(SOURCES[kind], data_dir, options, report, caps)
                else:
                    report(0.0, "reading " + (own.get("filename") or kind))
                    data = _read_upload(source_file, own, caps)
                _check_split(data)
                report(0.9, "storing the arrays")
                values = _store(data_dir, name, data)
        except (FetchError, DatasetFileError, DatasetError, OSError) as exc:
            stored.remove_arrays(data_dir, name)
            records.fail_dataset(session, dataset_id, _one_line(exc))
            return "failed"
        except BaseException as exc:  # a bug, or Ctrl-C on the command line: never half-ready
            stored.remove_arrays(data_dir, name)
            records.fail_dataset(session, dataset_id, f"stopped: {_one_line(exc)}")
            raise
        finally:
            stored.remove_upload(data_dir, own)
        if not records.finish_dataset(session, dataset_id, **values):
            stored.remove_arrays(data_dir, name)  # removed, or failed as interrupted, meanwhile
            return "gone"
        return "ready"


def abandon(session: Session, dataset_id: int, data_dir: str, error: str) -> None:
    """A job whose worker died or whose runner stopped: failed, with no file left (its
    upload, a half-written copy of its arrays)."""
    record = session.get(Dataset, dataset_id)
    records.fail_dataset(session, dataset_id, error)
    if record is not None and record.status != READY:
        stored.remove_arrays(data_dir, record.name)
        stored.remove_upload(data_dir, record.options)


def _check_split(data: RawData) -> None:
    """Refuse data whose 80/20 split per class would leave the validation part empty."""
    if data.y_val is not None:
        return
    held_out = sum(round(VAL_FRACTION * n) for n in np.bincount(data.y) if n)
    if held_out == 0:
        raise DatasetFileError(
            f"{len(data.y)} samples leave none for validation in an 80/20 split per class: "
            "give more samples, or a validation part (x_val, y_val in an NPZ)"
        )


@contextmanager
def _heartbeat(database_url: str, dataset_id: int) -> Iterator[None]:
    """Mark the job alive every few seconds while it runs, a long parse included (the
    command line has no runner touching it)."""
    stop = threading.Event()

    def beat() -> None:
        with Session(_engine(database_url)) as session:
            while not stop.wait(HEARTBEAT_SECONDS):
                records.touch_dataset_heartbeats(session, [dataset_id])

    thread = threading.Thread(target=beat, name="dataset-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _read_upload(path: Path, own: dict, caps: Caps) -> RawData:
    """The file as its name says (.csv or .npz), else as its content says."""
    kind = Path(own.get("filename") or path.name).suffix.lower()
    if kind == ".npz":
        return read_npz(path, caps=caps)
    if kind == ".csv":
        return read_csv(path, label_column=own.get("label_column"), caps=caps)
    return read_dataset(path, label_column=own.get("label_column"), caps=caps)


def _fetched(source, data_dir: str, options: dict, report, caps: Caps) -> RawData:
    folder = stored.datasets_root(data_dir) / source.name
    done: dict[str, int] = {}

    def progress(file: str, received: int, total: int | None) -> None:
        done[file] = received
        share = sum(done.values()) / _EXPECTED_BYTES.get(source.name, max(sum(done.values()), 1))
        report(min(0.85 * share, 0.85), f"downloading {file}: {received / 1e6:.1f} MB")

    paths = fetch_files(
        source,
        folder,
        mirrors=options.get("mirrors"),
        checksums=options.get("checksums"),
        timeout=float(options.get("timeout", 30.0)),
        progress=progress,
    )
    report(0.85, "reading the IDX files")
    x, y, x_val, y_val = read_images(source, paths)
    data = RawData(x, y, tuple(source.classes), x_val, y_val)
    check_data(data, caps)
    return data


# The four files' sizes together, for a progress bar before the servers say.
_EXPECTED_BYTES = {"mnist": 11_594_722, "fashion-mnist": 30_878_645}


def _store(data_dir: str, name: str, data: RawData) -> dict[str, object]:
    """Write the arrays; the record's values describing them."""
    parts = {"x": data.x, "y": data.y, "x_val": data.x_val, "y_val": data.y_val}
    classes = len(data.labels)
    meta = {"classes": classes, "labels": list(data.labels)}
    sha256, size = stored.store_arrays(data_dir, name, parts, meta)
    counts = np.bincount(data.y, minlength=classes)
    if data.y_val is not None:
        counts = counts + np.bincount(data.y_val, minlength=classes)
    val = 0 if data.y_val is None else len(data.y_val)
    return {
        "samples": len(data.y) + val,
        "features": int(data.x.shape[1]),
        "classes": classes,
        "val_samples": val or None,
        "class_counts": [int(c) for c in counts],
        "labels": list(data.labels),
        "sha256": sha256,
        "disk_bytes": size,
    }


def _reporter(session: Session, dataset_id: int, on_progress=None):
    """report(progress, note), written at most every PROGRESS_EVERY_SECONDS."""
    last = [0.0]

    def report(progress: float, note: str) -> None:
        if on_progress is not None:
            on_progress(progress, note)
        now = time.monotonic()
        if now - last[0] >= PROGRESS_EVERY_SECONDS:
            last[0] = now
            records.report_progress(session, dataset_id, progress, note)

    return report


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:1000]

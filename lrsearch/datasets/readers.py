"""A user's data set file, CSV or NPZ, read into arrays; a bad file is refused in one line.

CSV: the delimiter is a comma, unless the first line has none: then a semicolon, else a tab, if it
has one. The first row is a header when the label column is given by name, when a non-empty cell
outside the label column is not a number, or when its label cell is not a number while the second
row's is. Classes are the distinct labels in numeric order when all are numbers, else text order.
NPZ: arrays x_train and y_train, optionally x_val and y_val, read without ever unpickling.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from lrsearch.datasets.csv_rows import parse_csv

# The names both formats share live in parsing; they are this module's interface too.
from lrsearch.datasets.parsing import (
    CLASSES_ENV,
    FEATURES_ENV,
    ROWS_ENV,
    Caps,
    Classes,
    DatasetFileError,
    RawData,
    cap_error,
    show,
)

__all__ = [
    "CLASSES_ENV",
    "DEFAULT_CAPS",
    "FEATURES_ENV",
    "ROWS_ENV",
    "Caps",
    "DatasetFileError",
    "RawData",
    "check_data",
    "read_csv",
    "read_dataset",
    "read_npz",
]

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # the test np.load itself makes for an NPZ
_NOT_OURS = "not a CSV or NPZ file"
_BLOCK_CELLS = 1 << 18  # cells handled at once: CSV cells held as text, features checked for NaN
_KINDS = {"c": "complex numbers", "U": "text", "S": "text", "O": "Python objects", "V": "records"}

DEFAULT_CAPS = Caps()


def read_dataset(
    path: Path, *, label_column: str | None = None, caps: Caps = DEFAULT_CAPS
) -> RawData:
    """CSV or NPZ, told apart by content (an NPZ is a zip archive), then checked (check_data)."""
    if _head(path).startswith(_ZIP_MAGIC):
        return read_npz(path, caps=caps)
    return read_csv(path, label_column=label_column, caps=caps)


def read_csv(path: Path, *, label_column: str | None = None, caps: Caps = DEFAULT_CAPS) -> RawData:
    """A CSV file, one sample a row: numeric features and a label column (by default the last)."""
    with _refusals(), open(path, encoding="utf-8-sig", newline="") as file:
        first_line = file.readline(1 << 16)
        file.seek(0)
        delimiter = next((d for d in (",", ";", "\t") if d in first_line), ",")
        rows = csv.reader(file, delimiter=delimiter)
        data = parse_csv(rows, label_column, caps, _BLOCK_CELLS)
    check_data(data, caps)
    return data


def read_npz(path: Path, *, caps: Caps = DEFAULT_CAPS) -> RawData:
    """An NPZ archive of x_train and y_train, optionally x_val and y_val; it never unpickles."""
    if not _head(path).startswith(_ZIP_MAGIC):
        raise DatasetFileError(f"{_NOT_OURS}: an NPZ file is a zip archive, this is not")
    # np.load is given the file: when it opens one itself, a damaged archive leaves it open.
    with _refusals(archive=True), open(path, "rb") as file:
        with np.load(file, allow_pickle=False) as npz:
            arrays = _npz_arrays(npz)
    with _refusals():  # MemoryError, for large arrays
        data = _npz_data(arrays, caps)
    check_data(data, caps)
    return data


def _head(path: Path) -> bytes:
    with _refusals(), open(path, "rb") as file:
        return file.read(4)


@contextmanager
def _refusals(archive: bool = False) -> Iterator[None]:
    """What reading a file raises, as a DatasetFileError; for an archive, anything at all."""
    try:
        yield
    except DatasetFileError:
        raise
    except MemoryError:
        raise DatasetFileError("the file is too large to read into memory") from None
    except Exception as error:
        if archive:  # a damaged archive fails in many ways inside zipfile, zlib and numpy;
            # an object array fails too: allow_pickle=False
            reason = f"{type(error).__name__}: {str(error)[:80]}"
            raise DatasetFileError(f"{_NOT_OURS}: cannot read the archive ({reason})") from None
        if isinstance(error, UnicodeDecodeError):
            raise DatasetFileError(f"{_NOT_OURS}: it is not UTF-8 text") from None
        if isinstance(error, csv.Error):
            raise DatasetFileError(f"{_NOT_OURS}: {error}") from None
        if isinstance(error, OSError):
            raise DatasetFileError(f"cannot read the file: {error.strerror or error}") from None
        raise


# NPZ


def _npz_arrays(npz: np.lib.npyio.NpzFile) -> dict[str, np.ndarray]:
    keys = npz.files
    for key in ("x_train", "y_train"):
        if key not in keys:
            held = ", ".join(show(k) for k in keys[:10]) + (", ..." if len(keys) > 10 else "")
            raise DatasetFileError(f"missing array '{key}'; the file holds {held or 'none'}")
    if ("x_val" in keys) != ("y_val" in keys):
        given, lacking = ("x_val", "y_val") if "x_val" in keys else ("y_val", "x_val")
        raise DatasetFileError(f"{given} without {lacking}: give both or neither")
    arrays = {key: npz[key] for key in ("x_train", "y_train", "x_val", "y_val") if key in keys}
    for key, value in arrays.items():
        if not isinstance(value, np.ndarray):  # NpzFile gives a member that is no .npy as bytes
            raise DatasetFileError(f"{key} is not a NumPy array")
    return arrays


def _check_kind(key: str, dtype: np.dtype) -> None:
    is_x = key.startswith("x")  # features are numbers, labels integers or text: never objects
    if dtype.kind not in ("biuf" if is_x else "biuUS"):
        wanted = "numbers" if is_x else "integer or text labels"
        raise DatasetFileError(f"{key} must hold {wanted}, not {_KINDS.get(dtype.kind, dtype)}")


def _npz_data(arrays: dict[str, np.ndarray], caps: Caps) -> RawData:
    """Features as float32 (n, d); labels mapped through the training part's classes."""
    x = _features(arrays["x_train"], "x_train")
    texts, codes = _label_texts(arrays["y_train"], "y_train", len(x), caps)
    classes = Classes(texts)
    y = classes.table(texts)[codes]
    if "x_val" not in arrays:
        return RawData(x=x, y=y, labels=classes.labels)
    x_val = _features(arrays["x_val"], "x_val")
    texts, codes = _label_texts(arrays["y_val"], "y_val", len(x_val), caps)
    return RawData(x, y, classes.labels, x_val, classes.table(texts)[codes])


def _features(x: np.ndarray, key: str) -> np.ndarray:
    """x as float32 (n, d), one row per sample: images and other tensors are flattened."""
    _check_kind(key, x.dtype)
    if x.ndim < 2 or x.shape[0] == 0 or math.prod(x.shape[1:]) == 0:
        raise DatasetFileError(f"{key} must hold features per sample (n, d), not shape {x.shape}")
    for index in np.argwhere(~np.isfinite(x))[:1]:
        raise DatasetFileError(f"{key}[{', '.join(map(str, index))}]: NaN or infinity")
    with np.errstate(over="ignore"):  # float64 above 3.4e38 becomes inf: refused just below
        x32 = np.ascontiguousarray(x.reshape(len(x), -1), dtype=np.float32)
    if not np.isfinite(x32).all():
        raise DatasetFileError(f"{key} holds values too large for float32")
    return x32


def _label_texts(y: np.ndarray, key: str, n: int, caps: Caps) -> tuple[list[str], np.ndarray]:
    """The distinct label texts, and each sample's index into them."""
    _check_kind(key, y.dtype)
    if y.shape != (n,):
        raise DatasetFileError(f"{key} must hold one label per sample ({n}), not shape {y.shape}")
    unique, inverse = np.unique(y, return_inverse=True)
    if len(unique) > caps.max_classes:
        raise cap_error(len(unique), "classes", caps.max_classes, CLASSES_ENV)
    if y.dtype.kind == "S":
        unique = np.strings.decode(unique, "utf-8", "replace")
    text = y.dtype.kind in "US"
    texts = [str(value).strip() if text else str(int(value)) for value in unique]
    if "" in texts:
        raise DatasetFileError(f"{key} holds an empty label")
    return texts, inverse.reshape(-1)


# Both formats


def check_data(data: RawData, caps: Caps) -> None:
    """Refuse data a search cannot use: over a cap, NaN or infinity, too few classes or samples."""
    classes = len(data.labels)
    rows = _check_part(data.x, data.y, classes, "training")
    if (data.x_val is None) != (data.y_val is None):
        raise DatasetFileError("the validation part needs both features and labels")
    if data.x_val is not None:
        rows += _check_part(data.x_val, data.y_val, classes, "validation")
        if data.x_val.shape[1] != data.x.shape[1]:
            counts = f"{data.x_val.shape[1]} features, the training part {data.x.shape[1]}"
            raise DatasetFileError(f"the validation part has {counts}")
    for count, what, cap, env in (
        (rows, "rows", caps.max_rows, ROWS_ENV),
        (data.x.shape[1], "features", caps.max_features, FEATURES_ENV),
        (classes, "classes", caps.max_classes, CLASSES_ENV),
    ):
        if count > cap:
            raise cap_error(count, what, cap, env)
    if classes < 2:
        found = f": {show(data.labels[0])}" if classes else ""
        raise DatasetFileError(f"needs at least 2 classes, found {classes}{found}")
    if len(data.x) < 2 * classes:
        needs = f"{classes} classes need at least {2 * classes} training samples"
        raise DatasetFileError(f"{needs}, found {len(data.x)}")
    for missing in [] if data.y_val is None else np.setdiff1d(data.y_val, data.y)[:1]:
        where = "is in the validation part but not in the training part"
        raise DatasetFileError(f"class {show(data.labels[missing])} {where}")


def _check_part(x: np.ndarray, y: np.ndarray | None, classes: int, part: str) -> int:
    """Check one part's arrays and values; its number of samples."""
    x_ok = isinstance(x, np.ndarray) and x.dtype == np.float32 and x.ndim == 2 and x.size > 0
    if not (x_ok and x.flags.c_contiguous and isinstance(y, np.ndarray) and y.shape == (len(x),)):
        raise DatasetFileError(f"the {part} part needs float32 (n, d) features and n labels")
    if y.dtype != np.int64 or y.min() < 0 or y.max() >= classes:
        raise DatasetFileError(f"the {part} labels must be int64 class indices below {classes}")
    step = max(1, _BLOCK_CELLS // x.shape[1])  # in blocks: a mask of all of x can be large
    for start in range(0, len(x), step):
        for i, j in np.argwhere(~np.isfinite(x[start : start + step]))[:1]:
            where = f"sample {start + i}, feature {j}, counted from 0"
            raise DatasetFileError(f"the {part} features hold NaN or infinity ({where})")
    return len(x)

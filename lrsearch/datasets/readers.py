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
import re
from array import array
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np

ROWS_ENV = "LRSEARCH_MAX_DATASET_ROWS"
FEATURES_ENV = "LRSEARCH_MAX_DATASET_FEATURES"
CLASSES_ENV = "LRSEARCH_MAX_DATASET_CLASSES"

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # the test np.load itself makes for an NPZ
_NOT_OURS = "not a CSV or NPZ file"
_BLOCK_CELLS = 1 << 18  # CSV cells held as text at once: the rows before are float32 already
_INTEGER = re.compile(r"[+-]?[0-9]{1,18}")  # a label column given by number, not by name
_KINDS = {"c": "complex numbers", "U": "text", "S": "text", "O": "Python objects", "V": "records"}


class DatasetFileError(ValueError):
    """A file that cannot become a data set; the one-line message says why, row and column too."""

    def __init__(self, message: str) -> None:
        # File text (cells, header names, archive members) reaches messages: keep them one line.
        super().__init__(" ".join(str(message).splitlines()))


@dataclass(frozen=True)
class Caps:
    """Limits on a data set's size."""

    max_rows: int = 10_000_000  # samples, training and validation together
    max_features: int = 100_000
    max_classes: int = 1000


DEFAULT_CAPS = Caps()


@dataclass(frozen=True, eq=False)
class RawData:
    """A data set as read: features, class indices, and the labels those indices stand for."""

    x: np.ndarray  # float32, C-contiguous, (n, d)
    y: np.ndarray  # int64 class indices, (n,)
    labels: tuple[str, ...]  # class index -> the label as written in the file
    x_val: np.ndarray | None = None  # given validation part, if any (same columns and labels)
    y_val: np.ndarray | None = None


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
        data = _parse_csv(csv.reader(file, delimiter=delimiter), label_column, caps)
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


def _show(text: str, limit: int = 20) -> str:
    """File text quoted for a message: short, and escaped onto one line by repr."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _cap_error(count: object, what: str, cap: int, env: str) -> DatasetFileError:
    return DatasetFileError(f"{count} {what}, above the cap of {cap} ({env})")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _as_number(text: str) -> int | float | None:
    """A label's value if it is a finite number (an integer kept exact), else None."""
    try:
        return int(text)
    except ValueError:
        value = float(text) if _is_number(text) else math.nan
    return value if math.isfinite(value) else None


class _Classes:
    """Classes of the training labels, and the mapping of label texts onto them."""

    def __init__(self, texts: list[str]) -> None:
        values = [_as_number(text) for text in texts]  # in order of first use, for CSV files
        self.numeric = all(value is not None for value in values)
        first: dict = {}  # "1" and "1.0" are one class, named as first written
        for key, text in zip(values if self.numeric else texts, texts, strict=True):
            first.setdefault(key, text)
        self.index = {key: i for i, key in enumerate(sorted(first))}
        self.labels = tuple(first[key] for key in sorted(first))

    def table(self, texts: list[str]) -> np.ndarray:
        """The class of each label text; one that no training label has is refused by name."""
        keys = [_as_number(text) if self.numeric else text for text in texts]
        for text, key in zip(texts, keys, strict=True):
            if key not in self.index:
                where = "is in the validation part but not in the training part"
                raise DatasetFileError(f"class {_show(text)} {where}")
        return np.array([self.index[key] for key in keys], dtype=np.int64)


# CSV


def _parse_csv(reader: Iterator[list[str]], label_column: str | None, caps: Caps) -> RawData:
    """Lay out the columns from the first two rows, then stream every data row."""
    rows = _numbered_rows(reader)
    first, second = next(rows, None), next(rows, None)
    if first is None:
        raise DatasetFileError("the file holds no data rows")
    if len(first[1]) - 1 > caps.max_features:
        raise _cap_error(len(first[1]) - 1, "features", caps.max_features, FEATURES_ENV)
    if len(first[1]) < 2:
        raise DatasetFileError(
            "the first row has 1 cell; a data set needs feature columns and a label"
        )
    label, header = _layout(first[1], second[1] if second else None, label_column)
    body = _CsvRows(first[1], label, header, caps)
    for line, row in chain([] if header else [first], [second] if second else [], rows):
        body.add(line, row)
    return body.finish()


def _numbered_rows(reader: Iterator[list[str]]) -> Iterator[tuple[int, list[str]]]:
    line = 0
    for row in reader:  # messages give the line a row starts on: quoted cells may span lines
        start, line = line + 1, reader.line_num  # type: ignore[attr-defined]
        if len(row) > 1 or (row and row[0].strip()):
            yield start, row


def _layout(first: list[str], second: list[str] | None, wanted: str | None) -> tuple[int, bool]:
    """The label column, and whether the first row is a header (the rule: module docstring)."""
    ncols, wanted = len(first), (wanted or "").strip()
    if wanted and not _INTEGER.fullmatch(wanted):
        names = [cell.strip() for cell in first]
        if wanted not in names:
            shown = ", ".join(_show(name) for name in names[:10]) + (", ..." if ncols > 10 else "")
            raise DatasetFileError(f"no column named {_show(wanted)}; the columns are {shown}")
        return names.index(wanted), True
    label = int(wanted) if wanted else -1
    if not -ncols <= label < ncols:
        span = f"0 to {ncols - 1}, or -{ncols} to -1"
        raise DatasetFileError(f"label column {label} is out of range: {ncols} columns ({span})")
    label %= ncols
    if any(c.strip() and not _is_number(c) for i, c in enumerate(first) if i != label):
        return label, True
    second_label = second[label] if second and len(second) == ncols else ""
    return label, not _is_number(first[label]) and _is_number(second_label)


class _CsvRows:
    """Data rows streamed into float32 blocks and label codes, so no list holds every cell."""

    def __init__(self, first: list[str], label: int, header: bool, caps: Caps) -> None:
        self.ncols, self.label, self.caps = len(first), label, caps
        self.names = [name.strip() for name in first] if header else None
        self.block_rows = max(1, _BLOCK_CELLS // self.ncols)
        self.cells: list[list[str]] = []  # feature texts of the rows not parsed yet
        self.lines: list[int] = []
        self.blocks: list[np.ndarray] = []
        self.codes = array("q")
        self.texts: dict[str, int] = {}  # label text -> code, in order of first use

    def column(self, index: int) -> str:
        name = self.names[index] if self.names else ""
        return _show(name) if name else str(index + 1)  # counted from 1, as a person does

    def add(self, line: int, row: list[str]) -> None:
        """Take a data row; refuse a ragged row, an empty label, or rows or classes over a cap."""
        caps = self.caps
        if len(row) != self.ncols:
            raise DatasetFileError(f"row {line} has {len(row)} cells, expected {self.ncols}")
        if len(self.codes) >= caps.max_rows:
            raise _cap_error(f"more than {caps.max_rows}", "rows", caps.max_rows, ROWS_ENV)
        label = row[self.label].strip()
        if not label:
            raise DatasetFileError(f"row {line}, column {self.column(self.label)}: empty label")
        self.codes.append(self.texts.setdefault(label, len(self.texts)))
        if len(self.texts) > caps.max_classes:
            cap = caps.max_classes
            raise _cap_error(f"more than {cap}", "classes", cap, CLASSES_ENV)
        self.cells.append(row[: self.label] + row[self.label + 1 :])
        self.lines.append(line)
        if len(self.cells) >= self.block_rows:
            self.flush()

    def flush(self) -> None:
        """Parse the pending rows into a float32 block; a bad cell is refused by row and column."""
        if not self.cells:
            return
        try:
            block = np.array(self.cells, dtype=np.float64)
        except ValueError:
            raise self._bad_cell() from None
        for i, j in np.argwhere(~np.isfinite(block))[:1]:
            raise self._error_at(i, j, "NaN or infinity")
        with np.errstate(over="ignore"):  # 1e40 becomes inf in float32: refused just below
            block32 = block.astype(np.float32)
        for i, j in np.argwhere(~np.isfinite(block32))[:1]:
            raise self._error_at(i, j, f"{_show(self.cells[i][j])} is too large for float32")
        self.blocks.append(block32)
        self.cells, self.lines = [], []

    def _error_at(self, i: int, j: int, what: str) -> DatasetFileError:
        column = self.column(j + (j >= self.label))  # j counts the feature cells only
        return DatasetFileError(f"row {self.lines[i]}, column {column}: {what}")

    def _bad_cell(self) -> DatasetFileError:
        for i, row in enumerate(self.cells):
            for j, text in enumerate(row):
                if not _is_number(text):
                    what = f"{_show(text)} is not a number" if text.strip() else "empty cell"
                    return self._error_at(i, j, what)
        return DatasetFileError(f"rows {self.lines[0]} to {self.lines[-1]}: a cell is not a number")

    def finish(self) -> RawData:
        """The data set of the rows taken."""
        self.flush()
        if not self.blocks:
            raise DatasetFileError("the file holds no data rows")
        classes = _Classes(list(self.texts))
        y = classes.table(list(self.texts))[np.frombuffer(self.codes, dtype=np.int64)]
        x = self.blocks[0] if len(self.blocks) == 1 else np.concatenate(self.blocks)
        return RawData(x=x, y=y, labels=classes.labels)


# NPZ


def _npz_arrays(npz: np.lib.npyio.NpzFile) -> dict[str, np.ndarray]:
    keys = npz.files
    for key in ("x_train", "y_train"):
        if key not in keys:
            held = ", ".join(_show(k) for k in keys[:10]) + (", ..." if len(keys) > 10 else "")
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
    classes = _Classes(texts)
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
        raise _cap_error(len(unique), "classes", caps.max_classes, CLASSES_ENV)
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
            raise _cap_error(count, what, cap, env)
    if classes < 2:
        found = f": {_show(data.labels[0])}" if classes else ""
        raise DatasetFileError(f"needs at least 2 classes, found {classes}{found}")
    if len(data.x) < 2 * classes:
        needs = f"{classes} classes need at least {2 * classes} training samples"
        raise DatasetFileError(f"{needs}, found {len(data.x)}")
    for missing in [] if data.y_val is None else np.setdiff1d(data.y_val, data.y)[:1]:
        where = "is in the validation part but not in the training part"
        raise DatasetFileError(f"class {_show(data.labels[missing])} {where}")


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

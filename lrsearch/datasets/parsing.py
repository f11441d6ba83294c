"""What the CSV and NPZ readers share: the error a refused file raises, the caps, the data set a
file becomes, and how label texts become classes."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ROWS_ENV = "LRSEARCH_MAX_DATASET_ROWS"
FEATURES_ENV = "LRSEARCH_MAX_DATASET_FEATURES"
CLASSES_ENV = "LRSEARCH_MAX_DATASET_CLASSES"


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


@dataclass(frozen=True, eq=False)
class RawData:
    """A data set as read: features, class indices, and the labels those indices stand for."""

    x: np.ndarray  # float32, C-contiguous, (n, d)
    y: np.ndarray  # int64 class indices, (n,)
    labels: tuple[str, ...]  # class index -> the label as written in the file
    x_val: np.ndarray | None = None  # given validation part, if any (same columns and labels)
    y_val: np.ndarray | None = None


def show(text: str, limit: int = 20) -> str:
    """File text quoted for a message: short, and escaped onto one line by repr."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def cap_error(count: object, what: str, cap: int, env: str) -> DatasetFileError:
    return DatasetFileError(f"{count} {what}, above the cap of {cap} ({env})")


def is_number(text: str) -> bool:
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
        value = float(text) if is_number(text) else math.nan
    return value if math.isfinite(value) else None


class Classes:
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
                raise DatasetFileError(f"class {show(text)} {where}")
        return np.array([self.index[key] for key in keys], dtype=np.int64)

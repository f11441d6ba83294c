"""A CSV file's rows made into a data set: the label column and header found from the first two
rows, then every data row streamed into float32 blocks, a bad cell refused by row and column."""

from __future__ import annotations

import re
from array import array
from collections.abc import Iterator
from itertools import chain

import numpy as np

from lrsearch.datasets.parsing import (
    CLASSES_ENV,
    FEATURES_ENV,
    ROWS_ENV,
    Caps,
    Classes,
    DatasetFileError,
    RawData,
    cap_error,
    is_number,
    show,
)

_INTEGER = re.compile(r"[+-]?[0-9]{1,18}")  # a label column given by number, not by name


def parse_csv(
    reader: Iterator[list[str]], label_column: str | None, caps: Caps, block_cells: int
) -> RawData:
    """Lay out the columns from the first two rows, then stream every data row.

    block_cells: how many cells are held as text at once; the rows before are float32 already.
    """
    rows = _numbered_rows(reader)
    first, second = next(rows, None), next(rows, None)
    if first is None:
        raise DatasetFileError("the file holds no data rows")
    if len(first[1]) - 1 > caps.max_features:
        raise cap_error(len(first[1]) - 1, "features", caps.max_features, FEATURES_ENV)
    if len(first[1]) < 2:
        raise DatasetFileError(
            "the first row has 1 cell; a data set needs feature columns and a label"
        )
    label, header = _layout(first[1], second[1] if second else None, label_column)
    body = _CsvRows(first[1], label, header, caps, block_cells)
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
    """The label column, and whether the first row is a header (the rule: readers' docstring)."""
    ncols, wanted = len(first), (wanted or "").strip()
    if wanted and not _INTEGER.fullmatch(wanted):
        names = [cell.strip() for cell in first]
        if wanted not in names:
            shown = ", ".join(show(name) for name in names[:10]) + (", ..." if ncols > 10 else "")
            raise DatasetFileError(f"no column named {show(wanted)}; the columns are {shown}")
        return names.index(wanted), True
    label = int(wanted) if wanted else -1
    if not -ncols <= label < ncols:
        span = f"0 to {ncols - 1}, or -{ncols} to -1"
        raise DatasetFileError(f"label column {label} is out of range: {ncols} columns ({span})")
    label %= ncols
    if any(c.strip() and not is_number(c) for i, c in enumerate(first) if i != label):
        return label, True
    second_label = second[label] if second and len(second) == ncols else ""
    return label, not is_number(first[label]) and is_number(second_label)


class _CsvRows:
    """Data rows streamed into float32 blocks and label codes, so no list holds every cell."""

    def __init__(
        self, first: list[str], label: int, header: bool, caps: Caps, block_cells: int
    ) -> None:
        self.ncols, self.label, self.caps = len(first), label, caps
        self.names = [name.strip() for name in first] if header else None
        self.block_rows = max(1, block_cells // self.ncols)
        self.cells: list[list[str]] = []  # feature texts of the rows not parsed yet
        self.lines: list[int] = []
        self.blocks: list[np.ndarray] = []
        self.codes = array("q")
        self.texts: dict[str, int] = {}  # label text -> code, in order of first use

    def column(self, index: int) -> str:
        name = self.names[index] if self.names else ""
        return show(name) if name else str(index + 1)  # counted from 1, as a person does

    def add(self, line: int, row: list[str]) -> None:
        """Take a data row; refuse a ragged row, an empty label, or rows or classes over a cap."""
        caps = self.caps
        if len(row) != self.ncols:
            raise DatasetFileError(f"row {line} has {len(row)} cells, expected {self.ncols}")
        if len(self.codes) >= caps.max_rows:
            raise cap_error(f"more than {caps.max_rows}", "rows", caps.max_rows, ROWS_ENV)
        label = row[self.label].strip()
        if not label:
            raise DatasetFileError(f"row {line}, column {self.column(self.label)}: empty label")
        self.codes.append(self.texts.setdefault(label, len(self.texts)))
        if len(self.texts) > caps.max_classes:
            cap = caps.max_classes
            raise cap_error(f"more than {cap}", "classes", cap, CLASSES_ENV)
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
            raise self._error_at(i, j, f"{show(self.cells[i][j])} is too large for float32")
        self.blocks.append(block32)
        self.cells, self.lines = [], []

    def _error_at(self, i: int, j: int, what: str) -> DatasetFileError:
        column = self.column(j + (j >= self.label))  # j counts the feature cells only
        return DatasetFileError(f"row {self.lines[i]}, column {column}: {what}")

    def _bad_cell(self) -> DatasetFileError:
        for i, row in enumerate(self.cells):
            for j, text in enumerate(row):
                if not is_number(text):
                    what = f"{show(text)} is not a number" if text.strip() else "empty cell"
                    return self._error_at(i, j, what)
        return DatasetFileError(f"rows {self.lines[0]} to {self.lines[-1]}: a cell is not a number")

    def finish(self) -> RawData:
        """The data set of the rows taken."""
        self.flush()
        if not self.blocks:
            raise DatasetFileError("the file holds no data rows")
        classes = Classes(list(self.texts))
        y = classes.table(list(self.texts))[np.frombuffer(self.codes, dtype=np.int64)]
        x = self.blocks[0] if len(self.blocks) == 1 else np.concatenate(self.blocks)
        return RawData(x=x, y=y, labels=classes.labels)

"""A user's CSV or NPZ data set file: read into arrays, or refused with a one-line reason."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lrsearch.datasets import readers
from lrsearch.datasets.readers import (
    Caps,
    DatasetFileError,
    RawData,
    check_data,
    read_csv,
    read_dataset,
    read_npz,
)

FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
FOUR_ROWS = "1,2,cat\n3,4,dog\n5,6,cat\n7,8,dog\n"


def write(tmp_path: Path, content: str | bytes, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def save_npz(tmp_path: Path, name: str = "data.npz", **arrays: object) -> Path:
    path = tmp_path / name
    with open(path, "wb") as file:
        np.savez(file, **arrays)
    return path


def refused(path: Path, *words: str, **options: object) -> str:
    """The message read_dataset refuses the file with: one line, holding every word given."""
    with pytest.raises(DatasetFileError) as caught:
        read_dataset(path, **options)
    message = str(caught.value)
    assert message and len(message.splitlines()) == 1, message
    for word in words:
        assert word in message, message
    return message


def assert_valid(data: RawData) -> None:
    """What every data set read must be, whatever the file held."""
    classes = len(data.labels)
    assert classes >= 2 and len(set(data.labels)) == classes
    assert all(isinstance(label, str) and label for label in data.labels)
    assert len(data.x) >= 2 * classes
    assert (data.x_val is None) == (data.y_val is None)
    for x, y in ((data.x, data.y), (data.x_val, data.y_val)):
        if x is None:
            continue
        assert x.dtype == np.float32 and x.ndim == 2 and x.flags.c_contiguous
        assert x.shape[1] == data.x.shape[1] >= 1 and np.isfinite(x).all()
        assert y.dtype == np.int64 and y.shape == (len(x),)
        assert y.min() >= 0 and y.max() < classes
    if data.y_val is not None:
        assert set(data.y_val.tolist()) <= set(data.y.tolist())


def outcome(path: Path, **options: object) -> RawData | None:
    """Read a file that may hold anything: a valid data set, or a one-line refusal."""
    try:
        data = read_dataset(path, **options)
    except DatasetFileError as error:
        assert str(error) and len(str(error).splitlines()) == 1, str(error)
        return None
    assert_valid(data)
    return data


# CSV files that are good


def test_csv_with_header_and_the_label_last(tmp_path: Path) -> None:
    data = read_dataset(write(tmp_path, "a,b,label\n" + FOUR_ROWS))
    assert_valid(data)
    np.testing.assert_array_equal(data.x, [[1, 2], [3, 4], [5, 6], [7, 8]])
    assert data.y.tolist() == [0, 1, 0, 1] and data.labels == ("cat", "dog")
    assert data.x_val is None and data.y_val is None


def test_csv_without_header_maps_string_labels_in_text_order(tmp_path: Path) -> None:
    data = read_dataset(write(tmp_path, "1.5,-2,dog\n3,4e1,cat\n5,6,dog\n7,8,cat\n"))
    np.testing.assert_array_equal(data.x, np.array([[1.5, -2], [3, 40], [5, 6], [7, 8]], "f4"))
    assert data.labels == ("cat", "dog") and data.y.tolist() == [1, 0, 1, 0]


@pytest.mark.parametrize("label_column", ["label", " label ", "0", "-3", "+0"])
def test_csv_label_column_by_name_or_number(tmp_path: Path, label_column: str) -> None:
    path = write(tmp_path, "label,a,b\ncat,1,2\ndog,3,4\ncat,5,6\ndog,7,8\n")
    data = read_dataset(path, label_column=label_column)
    np.testing.assert_array_equal(data.x, [[1, 2], [3, 4], [5, 6], [7, 8]])
    assert data.labels == ("cat", "dog") and data.y.tolist() == [0, 1, 0, 1]


def test_csv_label_column_by_number_without_header(tmp_path: Path) -> None:
    data = read_csv(write(tmp_path, "1,cat,2\n3,dog,4\n5,cat,6\n7,dog,8\n"), label_column="-2")
    np.testing.assert_array_equal(data.x, [[1, 2], [3, 4], [5, 6], [7, 8]])
    assert data.labels == ("cat", "dog")


def test_csv_numeric_labels_in_numeric_order_as_first_written(tmp_path: Path) -> None:
    rows = ["0,0,10", "0,1,2", "1,0,1", "1,1,2", "2,0,10", "2,1,1.0"]
    data = read_dataset(write(tmp_path, "\n".join(rows)))
    assert data.labels == ("1", "2", "10")  # "1.0" is the class "1", named as first written
    assert data.y.tolist() == [2, 1, 0, 1, 2, 0]


def test_csv_header_of_numbers_told_by_its_label_cell(tmp_path: Path) -> None:
    data = read_dataset(write(tmp_path, "0,1,label\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n"))
    assert len(data.x) == 4 and data.labels == ("0", "1")


@pytest.mark.parametrize("delimiter", [";", "\t"])
def test_csv_semicolon_or_tab_delimiter(tmp_path: Path, delimiter: str) -> None:
    text = "a,b,label\n" + FOUR_ROWS
    data = read_dataset(write(tmp_path, text.replace(",", delimiter)))
    np.testing.assert_array_equal(data.x, [[1, 2], [3, 4], [5, 6], [7, 8]])
    assert data.labels == ("cat", "dog")


def test_csv_quoted_cells(tmp_path: Path) -> None:
    text = '"a","b, c","label"\n" 1 ","2","big, cat"\n3,"4",dog\n5,6," big, cat "\n"7",8,dog\n'
    data = read_dataset(write(tmp_path, text), label_column="label")
    np.testing.assert_array_equal(data.x, [[1, 2], [3, 4], [5, 6], [7, 8]])
    assert data.labels == ("big, cat", "dog") and data.y.tolist() == [0, 1, 0, 1]


def test_csv_blank_lines_crlf_and_byte_order_mark(tmp_path: Path) -> None:
    text = "\ufeffa,b,label\r\n1,2,cat\r\n3,4,dog\r\n\r\n5,6,cat\r\n7,8,dog\r\n\r\n\n  \n"
    data = read_dataset(write(tmp_path, text))
    np.testing.assert_array_equal(data.x, [[1, 2], [3, 4], [5, 6], [7, 8]])
    text = "\ufefflabel,a\ncat,1\ndog,2\ncat,3\ndog,4\n"  # the mark is no part of the name
    assert read_dataset(write(tmp_path, text), label_column="label").labels == ("cat", "dog")


def test_csv_streams_in_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readers, "_BLOCK_CELLS", 8)  # blocks of 2 rows
    rows = [f"{i},{-i},{'ab'[i % 2]}" for i in range(30)]
    data = read_dataset(write(tmp_path, "\n".join(rows)))
    np.testing.assert_array_equal(data.x, [[i, -i] for i in range(30)])
    assert data.y.tolist() == [i % 2 for i in range(30)]
    rows[25] = "25,x25,b"
    refused(write(tmp_path, "\n".join(rows)), "row 26, column 2: 'x25' is not a number")


# CSV files that are refused


@pytest.mark.parametrize(
    "text, options, words",
    [
        ("a,b,label\n1,2,x\n3,abc,y\n", {}, ["row 3, column 'b': 'abc' is not a number"]),
        ("1,2,x\n3,4,y\n5,six,x\n", {}, ["row 3, column 2: 'six' is not a number"]),
        ("1,2,x\n3,,y\n", {}, ["row 2, column 2: empty cell"]),
        ("1,2,x\n" + "y" * 50 + ",1,y\n", {}, ["row 2, column 1: '" + "y" * 20 + "...'"]),
        ("a,b,label\n1,2,x\n3,4\n5,6,y\n", {}, ["row 3 has 2 cells, expected 3"]),
        ("1,2,x\n\n3,4,y,9\n", {}, ["row 3 has 4 cells, expected 3"]),
        ("1,2,x\nnan,4,y\n", {}, ["row 2, column 1: NaN or infinity"]),
        ("a,b,label\n1,2,x\n1,-inf,y\n", {}, ["row 3, column 'b': NaN or infinity"]),
        ("1,2,x\n1, Infinity ,y\n", {}, ["row 2, column 2: NaN or infinity"]),
        ("1,2,x\n1e40,2,y\n", {}, ["row 2, column 1: '1e40' is too large for float32"]),
        ("a,b,label\n1,2,x\n1,2, \n", {}, ["row 3, column 'label': empty label"]),
        ("a,b,label\n1,2,x\n", {"label_column": "kind"}, ["no column named 'kind'", "'label'"]),
        ("1,2,x\n3,4,y\n", {"label_column": "3"}, ["label column 3 is out of range", "3 col"]),
        ("1,2,x\n3,4,y\n", {"label_column": "-4"}, ["label column -4 is out of range"]),
        ("", {}, ["the file holds no data rows"]),
        ("\n \n\n", {}, ["the file holds no data rows"]),
        ("a,b,label\n\n", {}, ["the file holds no data rows"]),
        ("1\n2\n", {}, ["the first row has 1 cell"]),
        ("1,2,cat\n3,4,cat\n", {}, ["needs at least 2 classes, found 1: 'cat'"]),
        ("1,x\n2,y\n3,x\n", {}, ["2 classes need at least 4 training samples, found 3"]),
        ("a,b\n\xff\xfe,1\n".encode("latin-1"), {}, ["not a CSV or NPZ file"]),
        (bytes(range(256)) * 3, {}, ["not a CSV or NPZ file"]),
    ],
)
def test_csv_refused(tmp_path: Path, text: str | bytes, options: dict, words: list[str]) -> None:
    refused(write(tmp_path, text), *words, **options)


def test_csv_rows_are_counted_as_lines_and_names_kept_on_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, '"we\nird",b,label\n1,2,x\n"fo\no",4,y\n')
    refused(path, "row 4, column 'we\\nird': 'fo\\no' is not a number")


def test_csv_a_file_that_cannot_be_read(tmp_path: Path) -> None:
    refused(tmp_path / "missing.csv", "cannot read the file")
    with pytest.raises(DatasetFileError, match="cannot read the file"):
        read_csv(tmp_path)


# NPZ files


def test_npz_without_validation_part(tmp_path: Path) -> None:
    x = np.arange(18.0).reshape(6, 3)
    data = read_dataset(save_npz(tmp_path, x_train=x, y_train=np.array([7, 3, 7, 3, 10, 10])))
    assert_valid(data)
    np.testing.assert_array_equal(data.x, x)
    assert data.labels == ("3", "7", "10") and data.y.tolist() == [1, 0, 1, 0, 2, 2]


def test_npz_with_validation_part_told_by_content(tmp_path: Path) -> None:
    path = save_npz(
        tmp_path,
        "data.csv",  # the name does not matter: the content is a zip archive
        x_train=np.ones((4, 2), "f4"),
        y_train=np.array([0, 1, 0, 1]),
        x_val=np.zeros((3, 2), "i8"),
        y_val=np.array([1, 1, 0]),
    )
    data = read_dataset(path, label_column="ignored")
    assert_valid(data)
    assert data.x_val.dtype == np.float32 and data.x_val.shape == (3, 2)
    assert data.y_val.tolist() == [1, 1, 0] and data.labels == ("0", "1")


def test_npz_images_are_flattened(tmp_path: Path) -> None:
    images = np.random.default_rng(0).integers(0, 256, (6, 28, 28), dtype=np.uint8)
    data = read_npz(save_npz(tmp_path, x_train=images, y_train=np.arange(6) % 3))
    assert data.x.shape == (6, 784) and data.x.dtype == np.float32
    np.testing.assert_array_equal(data.x[2], images[2].ravel())


@pytest.mark.parametrize("dtype", ["U", "S"])
def test_npz_string_labels(tmp_path: Path, dtype: str) -> None:
    y = np.array(["dog", "cat", "dog", " cat "], dtype=dtype)
    data = read_dataset(save_npz(tmp_path, x_train=np.eye(4), y_train=y))
    assert data.labels == ("cat", "dog") and data.y.tolist() == [1, 0, 1, 0]


def test_npz_validation_labels_use_the_training_classes(tmp_path: Path) -> None:
    path = save_npz(
        tmp_path,
        x_train=np.eye(4),
        y_train=np.array(["b", "c", "b", "c"]),
        x_val=np.eye(4)[:2],
        y_val=np.array(["c", "c"]),
    )
    data = read_dataset(path)
    assert data.labels == ("b", "c") and data.y_val.tolist() == [1, 1]


def _zip(tmp_path: Path, members: dict[str, bytes]) -> Path:
    path = tmp_path / "archive.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return path


X4, Y4 = np.eye(4), np.array([0, 1, 0, 1])


@pytest.mark.parametrize(
    "arrays, words",
    [
        (
            {"x_train": X4, "labels": Y4},
            ["missing array 'y_train'; the file holds 'x_train', 'lab"],
        ),
        ({"y_train": Y4}, ["missing array 'x_train'"]),
        ({"x_train": X4, "y_train": Y4, "x_val": X4}, ["x_val without y_val"]),
        ({"x_train": X4, "y_train": Y4, "y_val": Y4}, ["y_val without x_val"]),
        ({"x_train": X4, "y_train": np.array([0, 1, "a", None], dtype=object)}, ["Object arr"]),
        ({"x_train": X4.astype(object), "y_train": Y4}, ["not a CSV or NPZ file"]),
        ({"x_train": X4 * 1j, "y_train": Y4}, ["x_train must hold numbers, not complex numbers"]),
        ({"x_train": X4.astype("U3"), "y_train": Y4}, ["x_train must hold numbers, not text"]),
        ({"x_train": X4, "y_train": Y4 + 0.5}, ["y_train must hold integer or text labels"]),
        ({"x_train": X4[0], "y_train": Y4}, ["x_train must hold features per sample", "(4,)"]),
        ({"x_train": X4[:0], "y_train": Y4[:0]}, ["x_train must hold features per sample"]),
        ({"x_train": X4, "y_train": Y4[:3]}, ["y_train must hold one label per sample (4)"]),
        ({"x_train": X4, "y_train": Y4[:, None]}, ["y_train must hold one label per sample"]),
        ({"x_train": X4, "y_train": np.array(["a", "b", "", "a"])}, ["y_train holds an empty"]),
        ({"x_train": np.where(X4, np.nan, 0), "y_train": Y4}, ["x_train[0, 0]: NaN or infin"]),
        ({"x_train": X4 * 1e300, "y_train": Y4}, ["x_train holds values too large for float32"]),
        ({"x_train": X4, "y_train": Y4 * 0}, ["needs at least 2 classes, found 1: '0'"]),
        ({"x_train": X4, "y_train": np.arange(4)}, ["4 classes need at least 8 training samples"]),
        (
            {"x_train": X4, "y_train": Y4, "x_val": X4[:1], "y_val": np.array([5])},
            ["class '5' is in the validation part but not in the training part"],
        ),
        (
            {"x_train": X4, "y_train": Y4, "x_val": X4[:, :3], "y_val": Y4},
            ["the validation part has 3 features, the training part 4"],
        ),
    ],
)
def test_npz_refused(tmp_path: Path, arrays: dict, words: list[str]) -> None:
    refused(save_npz(tmp_path, **arrays), *words)


def test_npz_archives_that_are_not_data_sets(tmp_path: Path) -> None:
    refused(_zip(tmp_path, {"readme.txt": b"hello"}), "missing array 'x_train'", "'readme.txt'")
    text_members = {"x_train.npy": b"not an array", "y_train.npy": b"\x93NUMPY"}
    refused(_zip(tmp_path, text_members), "not a CSV or NPZ file")
    good = save_npz(tmp_path, x_train=X4, y_train=Y4).read_bytes()
    refused(write(tmp_path, good[: len(good) // 2], "cut.npz"), "not a CSV or NPZ file")
    refused(write(tmp_path, b"PK\x03\x04" + bytes(range(200))), "not a CSV or NPZ file")
    refused(write(tmp_path, b"PK\x05\x06" + b"\x00" * 18), "missing array 'x_train'", "none")
    with pytest.raises(DatasetFileError, match="not a CSV or NPZ file"):
        read_npz(write(tmp_path, FOUR_ROWS))


# Caps


def test_caps_on_csv_files(tmp_path: Path) -> None:
    path = write(tmp_path, "1,2,3,a\n4,5,6,b\n7,8,9,c\n1,2,3,a\n4,5,6,b\n7,8,9,c\n")
    env = "(LRSEARCH_MAX_DATASET_ROWS)"
    refused(path, f"more than 5 rows, above the cap of 5 {env}", caps=Caps(max_rows=5))
    env = "(LRSEARCH_MAX_DATASET_FEATURES)"
    refused(path, f"3 features, above the cap of 2 {env}", caps=Caps(max_features=2))
    env = "(LRSEARCH_MAX_DATASET_CLASSES)"
    refused(path, f"more than 2 classes, above the cap of 2 {env}", caps=Caps(max_classes=2))
    assert len(read_dataset(path, caps=Caps(max_rows=6, max_features=3, max_classes=3)).x) == 6


def test_caps_on_npz_files(tmp_path: Path) -> None:
    x, y = np.zeros((6, 12)), np.arange(6) % 3
    path = save_npz(tmp_path, x_train=x, y_train=y, x_val=x[:2], y_val=y[:2])
    refused(path, "8 rows, above the cap of 7 (LRSEARCH_MAX_DATASET_ROWS)", caps=Caps(max_rows=7))
    message = refused(path, caps=Caps(max_features=10))
    assert message == "12 features, above the cap of 10 (LRSEARCH_MAX_DATASET_FEATURES)"
    refused(
        path,
        "3 classes, above the cap of 2 (LRSEARCH_MAX_DATASET_CLASSES)",
        caps=Caps(max_classes=2),
    )
    assert_valid(read_dataset(path, caps=Caps(max_rows=8, max_features=12, max_classes=3)))


def test_check_data_on_arrays_built_elsewhere() -> None:
    x, y = np.zeros((4, 2), np.float32), np.array([0, 1, 0, 1])
    check_data(RawData(x, y, ("a", "b")), Caps())
    bad = x.copy()
    bad[3, 1] = np.nan
    cases = [
        (RawData(bad, y, ("a", "b")), "NaN or infinity (sample 3, feature 1"),
        (RawData(x, y, ("a", "b"), x_val=x), "needs both features and labels"),
        (RawData(x, y.astype(np.int32), ("a", "b")), "int64"),
        (RawData(x, y + 1, ("a", "b")), "class indices below 2"),
        (RawData(x.astype(np.float64), y, ("a", "b")), "float32"),
        (RawData(x, y, ("a", "b"), x[:1], np.array([1])), None),
    ]
    for data, words in cases:
        if words is None:
            check_data(data, Caps())
            continue
        with pytest.raises(DatasetFileError, match=words.replace("(", r"\(")):
            check_data(data, Caps())


# Fuzzing: whatever a file holds, a data set or a one-line DatasetFileError, nothing else.


def _npz_bytes(compressed: bool) -> bytes:
    buffer = io.BytesIO()
    save = np.savez_compressed if compressed else np.savez
    save(buffer, x_train=np.arange(12.0).reshape(6, 2), y_train=np.arange(6) % 2)
    return buffer.getvalue()


GOOD_NPZ = (_npz_bytes(False), _npz_bytes(True))


@st.composite
def damaged_npz(draw: st.DrawFn) -> bytes:
    content = bytearray(draw(st.sampled_from(GOOD_NPZ)))
    for _ in range(draw(st.integers(0, 3))):
        content[draw(st.integers(0, len(content) - 1))] = draw(st.integers(0, 255))
    end = draw(st.one_of(st.just(len(content)), st.integers(4, len(content))))
    return bytes(content[:end])


@settings(FUZZ, max_examples=300)
@given(
    st.one_of(
        st.binary(max_size=300),
        st.binary(max_size=200).map(lambda tail: b"PK\x03\x04" + tail),
        damaged_npz(),
    )
)
def test_fuzz_any_bytes(tmp_path: Path, content: bytes) -> None:
    outcome(write(tmp_path, content))


NUMBERS = st.one_of(
    st.integers(-999, 999).map(str),
    st.floats(-1e3, 1e3).map(lambda value: f"{value:.4g}"),
    st.sampled_from([" 1 ", "+2", "-.5", "1e3", "0"]),
)
JUNK = st.sampled_from(
    ["", " ", "nan", "NaN", "inf", "-inf", "1e40", "abc", "é", '"', '""', "a,b", "1;2", "\t"]
    + ["x\ny", "\r", "\x00", "1_0", "0x1F", "\u2028", "'"]
)


@st.composite
def csv_files(draw: st.DrawFn) -> tuple[str, str | None]:
    clean = draw(st.booleans())  # half the files are well formed, so some are data sets
    ncols = draw(st.integers(1, 4))
    cell = NUMBERS if clean else st.one_of(NUMBERS, JUNK)
    labels = ["cat", "dog", "1", "2", "10"] + ([] if clean else ["1.0", " cat ", "", "nan"])
    rows = [[f"c{i}" for i in range(ncols - 1)] + ["label"]] if draw(st.booleans()) else []
    for _ in range(draw(st.integers(0, 12))):
        width = ncols if clean or draw(st.integers(0, 5)) else draw(st.integers(0, 6))
        rows.append([draw(cell) for _ in range(width - 1)] + [draw(st.sampled_from(labels))])
    delimiter = draw(st.sampled_from([",", ";", "\t"]))
    if draw(st.booleans()):
        out = io.StringIO()
        ending = draw(st.sampled_from(["\n", "\r\n"]))
        csv.writer(out, delimiter=delimiter, lineterminator=ending).writerows(rows)
        text = out.getvalue()
    else:
        text = "\n".join(delimiter.join(row) for row in rows)
    text += draw(st.sampled_from(["", "\n", "\n\n", " \n"]))
    return text, draw(st.sampled_from([None, None, "label", "0", "-1", "-2", "5", "nope"]))


@settings(FUZZ, max_examples=400)
@given(csv_files())
def test_fuzz_csv_like_text(tmp_path: Path, file: tuple[str, str | None]) -> None:
    text, label_column = file
    outcome(write(tmp_path, text), label_column=label_column)


X_DTYPES = ["f8", "f4", "f2", "i8", "u1", "?", "c8", "U3", "O"]
Y_DTYPES = ["i8", "i1", "u2", "?", "U3", "S2", "f8", "O"]


def _elements(dtype: np.dtype, clean: bool) -> st.SearchStrategy:
    if dtype.kind == "f" and clean:
        return hnp.from_dtype(dtype, min_value=-100, max_value=100, allow_nan=False)
    if dtype.kind in "iu":
        return hnp.from_dtype(dtype, min_value=0, max_value=3)
    if dtype.kind == "U":
        return st.sampled_from(["a", "b", " b", "1", "1.0", "", "c"])
    if dtype.kind == "S":
        return st.sampled_from([b"a", b"b", b"\xff", b"1"])
    if dtype.kind == "O":
        return st.integers(0, 3)
    return hnp.from_dtype(dtype)


@st.composite
def npz_contents(draw: st.DrawFn) -> dict[str, np.ndarray]:
    clean = draw(st.booleans())  # half the archives are well formed, so some are data sets
    sizes = {"train": draw(st.integers(0, 9)), "val": draw(st.integers(0, 4)), "extra": 2}
    width = draw(st.integers(0 if not clean else 1, 3))
    if clean:
        keys = ["x_train", "y_train"] + (["x_val", "y_val"] if draw(st.booleans()) else [])
    else:
        keys = [k for k in ("x_train", "y_train", "x_val", "y_val", "extra") if draw(st.booleans())]
    x_shapes = [(width,), (2, 2)] + ([] if clean else [(), (width, 0)])
    tail = draw(st.sampled_from(x_shapes))  # the parts of a clean archive agree on features
    arrays = {}
    for key in keys:
        n = sizes[key.split("_")[-1]] + (0 if clean else draw(st.sampled_from([0, 0, 0, 1, -1])))
        if key[0] == "y":
            dtype = np.dtype(draw(st.sampled_from(Y_DTYPES[:5] if clean else Y_DTYPES)))
            shape = draw(st.sampled_from([(max(n, 0),)] + ([] if clean else [(), (max(n, 0), 1)])))
        else:
            dtype = np.dtype(draw(st.sampled_from(X_DTYPES[:6] if clean else X_DTYPES)))
            shape = (max(n, 0), *(tail if clean else draw(st.sampled_from(x_shapes))))
        arrays[key] = draw(hnp.arrays(dtype, shape, elements=_elements(dtype, clean)))
    return arrays


@settings(FUZZ, max_examples=300)
@given(npz_contents())
def test_fuzz_npz_arrays(tmp_path: Path, arrays: dict[str, np.ndarray]) -> None:
    outcome(save_npz(tmp_path, **arrays))

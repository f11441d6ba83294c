"""Data sets by spec: parsing, digits, synthetic, MNIST files, and the per-process cache."""

from __future__ import annotations

import gzip
import importlib.util
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from lrsearch.training import (
    DATASETS,
    DatasetError,
    DatasetNotFound,
    Hyperparameters,
    clear_dataset_cache,
    dataset_shape,
    load_dataset,
    parse_dataset,
    train,
)
from lrsearch.training.datasets import make_synthetic
from lrsearch.training.mnist import IDX_FILES


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts and ends with an empty cache, on one BLAS thread as workers do.

    "." is a fresh folder, so synthetic data sets' disk cache starts empty too.
    """
    monkeypatch.chdir(tmp_path)
    clear_dataset_cache()
    with threadpool_limits(1):
        yield
    clear_dataset_cache()


def test_known_names() -> None:
    assert DATASETS == ("digits", "mnist", "synthetic")
    for name in DATASETS:
        assert parse_dataset(name)[0] == name


def test_digits_shape_range_and_types() -> None:
    data = load_dataset("digits", "unused")
    assert data.name == "digits" and data.n_classes == 10 and data.n_features == 64
    assert data.x_train.shape == (1438, 64) and data.x_val.shape == (359, 64)
    for x in (data.x_train, data.x_val):
        assert x.dtype == np.float32 and x.flags.c_contiguous
        assert x.min() == 0.0 and x.max() == 1.0
    for y in (data.y_train, data.y_val):
        assert y.dtype == np.int64 and set(np.unique(y)) == set(range(10))
    assert dataset_shape("digits") == (64, 10)


def test_digits_split_is_stratified() -> None:
    data = load_dataset("digits", ".")
    train_counts = np.bincount(data.y_train, minlength=10)
    val_counts = np.bincount(data.y_val, minlength=10)
    totals = train_counts + val_counts
    assert totals.sum() == 1797
    np.testing.assert_array_equal(val_counts, np.round(0.2 * totals).astype(int))


def test_digits_split_depends_on_seed_only() -> None:
    first = load_dataset("digits", ".", seed=3)
    clear_dataset_cache()
    again = load_dataset("digits", ".", seed=3)
    other = load_dataset("digits", ".", seed=4)
    assert first is not again
    np.testing.assert_array_equal(first.x_val, again.x_val)
    np.testing.assert_array_equal(first.y_train, again.y_train)
    assert not np.array_equal(first.x_val, other.x_val)
    rows = {row.tobytes() for row in np.concatenate([first.x_train, first.x_val])}
    assert rows == {row.tobytes() for row in np.concatenate([other.x_train, other.x_val])}


def test_digits_without_scikit_learn(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "sklearn" else real_find_spec(name, *args),
    )
    with pytest.raises(DatasetNotFound, match="install scikit-learn"):
        load_dataset("digits", ".")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("synthetic", {"n_train": 6000, "n_features": 64, "n_classes": 10}),
        ("synthetic:60000x784x10", {"n_train": 60000, "n_features": 784, "n_classes": 10}),
        (" Synthetic:10X3X2 ", {"n_train": 10, "n_features": 3, "n_classes": 2}),
        (
            "synthetic:2000000x100x1000",
            {"n_train": 2_000_000, "n_features": 100, "n_classes": 1000},
        ),
    ],
)
def test_synthetic_specs(spec: str, expected: dict[str, int]) -> None:
    assert parse_dataset(spec) == ("synthetic", expected)
    assert dataset_shape(spec) == (expected["n_features"], expected["n_classes"])


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "cifar10",
        "synthetic:",
        "synthetic:10x10",
        "synthetic:axbxc",
        "synthetic:10x10x10x10",
        "synthetic:-5x10x10",
        "synthetic:0x10x10",
        "synthetic:10x0x10",
        "synthetic:10x10x1",
        "synthetic:10x10x1001",
        "synthetic:2000001x10x10",
        "synthetic:10x100001x10",
        "synthetic:1000000x1000x10",  # 4 GB of float32
        "digits:5",
    ],
)
def test_bad_specs_are_rejected(spec: str) -> None:
    with pytest.raises(DatasetError) as info:
        parse_dataset(spec)
    assert "\n" not in str(info.value)
    with pytest.raises(DatasetError):
        dataset_shape(spec)


def test_mnist_shape_needs_no_files(tmp_path: Path) -> None:
    assert dataset_shape("mnist") == (784, 10)


def test_synthetic_data() -> None:
    data = load_dataset("synthetic:600x20x5", ".", seed=1)
    assert data.x_train.shape == (600, 20) and data.x_val.shape == (100, 20)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int64
    assert data.x_train.flags.c_contiguous and data.x_val.flags.c_contiguous
    assert np.abs(data.x_train).max() <= 1.0
    assert set(np.unique(data.y_train)) == set(range(5))
    small = load_dataset("synthetic:30x4x6", ".")
    assert len(small.y_val) == 60  # at least 10 per class
    default = load_dataset("synthetic", ".")
    assert default.x_train.shape == (6000, 64) and default.n_classes == 10


def test_synthetic_is_deterministic_by_seed() -> None:
    first = make_synthetic(300, 10, 3, seed=5)
    again = make_synthetic(300, 10, 3, seed=5)
    other = make_synthetic(300, 10, 3, seed=6)
    np.testing.assert_array_equal(first.x_train, again.x_train)
    np.testing.assert_array_equal(first.y_val, again.y_val)
    assert not np.array_equal(first.x_train, other.x_train)


def test_synthetic_does_not_depend_on_blas_threads() -> None:
    with threadpool_limits(2):
        many = make_synthetic(500, 40, 4, seed=2)
    one = make_synthetic(500, 40, 4, seed=2)  # the fixture's single thread
    np.testing.assert_array_equal(one.x_train, many.x_train)


def test_synthetic_data_is_generated_once_then_mapped_from_disk(tmp_path: Path) -> None:
    first = load_dataset("synthetic:400x12x3", tmp_path, seed=7)
    names = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert names == ["synthetic-400x12x3-seed7-v1", "synthetic-400x12x3-seed7-v1.lock"]
    clear_dataset_cache()  # as a new worker process would start
    mapped = load_dataset("synthetic:400x12x3", tmp_path, seed=7)
    assert isinstance(mapped.x_train, np.memmap) and not mapped.x_train.flags.writeable
    for name in ("x_train", "y_train", "x_val", "y_val"):
        np.testing.assert_array_equal(getattr(mapped, name), getattr(first, name))
    assert mapped.n_classes == 3 and mapped.name == first.name
    result = train(
        mapped, Hyperparameters([12, 8, 3], epochs=2), 1e-2
    )  # the trainer takes mapped arrays
    assert result.status == "completed"


def test_an_unwritable_cache_folder_still_gives_the_data(tmp_path: Path) -> None:
    (tmp_path / "cache").write_text("a file where the cache folder should be")
    data = load_dataset("synthetic:100x5x2", tmp_path, seed=1)
    np.testing.assert_array_equal(data.x_train, make_synthetic(100, 5, 2, seed=1).x_train)
    assert not isinstance(data.x_train, np.memmap)


def test_synthetic_is_learnable_but_not_trivial() -> None:
    data = load_dataset("synthetic:3000x20x5", ".")
    result = train(data, Hyperparameters([20, 32, 5], epochs=10), 1e-3)
    assert 0.6 <= result.history[-1].acc_val < 0.995  # chance is 0.2


def _idx_bytes(array: np.ndarray, magic: int) -> bytes:
    dims = b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return magic.to_bytes(4, "big") + dims + array.astype(np.uint8).tobytes()


def _write_mnist(folder: Path, compress: bool, n_train: int = 30, n_test: int = 10) -> dict:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        raw = _idx_bytes(array, 0x803 if array.ndim == 3 else 0x801)
        if compress:
            (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / name).write_bytes(raw)
    return arrays


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_from_idx_files(tmp_path: Path, compress: bool) -> None:
    arrays = _write_mnist(tmp_path / "mnist", compress)
    data = load_dataset("mnist", tmp_path)
    assert data.name == "mnist" and data.n_classes == 10 and data.n_features == 784
    assert data.x_train.shape == (30, 784) and data.x_val.shape == (10, 784)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int64
    expected = arrays["train-images-idx3-ubyte"].reshape(30, 784).astype(np.float32) / 255
    np.testing.assert_array_equal(data.x_train, expected)
    np.testing.assert_array_equal(data.y_val, arrays["t10k-labels-idx1-ubyte"])


def test_mnist_from_npz(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x_train = rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)
    y_train = rng.integers(0, 10, 20, dtype=np.uint8)
    x_test = rng.integers(0, 256, (12, 28, 28), dtype=np.uint8)
    y_test = rng.integers(0, 10, 12, dtype=np.uint8)
    (tmp_path / "mnist").mkdir()
    np.savez(
        tmp_path / "mnist" / "mnist.npz",
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
    )
    data = load_dataset("mnist", str(tmp_path))
    assert data.x_train.shape == (20, 784) and data.x_val.shape == (12, 784)
    np.testing.assert_array_equal(data.x_val, x_test.reshape(12, 784) / np.float32(255))
    np.testing.assert_array_equal(data.y_train, y_train)


def test_missing_mnist_says_where_to_put_what(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFound) as info:
        load_dataset("mnist", tmp_path)
    message = str(info.value)
    assert str((tmp_path / "mnist").resolve()) in message
    for name in (*IDX_FILES, "mnist.npz"):
        assert name in message


def test_truncated_idx_file(tmp_path: Path) -> None:
    _write_mnist(tmp_path / "mnist", compress=False)
    path = tmp_path / "mnist" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte is truncated") as info:
        load_dataset("mnist", tmp_path)
    assert not isinstance(info.value, DatasetNotFound)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("train-labels-idx1-ubyte", b"\x00\x00\x08\x03" + bytes(8), "magic"),
        ("t10k-labels-idx1-ubyte", b"\x00\x00", "too short"),
        ("t10k-images-idx3-ubyte.gz", b"not gzip at all", "cannot read"),
    ],
)
def test_corrupt_idx_files(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    folder = tmp_path / "mnist"
    _write_mnist(folder, compress=name.endswith(".gz"))
    (folder / name).write_bytes(content)
    with pytest.raises(DatasetError, match=reason) as info:
        load_dataset("mnist", tmp_path)
    assert name in str(info.value)


def test_corrupt_npz(tmp_path: Path) -> None:
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "mnist.npz").write_bytes(b"PK not a zip")
    with pytest.raises(DatasetError, match="mnist.npz"):
        load_dataset("mnist", tmp_path)


def test_cache_returns_the_same_object(tmp_path: Path) -> None:
    _write_mnist(tmp_path / "mnist", compress=True)
    mnist = load_dataset("mnist", tmp_path)
    assert load_dataset("mnist", tmp_path / "." / "mnist" / "..", seed=3) is mnist
    digits = load_dataset("digits", tmp_path)
    assert load_dataset("digits", "elsewhere") is digits
    assert load_dataset("digits", tmp_path, seed=1) is not digits
    assert load_dataset("synthetic:100x5x2", ".") is load_dataset("synthetic:100X5X2", ".")
    clear_dataset_cache()
    assert load_dataset("digits", tmp_path) is not digits


def test_cached_arrays_are_read_only() -> None:
    data = load_dataset("digits", ".")
    with pytest.raises(ValueError):
        data.x_train[0, 0] = 1.0

"""The data sets a search can train on, by spec: "digits", "mnist", "synthetic[:NxDxK]"."""

from __future__ import annotations

import fcntl
import functools
import gzip
import importlib.util
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DATASETS: tuple[str, ...] = ("digits", "mnist", "synthetic")
SYNTHETIC_DEFAULT = {"n_train": 6000, "n_features": 64, "n_classes": 10}
MAX_SYNTHETIC_SAMPLES = 2_000_000
MAX_SYNTHETIC_FEATURES = 100_000
MAX_SYNTHETIC_CLASSES = 1000
MAX_SYNTHETIC_VALUES = 200_000_000  # training samples x features: 800 MB of float32

_SYNTHETIC_RE = re.compile(r"synthetic:(\d+)x(\d+)x(\d+)")
_SHAPES = {"digits": (64, 10), "mnist": (784, 10)}


class DatasetError(ValueError):
    """Unknown dataset spec or an unreadable/corrupt dataset file."""


class DatasetNotFound(DatasetError):
    """Dataset files are missing; the message says exactly where to put which files."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """Training and validation arrays of one data set; arrays are read-only."""

    name: str
    x_train: np.ndarray = field(repr=False)  # float32, C-contiguous, (n, d)
    y_train: np.ndarray = field(repr=False)  # int64, (n,)
    x_val: np.ndarray = field(repr=False)
    y_val: np.ndarray = field(repr=False)
    n_classes: int

    @property
    def n_features(self) -> int:
        """Number of input features (the first layer's size)."""
        return int(self.x_train.shape[1])


def parse_dataset(spec: str) -> tuple[str, dict[str, int]]:
    """Validate a spec; return its name and parameters, or raise DatasetError with the reason."""
    if not isinstance(spec, str):
        raise DatasetError(f"a dataset spec is a string, got {type(spec).__name__}")
    text = spec.strip().lower()
    if text in ("digits", "mnist"):
        return text, {}
    if text == "synthetic":
        return text, dict(SYNTHETIC_DEFAULT)
    match = _SYNTHETIC_RE.fullmatch(text)
    if match is None:
        raise DatasetError(
            f"unknown dataset {spec!r}: use digits, mnist, synthetic or synthetic:NxDxK "
            "(e.g. synthetic:60000x784x10)"
        )
    n, d, k = (int(group) for group in match.groups())
    if not 1 <= n <= MAX_SYNTHETIC_SAMPLES:
        raise DatasetError(f"synthetic samples N must be 1 to {MAX_SYNTHETIC_SAMPLES:,}, got {n}")
    if not 1 <= d <= MAX_SYNTHETIC_FEATURES:
        raise DatasetError(f"synthetic features D must be 1 to {MAX_SYNTHETIC_FEATURES:,}, got {d}")
    if not 2 <= k <= MAX_SYNTHETIC_CLASSES:
        raise DatasetError(f"synthetic classes K must be 2 to {MAX_SYNTHETIC_CLASSES}, got {k}")
    if n * d > MAX_SYNTHETIC_VALUES:
        raise DatasetError(
            f"synthetic data of {n}x{d} is too large: N x D may be at most {MAX_SYNTHETIC_VALUES:,}"
        )
    return "synthetic", {"n_train": n, "n_features": d, "n_classes": k}


def dataset_shape(spec: str) -> tuple[int, int]:
    """(n_features, n_classes) of a spec, without loading any data."""
    name, params = parse_dataset(spec)
    if name == "synthetic":
        return params["n_features"], params["n_classes"]
    return _SHAPES[name]


def load_dataset(spec: str, data_dir: str | os.PathLike, seed: int = 0) -> Dataset:
    """Load (or generate) a data set; cached per process on (spec, folder, seed)."""
    name, params = parse_dataset(spec)
    if name == "mnist":  # the only one read from data_dir; its split does not use the seed
        return _load_cached("mnist", str(Path(data_dir).expanduser().resolve()), 0)
    if name == "synthetic":  # generated once per data folder, then mapped by every process
        canonical = "synthetic:{n_train}x{n_features}x{n_classes}".format(**params)
        return _load_cached(canonical, str(Path(data_dir).expanduser().resolve()), int(seed))
    return _load_cached(name, None, int(seed))


def clear_dataset_cache() -> None:
    """Forget every loaded data set of this process."""
    _load_cached.cache_clear()
    digits_table.cache_clear()


@functools.lru_cache(maxsize=4)
def _load_cached(canonical: str, data_dir: str | None, seed: int) -> Dataset:
    name, params = parse_dataset(canonical)
    if name == "digits":
        data = load_digits(seed)
    elif name == "mnist":
        from lrsearch.training.mnist import load_mnist

        data = load_mnist(Path(data_dir or ".") / "mnist")
    else:
        data = synthetic_from_cache(params, seed, Path(data_dir) if data_dir else None)
    for array in (data.x_train, data.y_train, data.x_val, data.y_val):
        array.flags.writeable = False  # shared by every trial of this process
    return data


SYNTHETIC_CACHE_VERSION = 1  # bump whenever make_synthetic's output changes
_ARRAYS = ("x_train", "y_train", "x_val", "y_val")


def synthetic_from_cache(params: dict[str, int], seed: int, data_dir: Path | None) -> Dataset:
    """A synthetic data set, generated once into `data_dir/cache` and memory-mapped after.

    Every worker process then maps the same pages instead of generating the data and
    holding its own copy; while one process generates, the others wait for it. Without a
    writable folder, each process generates its own.
    """
    if data_dir is None:
        return make_synthetic(**params, seed=seed)
    shape = "{n_train}x{n_features}x{n_classes}".format(**params)
    folder = data_dir / "cache" / f"synthetic-{shape}-seed{seed}-v{SYNTHETIC_CACHE_VERSION}"
    return mapped_once(folder, lambda: make_synthetic(**params, seed=seed))


def mapped_once(folder: Path, make: Callable[[], Dataset]) -> Dataset:
    """The data set `make` gives, saved once into `folder` and memory-mapped from there.

    Every process that asks maps the same pages instead of making the data and holding its
    own copy; while one process makes it, the others wait for it (a file lock). Where the
    folder cannot be written, the process keeps what it made.
    """
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        lock = open(folder.with_name(folder.name + ".lock"), "a")
    except OSError:
        return make()
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if folder.is_dir():
            try:
                return _mapped(folder)
            except (OSError, ValueError, KeyError):
                shutil.rmtree(folder, ignore_errors=True)  # damaged: make it again
        data = make()
        partial = folder.with_name(folder.name + ".partial")
        try:
            partial.mkdir(exist_ok=True)
            for name in _ARRAYS:
                np.save(partial / f"{name}.npy", getattr(data, name))
            meta = {"name": data.name, "n_classes": data.n_classes}
            (partial / "meta.json").write_text(json.dumps(meta))
            os.rename(partial, folder)  # readers see every array or none
            return _mapped(folder)  # the maker too maps the one copy, and drops its own
        except OSError:  # e.g. the disk is full: this process keeps its own copy
            shutil.rmtree(partial, ignore_errors=True)
        return data


def _mapped(folder: Path) -> Dataset:
    arrays = [np.load(folder / f"{a}.npy", mmap_mode="r") for a in _ARRAYS]
    meta = json.loads((folder / "meta.json").read_text())
    return Dataset(meta["name"], *arrays, meta["n_classes"])


def load_digits(seed: int = 0) -> Dataset:
    """scikit-learn's bundled 8x8 digits, split 80/20 per class, read without importing sklearn."""
    x, y = digits_table()
    train, val = stratified_split(y, 0.2, seed)
    return Dataset("digits", x[train], y[train], x[val], y[val], 10)


@functools.cache
def digits_table() -> tuple[np.ndarray, np.ndarray]:
    """The digits' pixels (scaled to [0, 1]) and labels, read once per process.

    Parsing the file takes longer than a digits trial trains; the fork server reads it for
    every worker.
    """
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetNotFound(
            "the digits data set is read from scikit-learn's bundled copy: "
            "install scikit-learn (pip install scikit-learn)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets/data/digits.csv.gz"
    if not path.is_file():
        raise DatasetNotFound(f"scikit-learn has no digits file at {path}: reinstall scikit-learn")
    try:
        with gzip.open(path, "rt") as handle:
            table = np.loadtxt(handle, delimiter=",", dtype=np.float32)
    except (OSError, EOFError, ValueError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    if table.ndim != 2 or table.shape[1] != 65:
        raise DatasetError(f"{path}: expected 65 columns (64 pixels and a label)")
    x = np.ascontiguousarray(table[:, :64] / np.float32(16.0))
    y = table[:, 64].astype(np.int64)
    x.flags.writeable = y.flags.writeable = False
    return x, y


def stratified_split(
    y: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation indices holding `val_fraction` of each class, by seed."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        n_val = int(round(val_fraction * len(members)))
        val.append(members[:n_val])
        train.append(members[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def make_synthetic(n_train: int, n_features: int, n_classes: int, seed: int = 0) -> Dataset:
    """Learnable, noisy classes: Gaussian clusters in a small latent space, mapped nonlinearly.

    Each class is a Gaussian cluster in a latent space of at most 16 dimensions; clusters
    overlap, so accuracy stays well below 100 %. A fixed random map tanh(z A + c) takes the
    latent points to `n_features` values in (-1, 1). Validation holds n_train // 6 samples,
    at least 10 per class.
    """
    rng = np.random.default_rng(seed)
    n_val = max(n_train // 6, 10 * n_classes)
    n, latent = n_train + n_val, min(16, n_features)
    centers = rng.standard_normal((n_classes, latent), dtype=np.float32)
    y = rng.integers(0, n_classes, size=n, dtype=np.int64)
    z = rng.standard_normal((n, latent), dtype=np.float32)  # noise as wide as the centres' spread
    z += centers[y]
    projection = rng.standard_normal((latent, n_features), dtype=np.float32)
    projection *= np.float32(1.5 / np.sqrt(latent))
    offset = rng.standard_normal(n_features, dtype=np.float32) * np.float32(0.5)
    # einsum without optimize never calls BLAS, whose rounding depends on its thread count:
    # a worker on one thread must see the very same data as a process on many.
    x = np.einsum("nq,qd->nd", z, projection, optimize=False)
    x += offset
    np.tanh(x, out=x)
    return Dataset(
        f"synthetic:{n_train}x{n_features}x{n_classes}",
        x[:n_train],
        y[:n_train],
        x[n_train:],
        y[n_train:],
        n_classes,
    )

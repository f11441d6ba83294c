"""What a stored data set is on disk, and the copy every worker maps.

A data set, once fetched or imported, is its arrays in `datasets/arrays/<name>/`: features
as written (float32) and class indices, with the validation part where the source gave
one, and meta.json. A search trains on them split (80/20 per class by the search's seed,
unless a validation part was given) and standardised with the training part's mean and
standard deviation: that copy is made once per data set and seed in `datasets/cache/` and
memory-mapped by every worker (training.datasets.mapped_once), never one copy per worker.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from lrsearch.training import Dataset, DatasetError, load_dataset, parse_dataset
from lrsearch.training.datasets import mapped_once, stratified_split

BUILT_IN = ("digits", "synthetic")  # made by the trainer's package; every other name is stored
VAL_FRACTION = 0.2
_PARTS = ("x", "y", "x_val", "y_val")


def is_built_in(name: str) -> bool:
    """Whether `name` is digits or synthetic[:NxDxK], which need no stored arrays."""
    try:
        return parse_dataset(name)[0] in BUILT_IN
    except DatasetError:
        return False


def datasets_root(data_dir: str | os.PathLike) -> Path:
    """Where fetched files, uploads, stored arrays and the workers' cache live."""
    return Path(data_dir) / "datasets"


def arrays_folder(data_dir: str | os.PathLike, name: str) -> Path:
    """The folder of a stored data set's arrays."""
    return datasets_root(data_dir) / "arrays" / name


def store_arrays(
    data_dir: str | os.PathLike,
    name: str,
    parts: dict[str, np.ndarray | None],
    meta: dict[str, object],
) -> tuple[str, int]:
    """Write a data set's arrays (x, y and optionally x_val, y_val) and meta.json, all or
    nothing; return their sha256 and size in bytes. An older folder of that name is replaced.
    """
    folder = arrays_folder(data_dir, name)
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=folder.parent))
    try:
        digest, size = hashlib.sha256(), 0
        for part in _PARTS:
            if parts.get(part) is None:
                continue
            path = partial / f"{part}.npy"
            np.save(path, parts[part])
            digest.update(path.read_bytes())
            size += path.stat().st_size
        sha256 = digest.hexdigest()
        (partial / "meta.json").write_text(json.dumps({**meta, "name": name, "sha256": sha256}))
        shutil.rmtree(folder, ignore_errors=True)
        os.rename(partial, folder)  # readers see a whole data set or none
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return sha256, size


def array_files(data_dir: str | os.PathLike, name: str) -> dict[str, bytes]:
    """A stored data set's files (its arrays and meta.json), to send to a machine that
    shares no disk with this one (see install_arrays)."""
    folder = arrays_folder(data_dir, name)
    parts = [f"{part}.npy" for part in _PARTS if (folder / f"{part}.npy").is_file()]
    return {file: (folder / file).read_bytes() for file in [*parts, "meta.json"]}


def install_arrays(
    data_dir: str | os.PathLike, name: str, files: dict[str, bytes], sha256: str
) -> None:
    """Put a data set's files (from array_files) in place here, all or nothing, after
    checking them against `sha256` (as store_arrays computes it); DatasetError if they
    differ. Several processes may install the same copy at once."""
    digest = hashlib.sha256()
    for part in _PARTS:
        if f"{part}.npy" in files:
            digest.update(files[f"{part}.npy"])
    if digest.hexdigest() != sha256:
        raise DatasetError(f"data set {name!r} arrived damaged (sha256 {digest.hexdigest()})")
    if stored_sha256(data_dir, name) == sha256:
        return
    folder = arrays_folder(data_dir, name)
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=folder.parent))
    try:
        for file, content in files.items():
            (partial / Path(file).name).write_bytes(content)
        old = folder.with_name(f".{name}.old.{os.getpid()}")
        if folder.exists():
            os.rename(folder, old)  # another's copy, or an older one: replaced whole
        os.rename(partial, folder)
        shutil.rmtree(old, ignore_errors=True)
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
        if stored_sha256(data_dir, name) != sha256:  # not another process's copy, in place
            raise


def stored_sha256(data_dir: str | os.PathLike, name: str) -> str | None:
    """The sha256 of the stored copy of a data set here, if there is one."""
    try:
        meta = json.loads((arrays_folder(data_dir, name) / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    return meta.get("sha256")


def remove_arrays(data_dir: str | os.PathLike, name: str) -> None:
    """Remove a stored data set's arrays (a half-written copy too) and its workers' cache."""
    folder = arrays_folder(data_dir, name)
    for path in [folder, *folder.parent.glob(f".{name}.*")]:  # store_arrays' partial copies
        shutil.rmtree(path, ignore_errors=True)
    mine = re.compile(rf"stored-{re.escape(name)}-[0-9a-f]{{16}}-(given|seed\d+)(\.lock)?")
    for stale in (datasets_root(data_dir) / "cache").glob(f"stored-{name}-*"):
        if mine.fullmatch(stale.name):  # not another data set's whose name starts like it
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink()


def remove_upload(data_dir: str | os.PathLike, options: dict) -> None:
    """Remove the upload a data set was imported from, never a file of the user's own (one
    named on the command line stays where it is)."""
    if not options.get("file") or options.get("keep_file"):
        return
    uploads = (datasets_root(data_dir) / "uploads").resolve()
    path = (Path(data_dir) / options["file"]).resolve()
    if path.parent == uploads:
        path.unlink(missing_ok=True)


def load(name: str, data_dir: str | os.PathLike, seed: int = 0) -> Dataset:
    """The data set a trial trains on: built in, or stored (split and standardised by seed)."""
    if is_built_in(name):
        return load_dataset(name, datasets_root(data_dir), seed=seed)
    folder = arrays_folder(data_dir, name)
    try:  # the data set's content is part of the key: a name removed and added again
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"data set {name!r} is not stored in {folder}: {exc}") from exc
    return _load_stored(name, str(Path(data_dir).resolve()), int(seed), meta["sha256"])


def input_transform(name: str, data_dir: str | os.PathLike, seed: int = 0) -> tuple:
    """(mean, scale) that a trial's inputs went through, x_seen = (x - mean) / scale, per
    feature: digits' pixels / 16, synthetic as generated, a stored data set standardised by
    its training part (split by `seed` unless a validation part was given)."""
    if is_built_in(name):
        features = load_dataset(name, datasets_root(data_dir), seed=seed).n_features
        scale = 16.0 if parse_dataset(name)[0] == "digits" else 1.0
        return np.zeros(features, np.float32), np.full(features, scale, np.float32)
    folder = arrays_folder(data_dir, name)
    x = np.load(folder / "x.npy", mmap_mode="r")
    if (folder / "x_val.npy").is_file():
        return standardisation(x)
    train, _ = stratified_split(np.load(folder / "y.npy"), VAL_FRACTION, seed)
    return standardisation(x[train])


def clear_cache() -> None:
    """Forget the stored data sets this process has mapped."""
    _load_stored.cache_clear()


@functools.lru_cache(maxsize=4)
def _load_stored(name: str, data_dir: str, seed: int, sha256: str) -> Dataset:
    folder = arrays_folder(data_dir, name)
    meta = json.loads((folder / "meta.json").read_text())
    if meta["sha256"] != sha256:
        raise DatasetError(f"data set {name!r} changed while it was read: try again")
    given = (folder / "x_val.npy").is_file()
    key = "given" if given else f"seed{seed}"
    cache = datasets_root(data_dir) / "cache" / f"stored-{name}-{meta['sha256'][:16]}-{key}"
    data = mapped_once(cache, lambda: _split_and_standardise(folder, meta, seed))
    for array in (data.x_train, data.y_train, data.x_val, data.y_val):
        array.flags.writeable = False  # shared by every trial of this process
    return data


def _split_and_standardise(folder: Path, meta: dict, seed: int) -> Dataset:
    arrays = {}
    for part in _PARTS:
        path = folder / f"{part}.npy"
        if not path.is_file():
            continue
        try:
            arrays[part] = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise DatasetError(f"cannot read {path} of data set {meta['name']!r}: {exc}") from exc
    if "x_val" in arrays:
        x_train, y_train = arrays["x"], arrays["y"]
        x_val, y_val = arrays["x_val"], arrays["y_val"]
    else:
        train, val = stratified_split(np.asarray(arrays["y"]), VAL_FRACTION, seed)
        x_train, y_train = arrays["x"][train], arrays["y"][train]
        x_val, y_val = arrays["x"][val], arrays["y"][val]
    mean, scale = standardisation(x_train)
    return Dataset(
        meta["name"],
        _standardised(x_train, mean, scale),
        np.ascontiguousarray(y_train, dtype=np.int64),
        _standardised(x_val, mean, scale),
        np.ascontiguousarray(y_val, dtype=np.int64),
        int(meta["classes"]),
    )


def standardisation(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The training part's per-feature mean and standard deviation (1 where constant, so
    that a constant feature becomes 0)."""
    mean = x.mean(axis=0, dtype=np.float64)
    std = x.std(axis=0, dtype=np.float64)
    std[std == 0] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def _standardised(x: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    out = np.array(x, dtype=np.float32, order="C")
    out -= mean
    out /= scale
    return out


def samples_per_class(
    name: str, data_dir: str | os.PathLike, per_class: int
) -> list[tuple[str, np.ndarray]]:
    """The first `per_class` samples of each class, as (label, features) pairs, features
    scaled to 0..255 (uint8) over the samples shown: for a grid of images."""
    if name == "digits":
        from lrsearch.training.datasets import digits_table

        x, y = digits_table()
        labels = [str(k) for k in range(10)]
    else:
        folder = arrays_folder(data_dir, name)
        try:
            meta = json.loads((folder / "meta.json").read_text())
            x = np.load(folder / "x.npy", mmap_mode="r")
            y = np.load(folder / "y.npy", mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise DatasetError(f"data set {name!r} is not stored in {folder}: {exc}") from exc
        labels = [str(label) for label in meta["labels"]]
    chosen = []
    for index, label in enumerate(labels):
        rows = np.flatnonzero(np.asarray(y[:200_000]) == index)[:per_class]
        chosen.append((label, np.asarray(x[rows], dtype=np.float32)))
    values = np.concatenate([features for _, features in chosen]) if chosen else np.zeros(1)
    low, high = float(values.min()), float(values.max())
    scale = 255.0 / (high - low) if high > low else 0.0
    return [(label, ((f - low) * scale).round().astype(np.uint8)) for label, f in chosen]

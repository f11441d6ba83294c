"""MNIST from a folder: the four IDX files (plain or .gz) or a Keras-style mnist.npz."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import numpy as np

from lrsearch.training.datasets import Dataset, DatasetError, DatasetNotFound

IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
NPZ_FILE = "mnist.npz"
_IMAGES_MAGIC, _LABELS_MAGIC = 0x803, 0x801  # unsigned bytes, 3 and 1 dimensions


def load_mnist(folder: Path) -> Dataset:
    """MNIST with the t10k/test part as validation; pixels scaled to [0, 1] as float32."""
    folder = Path(folder).expanduser().resolve()
    found = [_find_idx(folder, name) for name in IDX_FILES]
    if all(found):
        x_train, y_train = _read_pair(found[0], found[1])
        x_val, y_val = _read_pair(found[2], found[3])
    elif (folder / NPZ_FILE).is_file():
        x_train, y_train, x_val, y_val = _read_npz(folder / NPZ_FILE)
    else:
        missing = [name for name, path in zip(IDX_FILES, found, strict=True) if path is None]
        raise DatasetNotFound(
            f"MNIST not found in {folder}: put the files {', '.join(IDX_FILES)} there "
            f"(each plain or ending in .gz; missing: {', '.join(missing)}), "
            f"or a single {NPZ_FILE} with arrays x_train, y_train, x_test, y_test"
        )
    return Dataset("mnist", x_train, y_train, x_val, y_val, 10)


def read_idx(path: Path, magic: int) -> np.ndarray:
    """The array stored in one IDX file (plain or gzip), checking its header and length."""
    try:
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    found = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if found != magic:
        got = "a file too short for a header" if found is None else f"magic number {found:#x}"
        raise DatasetError(f"{path} is not an IDX file of kind {magic:#x}: found {got}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path} is truncated: its header needs {header} bytes")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected:
        state = "truncated" if len(raw) < expected else "longer than its header says"
        raise DatasetError(
            f"{path} is {state}: dimensions {dims} need {expected} bytes, found {len(raw)}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find_idx(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(images_path, _IMAGES_MAGIC)
    labels = read_idx(labels_path, _LABELS_MAGIC)
    return _checked(images, labels, f"{images_path.name} and {labels_path.name}")


def _read_npz(path: Path) -> tuple[np.ndarray, ...]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in ("x_train", "y_train", "x_test", "y_test")}
    except KeyError as exc:
        raise DatasetError(
            f"{path} lacks the array {exc}: expected x_train, y_train, x_test, y_test"
        ) from exc
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    x_train, y_train = _checked(arrays["x_train"], arrays["y_train"], f"{path.name} train part")
    x_val, y_val = _checked(arrays["x_test"], arrays["y_test"], f"{path.name} test part")
    return x_train, y_train, x_val, y_val


def _checked(images: np.ndarray, labels: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Flatten 28x28 images to float32 in [0, 1] and check labels lie in 0..9."""
    if images.ndim not in (2, 3) or images.shape[1:] not in ((28, 28), (784,)):
        raise DatasetError(f"{what}: expected 28x28 images, got shape {images.shape}")
    if labels.shape != (len(images),):
        raise DatasetError(f"{what}: {len(images)} images but labels of shape {labels.shape}")
    if len(labels) == 0:
        raise DatasetError(f"{what}: no images")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() > 9:
        raise DatasetError(f"{what}: labels must be integers 0 to 9")
    x = np.ascontiguousarray(images.reshape(len(images), 784), dtype=np.float32)
    if np.issubdtype(images.dtype, np.integer) or x.max() > 1.0:
        x /= np.float32(255.0)
    return x, labels.astype(np.int64)

"""Fetch MNIST and Fashion-MNIST from a list of mirrors, checking each file's md5."""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import secrets
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lrsearch.training import DatasetError
from lrsearch.training.mnist import read_idx

Progress = Callable[[str, int, int | None], None]

_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
_CHUNK = 64 * 1024
# The largest real file (Fashion-MNIST's training images) is 26 MB; a mirror sending far more
# is broken or hostile, and must not be allowed to fill the disk.
_MAX_BYTES = 128 * 1024 * 1024
_SCHEMES = ("http", "https")
_IMAGES_MAGIC, _LABELS_MAGIC = 0x803, 0x801


def _by_file(*md5s: str) -> dict[str, str]:
    return dict(zip(_FILES, md5s, strict=True))


@dataclass(frozen=True)
class Source:
    """A data set published as four gzipped IDX files, with their md5s and default mirrors."""

    name: str
    files: tuple[str, ...]  # train images, train labels, t10k images, t10k labels
    md5: dict[str, str] = field(hash=False)  # a dict cannot be hashed; name and files suffice
    mirrors: tuple[str, ...]
    classes: tuple[str, ...]


SOURCES: dict[str, Source] = {
    "mnist": Source(
        name="mnist",
        files=_FILES,
        md5=_by_file(
            "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "d53e105ee54ea40749a09fcbcd1e9432",
            "9fb629c4189551a2d022fa330f9573f3",
            "ec29112dd5afa0611ce80d1b7f02629c",
        ),
        # The order torchvision uses: yann.lecun.com often refuses or rate-limits.
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        classes=tuple(str(digit) for digit in range(10)),
    ),
    "fashion-mnist": Source(
        name="fashion-mnist",
        files=_FILES,
        md5=_by_file(
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "25c81989df183df01b3e8a0aad5dffbe",
            "bef4ecab320f06d8554ea6380940ec79",
            "bb300cfdad3c16e7a12a480ee83cd310",
        ),
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        classes=tuple(
            "T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot".split(",")
        ),
    ),
}


class FetchError(RuntimeError):
    """A file that could be had from no mirror; the message names the file, each mirror and why."""


def mirrors_from(text: str | None) -> list[str] | None:
    """LRSEARCH_DATASET_MIRRORS: base URLs split by commas or whitespace; None or empty -> None."""
    mirrors = [part for part in re.split(r"[,\s]+", text or "") if part]
    return mirrors or None


def fetch_files(
    source: Source,
    folder: Path,
    *,
    mirrors: Sequence[str] | None = None,
    checksums: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    progress: Progress | None = None,
) -> list[Path]:
    """Download the source's files into folder (made if missing); return their paths in order."""
    fetch = _Fetch(_bases(source, mirrors), timeout, progress)
    expected = {**source.md5, **(checksums or {})}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in source.files:
        if Path(name).name != name or name in ("", ".", ".."):
            raise ValueError(f"{source.name}: {name!r} is not a plain file name")
        if name not in expected:
            raise FetchError(f"no md5 known for {name} of {source.name}: it cannot be checked")
        target, md5 = folder / name, expected[name].strip().lower()
        # A file put there by hand (or fetched before) needs no network.
        if target.is_file() and _md5_of(target) == md5:
            fetch.report(name, target.stat().st_size, target.stat().st_size)
        else:
            fetch.file(target, md5)
        paths.append(target)
    return paths


def read_images(
    source: Source, paths: Sequence[Path]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_val, y_val) from the 4 IDX files: float32 (n, 784) in [0, 1], int64."""
    if len(paths) != 4:
        raise DatasetError(
            f"{source.name}: expected 4 files (train images, train labels, t10k images, "
            f"t10k labels), got {len(paths)}"
        )
    x_train, y_train = _read_pair(source, Path(paths[0]), Path(paths[1]))
    x_val, y_val = _read_pair(source, Path(paths[2]), Path(paths[3]))
    return x_train, y_train, x_val, y_val


def _read_pair(source: Source, images_path: Path, labels_path: Path) -> tuple[np.ndarray, ...]:
    images = read_idx(images_path, _IMAGES_MAGIC)
    labels = read_idx(labels_path, _LABELS_MAGIC)
    what = f"{source.name}: {images_path.name} and {labels_path.name}"
    if images.shape[1:] != (28, 28):
        raise DatasetError(f"{what}: expected 28x28 images, got shape {images.shape}")
    if len(images) == 0:
        raise DatasetError(f"{what}: no images")
    if len(labels) != len(images):
        raise DatasetError(f"{what}: {len(images)} images but {len(labels)} labels")
    if int(labels.max()) >= len(source.classes):
        raise DatasetError(
            f"{what}: label {int(labels.max())} found, but there are only "
            f"{len(source.classes)} classes (0 to {len(source.classes) - 1})"
        )
    x = images.reshape(len(images), 28 * 28).astype(np.float32)  # a new C-contiguous array
    x /= np.float32(255.0)
    return x, labels.astype(np.int64)


def _bases(source: Source, mirrors: Sequence[str] | None) -> list[str]:
    """The mirrors' base URLs with {name} filled in, each ending in "/"; only http and https."""
    bases = [base.replace("{name}", source.name) for base in (mirrors or source.mirrors)]
    if not bases:
        raise FetchError(f"no mirrors to fetch {source.name} from")
    for base in bases:
        # Checked before anything is fetched: a mistyped setting fails at once, and a file://
        # or ftp:// mirror would let a setting read or reach what it should not.
        parsed = urllib.parse.urlsplit(base)
        if parsed.scheme.lower() not in _SCHEMES or not parsed.netloc:
            raise FetchError(f"mirror {base!r} refused: only http:// and https:// URLs are allowed")
    return [base if base.endswith("/") else base + "/" for base in bases]


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http and https only (urllib's own handler also allows ftp)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urllib.parse.urlsplit(newurl).scheme.lower() not in _SCHEMES:
            fp.close()  # the redirect's own response, which urllib would otherwise close
            raise urllib.error.URLError(f"redirect to {newurl!r} refused: not http or https")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener() -> urllib.request.OpenerDirector:
    """HTTP and HTTPS only: no file, ftp or data handlers, whatever a URL or redirect says."""
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),  # reads the *_proxy variables now, not at import
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(),
        urllib.request.HTTPDefaultErrorHandler(),
        _HttpOnlyRedirects(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


@dataclass
class _Fetch:
    """One fetch_files call: its mirrors, timeout and progress callback."""

    bases: list[str]
    timeout: float
    progress: Progress | None
    opener: urllib.request.OpenerDirector = field(default_factory=_opener)

    def report(self, name: str, done: int, total: int | None) -> None:
        if self.progress is not None:
            self.progress(name, done, total)

    def file(self, target: Path, md5: str) -> None:
        """Fetch target from the first mirror that gives it whole, or raise FetchError."""
        failures = []
        for base in self.bases:
            url = base + target.name
            part = target.with_name(f"{target.name}.part-{secrets.token_hex(6)}")
            try:
                why = self.download(url, part, md5, target.name)
                if why is None:
                    os.replace(part, target)  # atomic: the final name only holds checked files
                    self.report(target.name, target.stat().st_size, target.stat().st_size)
                    return
            finally:
                # Also on KeyboardInterrupt or a local OSError (disk full): not retried.
                part.unlink(missing_ok=True)
            failures.append(f"  {url}: {why}")
        raise FetchError(f"could not fetch {target.name} from any mirror:\n" + "\n".join(failures))

    def download(self, url: str, part: Path, md5: str, name: str) -> str | None:
        """Stream url into part; None if it came whole with the expected md5, else why not."""
        try:
            response = self.opener.open(url, timeout=self.timeout)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            return _why(exc, self.timeout)
        with response, open(part, "xb") as out:
            length = response.headers.get("Content-Length", "").strip()
            total = int(length) if length.isdigit() else None
            if total is not None and total > _MAX_BYTES:
                return f"{total} bytes, more than {_MAX_BYTES}: not this file"
            digest, done, reported = hashlib.md5(usedforsecurity=False), 0, 0
            while done <= _MAX_BYTES:
                try:
                    chunk = response.read(_CHUNK)  # the socket timeout bounds each read
                except (OSError, http.client.HTTPException) as exc:
                    return _why(exc, self.timeout)
                if not chunk:
                    break
                out.write(chunk)  # a local write error propagates: no mirror would help
                digest.update(chunk)
                done += len(chunk)
                if done - reported >= _CHUNK:
                    self.report(name, done, total)
                    reported = done
            out.flush()
            os.fsync(out.fileno())  # so a crash after the rename cannot leave an empty file
        return _verdict(done, total, digest.hexdigest(), md5)


def _verdict(done: int, total: int | None, got: str, md5: str) -> str | None:
    if done > _MAX_BYTES:
        return f"more than {_MAX_BYTES} bytes: not this file"
    if total is not None and done != total:
        # urllib returns a short body without complaint when the connection drops early.
        return f"truncated: got {done} of {total} bytes"
    return None if got == md5 else f"checksum mismatch: got {got}, expected {md5}"


def _why(exc: BaseException, timeout: float) -> str:
    """A short reason for a failed request, e.g. 'HTTP 404 Not Found' or 'connection refused'."""
    if isinstance(exc, urllib.error.HTTPError):
        exc.close()  # it holds the response open; unclosed, it warns when collected
        return f"HTTP {exc.code} {exc.reason}".rstrip()
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, TimeoutError):
        return f"timed out after {timeout:g} s"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    return reason if isinstance(reason, str) else f"{type(reason).__name__}: {reason}"


def _md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()

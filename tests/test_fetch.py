"""Fetching MNIST-style files from mirrors: all against a local HTTP server, no internet."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from lrsearch.datasets import fetch
from lrsearch.datasets.fetch import SOURCES, FetchError, fetch_files, mirrors_from, read_images
from lrsearch.training import DatasetError

MNIST = SOURCES["mnist"]
FILES = MNIST.files
TRAIN_IMAGES = FILES[0]
ONE_FILE = dataclasses.replace(MNIST, files=(TRAIN_IMAGES,))  # one stall costs one timeout
TIMEOUT = 0.5


def idx(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes, gzipped."""
    header = (0x800 | array.ndim).to_bytes(4, "big")
    header += b"".join(size.to_bytes(4, "big") for size in array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes(), mtime=0)


_rng = np.random.default_rng(18)
# Random pixels barely compress: 100 images make a file over 64 KB, so progress is reported
# (and can be interrupted) in the middle of it.
IMAGES = {
    "train": _rng.integers(0, 256, (100, 28, 28)),
    "t10k": _rng.integers(0, 256, (20, 28, 28)),
}
LABELS = {"train": np.arange(100) % 10, "t10k": np.arange(20)[::-1] % 10}
PAYLOAD = dict(
    zip(
        FILES,
        [idx(IMAGES["train"]), idx(LABELS["train"]), idx(IMAGES["t10k"]), idx(LABELS["t10k"])],
        strict=True,
    )
)
REDIRECTS = {"to-file": "file:///etc/passwd", "to-ftp": "ftp://127.0.0.1/mnist"}
MD5S = {name: hashlib.md5(body).hexdigest() for name, body in PAYLOAD.items()}


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a stalled handler must not hold up the test's end

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[str] = []
        self.release = threading.Event()
        self.port = self.server_address[1]

    def url(self, route: str) -> str:
        return f"http://127.0.0.1:{self.port}/{route}/"


class _Handler(BaseHTTPRequestHandler):
    """/good, /mnist: the file; /missing: 404; /corrupt: other bytes; /stall: part, then a
    pause; /short: part, then the connection closes; /to-file, /to-ftp: redirects there."""

    server: _Server

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        route, _, name = self.path.strip("/").partition("/")
        body = PAYLOAD.get(name)
        if body is None or route == "missing":
            self.send_error(404)
        elif route in ("to-file", "to-ftp"):
            self.send_response(302)
            self.send_header("Location", REDIRECTS[route])
            self.end_headers()
        elif route in ("good", "mnist", "corrupt"):
            self._send(body[::-1] if route == "corrupt" else body)
        elif route in ("stall", "short"):
            self._send(body, len(body) - 1000)
            if route == "stall":
                self.server.release.wait(10 * TIMEOUT)
        else:
            self.send_error(400)

    def _send(self, body: bytes, upto: int | None = None) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[:upto])
        self.wfile.flush()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture
def server() -> Iterator[_Server]:
    httpd = _Server()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield httpd
    httpd.release.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_sources_describe_mnist_and_fashion_mnist() -> None:
    assert {"mnist", "fashion-mnist"} <= set(SOURCES)
    for key, source in SOURCES.items():
        assert source.name == key and len(source.files) == 4 and len(source.classes) == 10
        assert set(source.md5) == set(source.files)
        assert all(len(md5) == 32 for md5 in source.md5.values())
        assert all(url.startswith(("http://", "https://")) for url in source.mirrors)
    assert SOURCES["mnist"].classes == tuple("0123456789")
    fashion = SOURCES["fashion-mnist"].classes
    assert (fashion[0], fashion[-1], len(fashion)) == ("T-shirt/top", "Ankle boot", 10)
    assert SOURCES["mnist"].md5 != SOURCES["fashion-mnist"].md5
    hash(MNIST)


def test_bad_mirrors_are_skipped_for_a_good_one(server: _Server, tmp_path: Path) -> None:
    routes = ["missing", "corrupt", "stall", "good"]
    folder = tmp_path / "new" / "data"
    mirrors = [server.url(route) for route in routes]
    paths = fetch_files(ONE_FILE, folder, mirrors=mirrors, checksums=MD5S, timeout=TIMEOUT)
    assert paths == [folder / TRAIN_IMAGES]
    assert paths[0].read_bytes() == PAYLOAD[TRAIN_IMAGES]
    assert server.requests == [f"/{route}/{TRAIN_IMAGES}" for route in routes]
    assert [p.name for p in folder.iterdir()] == [TRAIN_IMAGES]


def test_every_mirror_failing_names_the_file_each_mirror_and_why(
    server: _Server, tmp_path: Path
) -> None:
    refused = f"http://127.0.0.1:{closed_port()}/"
    reasons = {
        server.url("missing"): "HTTP 404",
        server.url("corrupt"): (
            f"checksum mismatch: got {hashlib.md5(PAYLOAD[TRAIN_IMAGES][::-1]).hexdigest()}, "
            f"expected {MD5S[TRAIN_IMAGES]}"
        ),
        server.url("stall"): f"timed out after {TIMEOUT} s",
        server.url("short"): "truncated: got",
        server.url("to-file"): "HTTP 302 Found - Redirection to url 'file:///etc/passwd' is not",
        server.url("to-ftp"): "redirect to 'ftp://127.0.0.1/mnist' refused: not http or https",
        refused: "connection refused",
    }
    with pytest.raises(FetchError) as caught:
        fetch_files(ONE_FILE, tmp_path, mirrors=list(reasons), checksums=MD5S, timeout=TIMEOUT)
    message = str(caught.value)
    assert TRAIN_IMAGES in message.splitlines()[0]
    lines = message.splitlines()[1:]
    assert len(lines) == len(reasons)
    for line, (base, reason) in zip(lines, reasons.items(), strict=True):
        assert line.strip().startswith(f"{base}{TRAIN_IMAGES}: {reason}")
    assert list(tmp_path.iterdir()) == []


def test_a_stall_after_some_bytes_leaves_nothing_behind(server: _Server, tmp_path: Path) -> None:
    seen: list[list[str]] = []

    def progress(name: str, done: int, total: int | None) -> None:
        seen.append(sorted(p.name for p in tmp_path.iterdir()))

    with pytest.raises(FetchError, match="timed out"):
        fetch_files(
            ONE_FILE,
            tmp_path,
            mirrors=[server.url("stall")],
            checksums=MD5S,
            timeout=TIMEOUT,
            progress=progress,
        )
    assert len(seen) == 1 and len(seen[0]) == 1  # 64 KB had arrived, in a temporary file
    assert seen[0][0].startswith(f"{TRAIN_IMAGES}.part-")
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_download_leaves_nothing_behind(server: _Server, tmp_path: Path) -> None:
    def progress(name: str, done: int, total: int | None) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fetch_files(
            MNIST, tmp_path, mirrors=[server.url("good")], checksums=MD5S, progress=progress
        )
    assert list(tmp_path.iterdir()) == []


def test_files_present_with_the_right_checksum_are_not_fetched(
    server: _Server, tmp_path: Path
) -> None:
    for name, body in PAYLOAD.items():
        (tmp_path / name).write_bytes(body)
    calls = []
    paths = fetch_files(
        MNIST,
        tmp_path,
        mirrors=[server.url("good")],
        checksums=MD5S,
        progress=lambda *args: calls.append(args),
    )
    assert paths == [tmp_path / name for name in FILES]
    assert server.requests == []
    assert calls == [(name, len(PAYLOAD[name]), len(PAYLOAD[name])) for name in FILES]


def test_a_present_file_with_a_wrong_checksum_is_fetched_again(
    server: _Server, tmp_path: Path
) -> None:
    for name, body in PAYLOAD.items():
        (tmp_path / name).write_bytes(body)
    (tmp_path / FILES[1]).write_bytes(PAYLOAD[FILES[1]][:-5])
    fetch_files(MNIST, tmp_path, mirrors=[server.url("good")], checksums=MD5S)
    assert server.requests == [f"/good/{FILES[1]}"]
    assert (tmp_path / FILES[1]).read_bytes() == PAYLOAD[FILES[1]]


def test_progress_is_reported_as_bytes_arrive(server: _Server, tmp_path: Path) -> None:
    calls: list[tuple[str, int, int | None]] = []
    fetch_files(
        MNIST,
        tmp_path,
        mirrors=[server.url("good")],
        checksums=MD5S,
        progress=lambda *args: calls.append(args),
    )
    size = len(PAYLOAD[TRAIN_IMAGES])
    assert size > 64 * 1024
    assert [call for call in calls if call[0] == TRAIN_IMAGES] == [
        (TRAIN_IMAGES, 64 * 1024, size),
        (TRAIN_IMAGES, size, size),
    ]
    assert calls[2:] == [(name, len(PAYLOAD[name]), len(PAYLOAD[name])) for name in FILES[1:]]


def test_the_name_placeholder_and_a_base_without_a_slash(server: _Server, tmp_path: Path) -> None:
    mirror = f"http://127.0.0.1:{server.port}/{{name}}"
    fetch_files(MNIST, tmp_path, mirrors=[mirror], checksums=MD5S)
    assert server.requests == [f"/mnist/{name}" for name in FILES]


def test_read_images_of_fetched_files(server: _Server, tmp_path: Path) -> None:
    paths = fetch_files(MNIST, tmp_path, mirrors=[server.url("good")], checksums=MD5S)
    x_train, y_train, x_val, y_val = read_images(MNIST, paths)
    assert (x_train.shape, x_val.shape) == ((100, 784), (20, 784))
    for x, part in ((x_train, "train"), (x_val, "t10k")):
        assert x.dtype == np.float32 and x.flags.c_contiguous
        assert 0.0 <= x.min() and x.max() <= 1.0
        expected = IMAGES[part].reshape(len(x), 784).astype(np.float32) / np.float32(255.0)
        np.testing.assert_array_equal(x, expected)
    for y, part in ((y_train, "train"), (y_val, "t10k")):
        assert y.dtype == np.int64
        np.testing.assert_array_equal(y, LABELS[part])


@pytest.mark.parametrize(
    ("name", "array", "match"),
    [
        (FILES[0], np.zeros((100, 27, 28)), "28x28"),
        (FILES[1], np.zeros(99), "100 images but 99 labels"),
        (FILES[3], np.full(20, 10), "label 10"),
        (FILES[2], np.zeros((0, 28, 28)), "no images"),
    ],
)
def test_read_images_refuses_bad_files(
    tmp_path: Path, name: str, array: np.ndarray, match: str
) -> None:
    paths = []
    for file_name, body in PAYLOAD.items():
        (tmp_path / file_name).write_bytes(idx(array) if file_name == name else body)
        paths.append(tmp_path / file_name)
    with pytest.raises(DatasetError, match=match):
        read_images(MNIST, paths)


def test_read_images_refuses_a_file_that_is_not_idx(tmp_path: Path) -> None:
    paths = [tmp_path / name for name in FILES]
    for path in paths:
        path.write_bytes(gzip.compress(b"<html>not found</html>"))
    with pytest.raises(DatasetError, match="not an IDX file"):
        read_images(MNIST, paths)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, None),
        ("", None),
        (" , \n", None),
        ("http://a/", ["http://a/"]),
        ("http://a/,https://b/{name}/", ["http://a/", "https://b/{name}/"]),
        (" http://a/ ,\n https://b/  http://c/ ", ["http://a/", "https://b/", "http://c/"]),
    ],
)
def test_mirrors_from(text: str | None, expected: list[str] | None) -> None:
    assert mirrors_from(text) == expected


@pytest.mark.parametrize(
    "mirror", ["file:///etc/", "FILE:///tmp/", "ftp://example.org/", "127.0.0.1:80/", "http:///x/"]
)
def test_a_mirror_that_is_not_http_is_refused(tmp_path: Path, mirror: str) -> None:
    with pytest.raises(FetchError, match="only http:// and https://"):
        fetch_files(MNIST, tmp_path / "data", mirrors=["http://127.0.0.1:1/", mirror])
    assert not (tmp_path / "data").exists()


def test_a_file_far_too_large_is_refused(
    server: _Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fetch, "_MAX_BYTES", 1000)
    with pytest.raises(FetchError, match="more than 1000"):
        fetch_files(ONE_FILE, tmp_path, mirrors=[server.url("good")], checksums=MD5S)
    assert list(tmp_path.iterdir()) == []

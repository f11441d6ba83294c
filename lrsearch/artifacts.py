"""The log folder: layout, the seed's log.txt lines, plots, and zip archives."""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import os
import shutil
import threading
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TextIO

LOG_NAME = "log.txt"
PLOT_NAME = "curves.png"


def logs_root(data_dir: str | os.PathLike) -> Path:
    """Where the per-search log folders live."""
    return Path(data_dir) / "logs"


def search_folder_name(search_id: int) -> str:
    """The folder of one search, relative to the logs root."""
    return f"search-{search_id:04d}"


def trial_folder_name(index: int, lr: float) -> str:
    """One folder per trial: the index keeps two rates apart, the rate is for people."""
    return f"trial-{index:03d}-lr-{lr:.6e}"


def trial_folder(data_dir: str | os.PathLike, search_id: int, index: int, lr: float) -> Path:
    """The absolute folder of one trial."""
    return logs_root(data_dir) / search_folder_name(search_id) / trial_folder_name(index, lr)


def remove_search_folder(data_dir: str | os.PathLike, search_id: int) -> None:
    """Remove a deleted search's log folder (its logs, plots and any earlier attempts')."""
    shutil.rmtree(logs_root(data_dir) / search_folder_name(search_id), ignore_errors=True)


def log_line(
    epoch: int, epochs: int, loss: float, acc_train: float, val_loss: float, acc_val: float
) -> str:
    """One line of log.txt, exactly as the seed writes it."""
    return (
        f"[{epoch}/{epochs}] loss:{loss:.4f},acc_train:{acc_train:.4f},"
        f"val_loss:{val_loss:.4f},acc_val:{acc_val:.4f}"
    )


def start_log(folder: Path, attempt: int) -> TextIO:
    """Make the trial folder and open a new log.txt for its lines.

    The file is line-buffered: each line reaches the OS as it is written, so a crash keeps
    every finished epoch. An earlier attempt's log is kept beside as log.attempt-N.txt.
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOG_NAME
    if attempt > 1 and path.exists():
        path.replace(folder / f"log.attempt-{attempt - 1}.txt")
    (folder / PLOT_NAME).unlink(missing_ok=True)  # an earlier attempt's
    return path.open("w", encoding="utf-8", buffering=1)


def draw_plot(path: Path, title: str, epochs: Sequence[dict[str, float]]) -> None:
    """Save loss and accuracy curves, train against validation (matplotlib, Agg).

    One figure per process is drawn again with each trial's data: building the axes, ticks
    and legend anew was a large share of a plot.
    """
    with _PLOT_LOCK:
        figure, lines = _plot_figure()
        x = [e["epoch"] for e in epochs]
        for line, key in zip(lines, _PLOT_KEYS, strict=True):
            line.set_data(x, [e[key] for e in epochs])
        for ax in figure.axes:
            ax.relim()
            ax.autoscale_view()
        figure.texts[0].set_text(title)  # the suptitle
        png = _png(figure)
    tmp = path.with_suffix(".tmp.png")
    tmp.write_bytes(png)
    tmp.replace(path)


def write_range_log(folder: Path, attempt: int, points: Sequence) -> None:
    """A range test's log.txt: one line per batch."""
    with start_log(folder, attempt) as log_file:
        for p in points:
            log_file.write(
                f"[{p.step}] lr:{p.lr:.6e},loss:{p.loss:.4f},smoothed:{p.smoothed:.4f}\n"
            )


def write_log(folder: Path, attempt: int, planned: int, epochs: Sequence[dict[str, float]]) -> None:
    """A trial's log.txt written whole from its stored epochs (of `planned`): for a trial
    that ran where this machine's disk is not."""
    with start_log(folder, attempt) as log_file:
        log_file.writelines(history_lines(epochs, planned))


def history_lines(epochs: Sequence[dict[str, float]], planned: int) -> Iterator[str]:
    """log.txt's lines (newline-ended) of epochs held as dicts (a worker's history)."""
    for e in epochs:
        line = log_line(e["epoch"], planned, e["loss"], e["acc_train"], e["val_loss"],
                        e["acc_val"])  # fmt: skip
        yield line + "\n"


def draw_range_plot(path: Path, title: str, points: Sequence, suggestion) -> None:
    """Save a range test's loss against rate (log axis), the suggested range shaded."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 3.6), dpi=100)
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    lrs = [p.lr for p in points]
    ax.plot(lrs, [p.loss for p in points], ".", alpha=0.35, label="batch loss")
    ax.plot(lrs, [p.smoothed for p in points], label="smoothed (β 0.98)")
    if suggestion is not None:
        ax.axvspan(suggestion.lr_min, suggestion.lr_max, alpha=0.15, color="tab:green",
                   label="suggested range")  # fmt: skip
    ax.set(xscale="log", xlabel="learning rate", ylabel="loss", title=title)
    finite = [p.loss for p in points if math.isfinite(p.loss)]
    if finite:  # the exploding tail would flatten the valley
        ax.set_ylim(min(finite) * 0.9, max(p.smoothed for p in points[:1]) * 1.6)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False)
    figure.tight_layout()
    png = _png(figure)
    tmp = path.with_suffix(".tmp.png")
    tmp.write_bytes(png)
    tmp.replace(path)


def warm_plots() -> None:
    """Build this process's figure and draw it once (fonts loaded), writing no file."""
    with _PLOT_LOCK:
        figure, _ = _plot_figure()
        _png(figure)


_PLOT_KEYS = ("loss", "val_loss", "acc_train", "acc_val")
_PLOT_LOCK = threading.Lock()  # the web server's threads may draw plots too


def _png(figure) -> bytes:
    """The figure drawn, as PNG bytes: RGB (it is opaque) at zlib level 3.

    Quicker than savefig's RGBA at level 6, and the file is no larger.
    """
    from PIL import Image  # matplotlib's own dependency, which its savefig uses too

    canvas = figure.canvas
    canvas.draw()
    size = canvas.get_width_height()
    image = Image.frombuffer("RGBA", size, canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    out = io.BytesIO()
    image.convert("RGB").save(out, format="png", compress_level=3)
    return out.getvalue()


@functools.cache
def _plot_figure():
    """This process's figure: two axes with a train and a validation line each."""
    # imported late: a slow import that many callers never need
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 3.6), dpi=100)
    FigureCanvasAgg(figure)
    figure.subplots_adjust(left=0.07, right=0.98, top=0.84, bottom=0.14, wspace=0.2)
    lines = []
    for ax, name in zip(figure.subplots(1, 2), ("loss", "accuracy"), strict=True):
        lines += [ax.plot([], [], label="train")[0], ax.plot([], [], label="validation")[0]]
        ax.set(title=name, xlabel="epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    # One legend for both axes, whose lines share their colours, across from the title: a
    # legend is a costly part of a plot to draw, and one in each axes said the same twice.
    figure.suptitle("", x=0.07, ha="left")
    figure.legend(handles=lines[:2], loc="upper right", ncols=2, frameon=False)
    _keep_places(figure)
    return figure, lines


def _keep_places(figure) -> None:
    """Fix the axes' titles and labels where matplotlib's first layout puts them.

    Matplotlib places them by measuring every tick label, on every draw. Their height never
    changes here (digits in one font, no ticks on top), so keeping the first layout's places
    draws the same pixels in less time.
    """
    figure.draw_without_rendering()
    for ax in figure.axes:
        ax.set_title(ax.get_title(), y=ax.title.get_position()[1])
        to_axes = ax.transAxes.inverted()
        x, _ = ax.yaxis.label.get_position()  # x in pixels, y in axes coordinates
        ax.yaxis.set_label_coords(to_axes.transform((x, 0))[0], 0.5)
        _, y = ax.xaxis.label.get_position()  # x in axes coordinates, y in pixels
        ax.xaxis.set_label_coords(0.5, to_axes.transform((0, y))[1])


class _ChunkBuffer(io.RawIOBase):
    """A write-only, unseekable stream whose written bytes are taken out in chunks."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.position = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.chunks.append(bytes(data))
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def take(self) -> bytes:
        data, self.chunks = b"".join(self.chunks), []
        return data


def stream_zip(entries: Iterable[tuple[str, Path | bytes]]) -> Iterator[bytes]:
    """Stream a zip of (archive name, file path or bytes) without holding it in memory."""
    buffer = _ChunkBuffer()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, source in entries:
            if isinstance(source, bytes):
                archive.writestr(name, source)
            else:
                with source.open("rb") as src, archive.open(name, "w") as dst:
                    while block := src.read(1 << 16):
                        dst.write(block)
                        if buffer.position and len(buffer.chunks) > 16:
                            yield buffer.take()
            yield buffer.take()
    yield buffer.take()


def trial_files(folder: Path, prefix: str) -> Iterator[tuple[str, Path]]:
    """Archive entries for the regular files of one trial folder (no links followed)."""
    if not folder.is_dir() or folder.is_symlink():
        return
    for path in sorted(folder.iterdir()):
        if path.is_file() and not path.is_symlink() and not path.name.endswith(".tmp.png"):
            yield f"{prefix}/{path.name}", path


def epochs_csv(rows: Iterable[Sequence[object]], header: Sequence[str]) -> bytes:
    """Rows (epochs, a ranking) as CSV bytes."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def json_bytes(value: object) -> bytes:
    """Pretty, strict JSON (NaN refused)."""
    return json.dumps(value, indent=2, allow_nan=False).encode()

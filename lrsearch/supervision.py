"""What the server's runner supervisor (gunicorn.conf.py) knows, kept in the data folder for
the pages and /api/health: running, restarting (with the last error), or stopped."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

STATE_FILE = "runner-supervisor.json"


def _data_dir() -> Path:
    """The server's data folder, as config.resolve finds it."""
    from lrsearch import ROOT

    return Path(os.environ.get("LRSEARCH_DATA_DIR") or ROOT / "instance")


def write_state(state: str, data_dir: str | os.PathLike | None = None, **about: object) -> None:
    """Record the supervisor's state (atomically: readers see the old one or the new)."""
    folder = Path(data_dir) if data_dir else _data_dir()
    folder.mkdir(parents=True, exist_ok=True)
    record = {"state": state, "at": time.time(), **about}
    fd, partial = tempfile.mkstemp(dir=folder, prefix=".supervisor.")
    with os.fdopen(fd, "w") as out:
        json.dump(record, out)
    os.replace(partial, folder / STATE_FILE)


def read_state(data_dir: str | os.PathLike) -> dict | None:
    """The supervisor's last state, or None where no server supervises a runner."""
    try:
        return json.loads((Path(data_dir) / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None

"""Settings: defaults, overridden by LRSEARCH_* environment variables and test config."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from flask import Flask


class Defaults:
    """Defaults for every setting; each can be overridden by `LRSEARCH_<NAME>`."""

    DATA_DIR: str | None = None  # SQLite file and log folders; default: the instance folder
    DATABASE_URL: str | None = None  # overrides the SQLite file, e.g. postgresql+psycopg://...
    WORKERS: int = os.cpu_count() or 1  # worker processes of the runner's pool
    DASK_SCHEDULER: str | None = None  # tcp://host:8786: trials run on that Dask cluster
    SECRET_KEY: str | None = None  # default: generated once into the instance folder
    PASSWORD: str | None = None  # when set, every page and API call asks for it
    # Liveness: the runner refreshes heartbeats of its trials; older ones are re-queued.
    HEARTBEAT_SECONDS: float = 5.0
    STALE_AFTER_SECONDS: float = 30.0
    MAX_ATTEMPTS: int = 2  # crashes or errors before a trial is `failed`
    MAX_INTERRUPTIONS: int = 10  # runner deaths survived before a trial is `failed`
    # A trial saves its state (in the database) after an epoch when this many seconds passed
    # since its last checkpoint (0: after every epoch), and after its last epoch; a re-run
    # attempt resumes from it. Each costs about 2.7 % of an mnist-shaped epoch on SQLite,
    # 8 % on PostgreSQL (benchmarks/overhead.py): every 10 s, at most 10 s of work is lost.
    CHECKPOINT_SECONDS: float = 10.0
    # Caps on what one search may ask for.
    MAX_TRIALS: int = 1000
    MAX_EPOCHS: int = 1000
    MAX_LAYERS: int = 10
    MAX_WIDTH: int = 4096
    MAX_TRIAL_EPOCHS: int = 200_000  # trials x epochs of one search
    MAX_ACTIVE_SEARCHES: int = 20  # queued or running at once
    MAX_WORKERS: int = 64
    MAX_CONTENT_LENGTH: int = 64 * 1024
    # Data sets: uploads up to this size (MB), and caps on what one may hold.
    MAX_DATASET_MB: int = 512
    MAX_DATASET_ROWS: int = 10_000_000
    MAX_DATASET_FEATURES: int = 100_000
    MAX_DATASET_CLASSES: int = 1000
    DATASET_MIRRORS: str | None = None  # base URLs for fetching, comma-separated; {name} allowed
    DATASET_CHECKSUMS: dict | None = None  # file name -> md5, replacing the known ones (tests)
    DATASET_TIMEOUT: float = 30.0  # seconds a download may wait for the next bytes
    SQLALCHEMY_ENGINE_OPTIONS: dict = {"pool_pre_ping": True}
    WTF_CSRF_TIME_LIMIT: int | None = None
    SESSION_COOKIE_HTTPONLY: bool = True
    SESSION_COOKIE_SAMESITE: str = "Lax"
    JSON_SORT_KEYS: bool = False


def resolve(app: Flask) -> None:
    """Fill the settings derived from others: data folder, database URL, secret key."""
    data_dir = Path(app.config["DATA_DIR"] or app.instance_path).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    app.config["DATA_DIR"] = str(data_dir)
    url = app.config.get("DATABASE_URL") or f"sqlite:///{data_dir / 'lrsearch.sqlite3'}"
    app.config["DATABASE_URL"] = url
    app.config["SQLALCHEMY_DATABASE_URI"] = url
    for name in ("PASSWORD", "SECRET_KEY"):  # LRSEARCH_PASSWORD=1234 must stay text
        if app.config.get(name) is not None:
            app.config[name] = str(app.config[name])
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _instance_secret(data_dir / "secret_key")
    app.config["WORKERS"] = max(1, int(app.config["WORKERS"]))


def _instance_secret(path: Path) -> str:
    """Read the secret key kept in the data folder, generating it on first use."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    key = secrets.token_hex(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process wrote it first: use theirs
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(key)
    return key

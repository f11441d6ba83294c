"""The schema at start (issue 21): `flask --app app run` on a fresh data folder works on
the embedded SQLite; on another database an old schema is refused in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

ROOT = Path(__file__).resolve().parent.parent


def import_app(env: dict[str, str]) -> subprocess.Popen:
    """A process that imports app.py as `flask --app app` does, and exits."""
    return subprocess.Popen(
        [sys.executable, "-c", "import app"],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_fresh_sqlite_data_folder_gets_its_schema_from_processes_starting_together(tmp_path):
    env = {"LRSEARCH_DATA_DIR": str(tmp_path), "LRSEARCH_DATABASE_URL": ""}
    processes = [import_app(env) for _ in range(3)]
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err[-2000:]
    engine = create_engine(f"sqlite:///{tmp_path / 'lrsearch.sqlite3'}")
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"search", "trial", "epoch", "dataset", "runner", "alembic_version"} <= tables


@pytest.mark.postgres
def test_another_database_without_the_schema_is_refused_in_one_line(tmp_path, postgres_url):
    process = import_app(
        {"LRSEARCH_DATA_DIR": str(tmp_path), "LRSEARCH_DATABASE_URL": postgres_url}
    )
    out, err = process.communicate(timeout=120)
    assert process.returncode == 1
    assert err.count("\n") == 1 and "flask --app app db upgrade" in err
    assert "at schema none" in err

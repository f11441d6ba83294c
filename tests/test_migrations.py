"""The schema comes from the migrations, and they match the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect

from lrsearch.extensions import db


def test_the_migrations_build_exactly_the_models_schema(app):
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
    assert diff == []


def test_the_migrations_go_down_and_up_again(app):
    directory = app.config["MIGRATIONS_DIR"]
    downgrade(directory=directory, revision="base")
    assert set(inspect(db.engine).get_table_names()) == {"alembic_version"}
    upgrade(directory=directory)
    assert {"search", "trial", "epoch"} <= set(inspect(db.engine).get_table_names())


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(app):
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL

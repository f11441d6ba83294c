"""The schema comes from the migrations, and they match the models."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, text

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


@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_a_database_made_before_the_trials_index_change_keeps_its_rows(request, database):
    if database == "postgresql":
        request.getfixturevalue("on_postgresql")
    app = request.getfixturevalue("app")
    directory = app.config["MIGRATIONS_DIR"]
    downgrade(directory=directory, revision="0001")
    assert "ix_trial_updated_at" in _index_names("trial")
    with db.engine.begin() as conn:
        conn.execute(text(SEARCH_ROW))
        conn.execute(text(TRIAL_ROW))
        conn.execute(text(EPOCH_ROW))
    upgrade(directory=directory)
    assert _index_names("epoch") == {"ix_epoch_trial_id"}
    assert _index_names("trial") == {
        "ix_trial_plot_pending",
        "ix_trial_status",
        "ix_trial_search_id_updated_at",
        "ix_trial_search_id_status_index",
    }
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM epoch WHERE trial_id = 1")).scalar() == 1
        assert conn.execute(text("SELECT lr FROM trial WHERE search_id = 1")).scalar() == 0.01
    with db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), db.metadata) == []


def test_a_poll_finds_the_changed_trials_by_search_and_time(app):
    with db.engine.connect() as conn:
        plan = conn.exec_driver_sql(
            "EXPLAIN QUERY PLAN SELECT id FROM trial WHERE search_id = 1 AND updated_at >= ?",
            ("2026-11-30 00:00:00",),
        ).fetchall()
    assert "ix_trial_search_id_updated_at (search_id=? AND updated_at>?)" in plan[0][-1]


def _index_names(table: str) -> set[str]:
    """The table's indexes but those of its unique constraints (PostgreSQL lists them)."""
    return {i["name"] for i in inspect(db.engine).get_indexes(table) if not i["unique"]}


SEARCH_ROW = """INSERT INTO search (id, name, dataset, layers, lr_min, lr_max, sampler, n_trials,
    epochs, batch_size, beta1, beta2, eps, workers, seed, status, cancel_requested, created_at)
    VALUES (1, 'kept', 'digits', '[64, 10]', 0.001, 0.1, 'log-uniform', 1, 1, 32, 0.9, 0.999,
    1e-08, 1, 0, 'completed', false, '2026-11-30 12:00:00')"""
TRIAL_ROW = """INSERT INTO trial (id, search_id, "index", lr, seed, status, attempt, crashes,
    interruptions, created_at, epochs_done, seconds, plot_pending, updated_at)
    VALUES (1, 1, 0, 0.01, 7, 'completed', 1, 0, 0, '2026-11-30 12:00:00', 1, 0.5, false,
    '2026-11-30 12:00:01')"""
EPOCH_ROW = """INSERT INTO epoch (id, trial_id, attempt, epoch, loss, acc_train, val_loss,
    acc_val, seconds, created_at)
    VALUES (1, 1, 1, 1, 0.5, 0.8, 0.6, 0.75, 0.5, '2026-11-30 12:00:01')"""

"""The database's schema at start: brought up to date on the embedded SQLite default,
checked (and refused in one line when behind) on any other database."""

from __future__ import annotations

import fcntl
from pathlib import Path

from flask import Flask
from sqlalchemy.engine import make_url


class SchemaBehind(RuntimeError):
    """The database's schema is not the code's; the message names the command to run."""


def revisions(app: Flask) -> tuple[str | None, str]:
    """(the database's Alembic revision, None if it has no schema; the code's head)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from lrsearch.extensions import db

    head = ScriptDirectory(app.config["MIGRATIONS_DIR"]).get_current_head()
    with app.app_context(), db.engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    return current, head


def bring_up_to_date(app: Flask) -> None:
    """On SQLite, apply the migrations the database lacks (several processes may start at
    once: they take turns on a lock file beside it); elsewhere, SchemaBehind if it lacks
    any (a shared database is migrated on purpose, by one command)."""
    url = app.config["DATABASE_URL"]
    if not url.startswith("sqlite"):
        current, head = revisions(app)
        if current != head:
            where = make_url(url).render_as_string(hide_password=True)
            raise SchemaBehind(
                f"the database {where} is at schema {current or 'none'}, this code needs "
                f"{head}: run `flask --app app db upgrade` first"
            )
        return
    with (Path(app.config["DATA_DIR"]) / ".migrations.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        current, head = revisions(app)
        if current != head:
            from flask_migrate import upgrade

            with app.app_context():
                upgrade(directory=app.config["MIGRATIONS_DIR"])

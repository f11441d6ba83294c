"""lrsearch: a web dashboard for learning-rate search."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

ROOT = Path(__file__).resolve().parent.parent
# The release, as pyproject.toml says (a test checks); a Dask worker must have the same.
__version__ = "0.2.0"


def create_app(test_config: dict | None = None) -> Flask:
    """Create and configure the dashboard."""
    # Imported here, not above: importing the package stays cheap and does nothing (app.py
    # starts the workers' fork server between that and these imports; lrsearch.testing and
    # the training package need none of them).
    from flask import Flask

    from lrsearch import cli, config, extensions, web

    app = Flask(
        __name__,
        instance_relative_config=True,
        instance_path=str(ROOT / "instance"),
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    app.config.from_object(config.Defaults)
    app.config["MIGRATIONS_DIR"] = str(ROOT / "migrations")
    app.config.from_prefixed_env("LRSEARCH")
    if test_config:
        app.config.update(test_config)
    config.resolve(app)
    extensions.init_app(app)
    web.init_app(app)
    cli.init_app(app)
    return app

"""lrsearch: a web dashboard for learning-rate search."""

from __future__ import annotations

import sys

from lrsearch.search import forkserver_start

# First, before Flask and the rest: `flask ... lrsearch run` starts the workers' fork server
# now, to import their modules while this process imports its own (forkserver_start).
forkserver_start.start_early(sys.argv)

from pathlib import Path  # noqa: E402

from flask import Flask  # noqa: E402

from lrsearch import config, extensions  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def create_app(test_config: dict | None = None) -> Flask:
    """Create and configure the dashboard."""
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

    from lrsearch import cli, web

    web.init_app(app)
    cli.init_app(app)
    return app

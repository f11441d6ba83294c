"""The dashboard's pages, downloads and JSON API."""

from __future__ import annotations

from flask import Flask
from werkzeug.routing import IntegerConverter

from lrsearch.extensions import csrf
from lrsearch.settings import MAX_INTEGER


class IdConverter(IntegerConverter):
    """Every route's `<int:...>`: a number past the INTEGER columns' range matches no route
    (a 404), where it reached the database before, and PostgreSQL refused it (a 500)."""

    def __init__(self, url_map, *args, **kwargs) -> None:
        kwargs.setdefault("max", MAX_INTEGER)
        super().__init__(url_map, *args, **kwargs)


def init_app(app: Flask) -> None:
    """Register the blueprints, error handlers and security checks."""
    from lrsearch.web import api, compare, datasets, downloads, errors, pages, security, summaries

    app.url_map.converters["int"] = IdConverter  # before any route is added
    csrf.exempt(api.bp)  # JSON bodies only: a cross-site form cannot send one
    for view in (datasets.api_upload, datasets.api_fetch, datasets.api_remove):
        csrf.exempt(view)  # each needs what a cross-site form cannot send (see the view)
    app.register_blueprint(api.bp)
    app.register_blueprint(datasets.bp)
    app.register_blueprint(compare.bp)
    app.register_blueprint(downloads.bp)
    app.register_blueprint(pages.bp)
    errors.init_app(app)
    security.init_app(app)
    app.context_processor(summaries.runners_shown)

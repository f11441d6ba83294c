"""The dashboard's pages, downloads and JSON API."""

from __future__ import annotations

from flask import Flask

from lrsearch.extensions import csrf


def init_app(app: Flask) -> None:
    """Register the blueprints, error handlers and security checks."""
    from lrsearch.web import api, downloads, errors, pages, security

    csrf.exempt(api.bp)  # JSON bodies only: a cross-site form cannot send one
    app.register_blueprint(api.bp)
    app.register_blueprint(downloads.bp)
    app.register_blueprint(pages.bp)
    errors.init_app(app)
    security.init_app(app)

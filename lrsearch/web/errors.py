"""One error handler: JSON for API clients, a page for people; 500s roll back; a database
out of reach is a 503 with Retry-After."""

from __future__ import annotations

import logging

from flask import Flask, render_template, request
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from werkzeug.exceptions import HTTPException, InternalServerError

from lrsearch.extensions import db

log = logging.getLogger(__name__)
DATABASE_UNAVAILABLE = "database unavailable"
RETRY_AFTER_SECONDS = 5


class ApiError(Exception):
    """An API answer other than success, with a reason and, for bad settings, per field."""

    def __init__(self, status: int, reason: str, errors: dict[str, str] | None = None):
        super().__init__(reason)
        self.status, self.reason, self.errors = status, reason, errors


def wants_json() -> bool:
    """API paths, and clients that prefer JSON to HTML, get JSON errors."""
    if request.path.startswith("/api/"):
        return True
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return (
        best == "application/json"
        and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]
    )


def error_response(status: int, reason: str, errors: dict[str, str] | None = None):
    """The answer for an error, in the form the client wants."""
    if wants_json():
        body: dict[str, object] = {"reason": reason}
        if errors:
            body["errors"] = errors
        return body, status
    return render_template("error.html", status=status, reason=reason), status


def init_app(app: Flask) -> None:
    """Register the handlers."""

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError):
        return error_response(exc.status, exc.reason, exc.errors)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if exc.code and exc.code >= 500:
            db.session.rollback()
        return error_response(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(OperationalError)
    def database_unavailable(exc: OperationalError):
        # A lost or refused connection (PostgreSQL down or restarting, SQLite's file out of
        # reach): not the request's fault, and gone in a while. Never the generic 500.
        log.warning("database unavailable on %s %s: %s", request.method, request.path, exc.orig)
        try:
            db.session.rollback()
        except SQLAlchemyError:
            pass
        response = error_response(503, DATABASE_UNAVAILABLE)
        return (*response, {"Retry-After": str(RETRY_AFTER_SECONDS)})

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception):
        db.session.rollback()
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, InternalServerError.description)

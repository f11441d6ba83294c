"""Security for a dashboard exposed on a lab network: headers and an optional password."""

from __future__ import annotations

import hmac

from flask import Flask, Response, current_app, request

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)


def add_headers(response: Response) -> Response:
    """Only this origin may supply scripts, styles, images or frame the pages."""
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


def check_password() -> Response | None:
    """With LRSEARCH_PASSWORD set, every request needs it (HTTP Basic, any user name)."""
    password = current_app.config.get("PASSWORD")
    if not password:
        return None
    auth = request.authorization
    given = (auth.password or "") if auth and auth.type == "basic" else ""
    if hmac.compare_digest(given.encode(), str(password).encode()):
        return None
    return Response(
        "password required\n", 401, {"WWW-Authenticate": 'Basic realm="lrsearch", charset="UTF-8"'}
    )


def init_app(app: Flask) -> None:
    """Install the checks."""
    app.before_request(check_password)
    app.after_request(add_headers)

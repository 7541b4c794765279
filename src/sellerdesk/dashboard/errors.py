"""Errors on dashboard pages are pages: the API's JSON handlers stay as they are for every other
path, and `/dashboard` gets an HTML page with the same status (or the sign-in redirect)."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from sellerdesk.dashboard.rendering import render
from sellerdesk.dashboard.security import SignedOut
from sellerdesk.errors import STATUS_CODES, AppError, DatabaseUnavailable, is_database_outage

log = structlog.get_logger(__name__)

Handler = Callable[[Request, Any], Response | Awaitable[Response]]

PREFIX = "/dashboard"

_TITLES = {
    400: "Bad request",
    401: "Signed out",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed",
    409: "Conflict",
    413: "Too large",
    422: "Not valid",
    429: "Too many requests",
    503: "Unavailable",
}


def _page(request: Request, status: int, message: str) -> Response:
    response = render(
        request,
        "error.html",
        viewer=None,
        title=_TITLES.get(status, "Error"),
        status_code=status,
        status=status,
        code=STATUS_CODES.get(status, "error"),
        message=message,
    )
    if status == 429 and "retry" not in message.lower():
        response.headers["Retry-After"] = "60"
    return response


async def _signed_out(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignedOut)
    if request.headers.get("hx-request") == "true":
        # An htmx request follows redirects itself; tell it to load the sign-in page instead.
        return Response(status_code=204, headers={"HX-Redirect": exc.login_url})
    return RedirectResponse(exc.login_url, status_code=303, headers={"Cache-Control": "no-store"})


def _for_dashboard(fallback: Handler, to_page: Callable[[Request, Exception], Response]) -> Handler:
    async def handler(request: Request, exc: Exception) -> Response:
        if not request.url.path.startswith(PREFIX):
            answer = fallback(request, exc)
            return await answer if inspect.isawaitable(answer) else answer
        return to_page(request, exc)

    return handler


def _app_error_page(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppError)
    response = _page(request, exc.status_code, exc.message)
    for name, value in (exc.headers or {}).items():
        if name.lower() == "retry-after":
            response.headers[name] = value
    return response


def _validation_page(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(part) for part in first.get("loc", ()))
    return _page(request, 422, f"Invalid input at {where}: {first.get('msg', 'not valid')}.")


def _http_page(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    message = exc.detail if isinstance(exc.detail, str) else "This page does not exist."
    if exc.status_code == 404:
        message = "This page does not exist."
    return _page(request, exc.status_code, message)


def _outage_page(request: Request, exc: Exception) -> Response:
    if not is_database_outage(exc):
        raise exc
    log.warning("database_unavailable", error=type(exc).__name__, path=request.url.path)
    return _app_error_page(request, DatabaseUnavailable())


def install(app: FastAPI) -> None:
    """Wrap the app's handlers (install after `errors.install_error_handlers`)."""
    app.add_exception_handler(SignedOut, _signed_out)
    pages: dict[type[Exception], Callable[[Request, Exception], Response]] = {
        AppError: _app_error_page,
        RequestValidationError: _validation_page,
        StarletteHTTPException: _http_page,
    }
    for exc_class, to_page in pages.items():
        fallback = app.exception_handlers[exc_class]
        app.add_exception_handler(exc_class, _for_dashboard(fallback, to_page))
    for outage in (sa_exc.DBAPIError, sa_exc.DisconnectionError, sa_exc.TimeoutError, OSError):
        handler = app.exception_handlers.get(outage)
        if handler is not None:
            app.add_exception_handler(outage, _for_dashboard(handler, _outage_page))

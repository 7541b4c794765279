"""The error hierarchy and the one handler that renders every error in the contract's shape."""

from __future__ import annotations

import errno
import socket
from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import iter_route_contexts
from sqlalchemy import exc as sa_exc
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

log = structlog.get_logger(__name__)


class AppError(Exception):
    """A business error with a stable code; services raise these, never HTTPException."""

    status_code: int = 400
    code: str = "bad_request"
    message: str = "The request could not be processed."

    def __init__(
        self,
        message: str | None = None,
        *,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.message
        self.details = details
        self.headers = headers
        super().__init__(self.message)


class ValidationFailed(AppError):
    status_code = 422
    code = "validation_error"
    message = "The request is not valid."


class NotAuthenticated(AppError):
    status_code = 401
    code = "not_authenticated"
    message = "Authentication is required."

    def __init__(self, message: str | None = None, *, details: Any = None) -> None:
        super().__init__(message, details=details, headers={"WWW-Authenticate": "Bearer"})


class InvalidToken(AppError):
    status_code = 401
    code = "invalid_token"
    message = "The credentials are invalid or expired."

    def __init__(self, message: str | None = None, *, details: Any = None) -> None:
        super().__init__(message, details=details, headers={"WWW-Authenticate": "Bearer"})


class InvalidCredentials(AppError):
    status_code = 401
    code = "not_authenticated"
    message = "Incorrect email or password."


class Forbidden(AppError):
    status_code = 403
    code = "forbidden"
    message = "You are not allowed to do this."


class NotFound(AppError):
    status_code = 404
    code = "not_found"
    message = "Not found."


class Conflict(AppError):
    status_code = 409
    code = "conflict"
    message = "The request conflicts with the current state."


class RateLimited(AppError):
    status_code = 429
    code = "rate_limited"
    message = "Too many requests; retry later."

    def __init__(self, retry_after: int, message: str | None = None) -> None:
        retry_after = max(1, retry_after)
        super().__init__(
            message or f"Too many requests; retry in {retry_after} s.",
            details={"retry_after": retry_after},
            headers={"Retry-After": str(retry_after)},
        )


class ServiceUnavailable(AppError):
    status_code = 503
    code = "service_unavailable"
    message = "A required service is unavailable; retry later."


# Seconds a client is told to wait (`Retry-After`) while the database is unreachable.
DATABASE_RETRY_AFTER_SECONDS = 5

# Socket errors that mean "the server cannot be reached" (raised as-is by asyncpg's connect).
_UNREACHABLE_ERRNOS = {
    errno.ECONNREFUSED,
    errno.ECONNRESET,
    errno.ECONNABORTED,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.ENETDOWN,
    errno.EHOSTDOWN,
    errno.ETIMEDOUT,
    errno.EPIPE,
}
# asyncpg's errors for a lost or refused connection (server shut down, starting, crashed).
_DRIVER_OUTAGES = ("PostgresConnectionError", "OperatorInterventionError", "ConnectionError")


# SQLite's messages for a database file it cannot use right now.
_SQLITE_OUTAGES = (
    "unable to open database",
    "database is locked",
    "disk i/o error",
    "database or disk is full",
    "readonly database",
)


class DatabaseUnavailable(ServiceUnavailable):
    """The database cannot be reached (or lost the connection): 503 with `Retry-After`."""

    message = "The database is unavailable; retry shortly."

    def __init__(self) -> None:
        super().__init__(
            details={"retry_after": DATABASE_RETRY_AFTER_SECONDS},
            headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
        )


def is_database_outage(exc: BaseException) -> bool:
    """Whether `exc` means the database is unreachable rather than that a statement was wrong.

    Disconnects SQLAlchemy noticed (`connection_invalidated`), pool exhaustion, asyncpg's
    connection and shutdown errors wrapped in a `DBAPIError`, SQLite's "unable to open database
    file", "database is locked" and disk errors, and raw socket errors from connecting (refused,
    reset, unreachable, timeout). Anything else the database refuses (a missing table, a syntax
    error, a misused driver) is a bug: it stays a 500.
    """
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        if isinstance(exc, sa_exc.OperationalError) and _is_sqlite_outage(exc.orig):
            return True
        return any(_is_driver_outage(cause) for cause in _causes(exc.orig))
    if isinstance(exc, sa_exc.DisconnectionError | sa_exc.TimeoutError):
        return True
    return _is_socket_outage(exc)


def _causes(exc: BaseException | None) -> list[BaseException]:
    chain: list[BaseException] = []
    while exc is not None and len(chain) < 10:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    return chain


def _is_sqlite_outage(exc: BaseException | None) -> bool:
    message = str(exc).lower()
    return any(sign in message for sign in _SQLITE_OUTAGES)


def _is_driver_outage(exc: BaseException) -> bool:
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & set(_DRIVER_OUTAGES)) or _is_socket_outage(exc)


def _is_socket_outage(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionError | TimeoutError | socket.gaierror):
        return True
    return isinstance(exc, OSError) and exc.errno in _UNREACHABLE_ERRNOS


STATUS_CODES: dict[int, str] = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """The contract's error shape."""
    body: dict[str, Any] = {"error": code, "message": message}
    if details is not None:
        body["details"] = details
    return body


def _plural(count: Any, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def human_message(error: Mapping[str, Any]) -> str:
    """Pydantic's message for one error, reworded for people (the one place that does it).

    Lengths speak of characters for text and items for lists (a length checked after a
    validator says "items" for both); "Value error, " and similar prefixes go.
    """
    kind = str(error.get("type", ""))
    message = str(error.get("msg", ""))
    ctx = error.get("ctx") or {}
    value = error.get("input")
    if kind in _LENGTH_ERRORS:
        shortest = kind.endswith("too_short")
        limit = ctx.get("min_length" if shortest else "max_length")
        noun = "character" if isinstance(value, str) or kind.startswith("string_") else "item"
        if limit is not None:
            return f"Should have {'at least' if shortest else 'at most'} {_plural(limit, noun)}"
    if kind == "json_invalid":
        return "Not valid JSON" + (f" ({ctx['error']})" if ctx.get("error") else "")
    if kind == "missing":
        return "This field is required"
    if kind == "extra_forbidden":
        return "This field is not accepted here"
    for prefix in _MESSAGE_PREFIXES:
        if message.startswith(prefix):
            message = message[len(prefix) :]
            return message[:1].upper() + message[1:]
    return message


_LENGTH_ERRORS = {"too_short", "too_long", "string_too_short", "string_too_long"}
_MESSAGE_PREFIXES = ("Value error, ", "Assertion failed, ")


def _validation_details(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    # Only location, message and type: inputs may hold passwords and ctx may hold objects.
    return [
        {
            # A JSON syntax error's location is a character offset: the body as a whole is bad.
            "loc": ["body"] if err.get("type") == "json_invalid" else list(err.get("loc", ())),
            "msg": human_message(err),
            "type": err.get("type"),
        }
        for err in errors
    ]


def _where(loc: Sequence[Any]) -> str:
    """`["body", "address", "city"]` → `address.city`; `["query", "page"]` → `query page`."""
    parts = [str(part) for part in loc]
    if parts and parts[0] == "body":
        return ".".join(parts[1:])
    if len(parts) > 1 and parts[0] in {"query", "path", "header", "cookie"}:
        return f"{parts[0]} parameter {'.'.join(parts[1:])}"
    return ".".join(parts)


async def _app_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return JSONResponse(
        error_body(exc.code, exc.message, exc.details),
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = _validation_details(exc.errors())
    first = details[0] if details else None
    where = _where(first["loc"]) if first else ""
    if first is None:
        message = "Invalid input."
    elif where:
        message = f"Invalid input at {where}: {first['msg']}."
    else:
        message = f"Invalid input: {first['msg']}."
    if len(details) > 1:
        message += f" ({len(details) - 1} more in details)"
    return JSONResponse(error_body("validation_error", message, details), status_code=422)


async def _http_error(request: Request, exc: Exception) -> JSONResponse | Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405:
        allow = ", ".join(allowed_methods(request))
        if request.method == "OPTIONS":
            return Response(status_code=204, headers={"Allow": allow})
        return JSONResponse(
            error_body("method_not_allowed", f"{request.method} is not allowed here; use {allow}."),
            status_code=405,
            headers={"Allow": allow},
        )
    if exc.status_code == 400:
        # FastAPI and Starlette raise 400 only when the body cannot be read at all (bytes that
        # are not UTF-8, a multipart body without its boundary): that is invalid input, a 422.
        detail = exc.detail if isinstance(exc.detail, str) else "unreadable"
        return JSONResponse(
            error_body(
                "validation_error",
                f"The request body could not be read: {detail.rstrip('.')}.",
                [{"loc": ["body"], "msg": detail, "type": "body_unreadable"}],
            ),
            status_code=422,
        )
    code = STATUS_CODES.get(exc.status_code, "error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ").capitalize()
    return JSONResponse(error_body(code, message), status_code=exc.status_code, headers=exc.headers)


def allowed_methods(request: Request) -> list[str]:
    """Every method the request's path answers (several routes may share one path)."""
    methods = {"OPTIONS"}
    for route in iter_route_contexts(request.app.router.routes):
        # FULL or PARTIAL (the path matches, the method may not): the route serves this path.
        if route.methods and route.matches(request.scope)[0] != Match.NONE:
            methods |= route.methods
    return sorted(methods)


async def _integrity_error(_: Request, exc: Exception) -> JSONResponse:
    # A uniqueness or foreign-key clash that a service did not pre-check is still a 409.
    # The driver's first line names the constraint; its DETAIL line quotes the clashing values.
    first_line = str(getattr(exc, "orig", exc)).strip().splitlines()[:1]
    log.warning("integrity_error", error=(first_line or [""])[0][:300])
    return JSONResponse(
        error_body("conflict", "The change conflicts with existing data."), status_code=409
    )


async def _maybe_database_outage(request: Request, exc: Exception) -> JSONResponse:
    """503 `service_unavailable` with `Retry-After` for a database outage; anything else is
    raised on, to become a logged 500 in the middleware."""
    if not is_database_outage(exc):
        raise exc
    log.warning(
        "database_unavailable",
        error=type(exc).__name__,
        detail=str(getattr(exc, "orig", None) or exc)[:200],
        path=request.url.path,
    )
    return await _app_error(request, DatabaseUnavailable())


def install_error_handlers(app: FastAPI) -> None:
    """Route every error through the contract's shape (500s are rendered by the middleware)."""
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(IntegrityError, _integrity_error)
    for outage in (sa_exc.DBAPIError, sa_exc.DisconnectionError, sa_exc.TimeoutError, OSError):
        app.add_exception_handler(outage, _maybe_database_outage)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)

"""Declared error responses for the OpenAPI document, in the contract's error shape."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorResponse(BaseModel):
    """Every error: a stable snake_case code, a human message and optional details."""

    error: str
    message: str
    details: Any | None = None


_DESCRIPTIONS = {
    400: "Bad request",
    401: "Not authenticated or invalid token",
    402: "Insufficient credits",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict",
    413: "Payload too large",
    422: "Validation error",
    429: "Rate limited",
    502: "Upstream unavailable",
    503: "Service unavailable",
    504: "Upstream timeout",
    500: "Internal error (quote the request id)",
}


# Declared on every route that uses `errors()`: they all need the database, and while it is
# unreachable they answer 503 `service_unavailable` with `Retry-After`.
DEFAULT_CODES = (503,)


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each code (plus the default 503) with the error model."""
    return {
        code: {"model": ErrorResponse, "description": _DESCRIPTIONS.get(code, "Error")}
        for code in dict.fromkeys((*codes, *DEFAULT_CODES))
    }

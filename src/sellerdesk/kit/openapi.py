"""The OpenAPI document exactly as served: error responses, operation ids, security.

A route declares the errors of its own rules (`responses=errors(404, 409)`); the errors that
follow from how a route is built are added by `install_openapi(app)`, so no route can forget
them:

- every operation: 500 `internal_error`;
- any parameter or body: 422 `validation_error`; a body: 413 as well;
- the request's database session: 503 `service_unavailable` (the database is unreachable);
- a dependency marked with `@declares(...)` (authentication: 401/403; admin: 403);
- `Idempotency-Key`: 409 (the first request is still running) and 422 (another body);
- the per-IP limit, when it is on: 429 on every route it covers.

Operation ids are the route functions' names (`list_products`), unique across the app, so a
generated client reads well. Routes whose caller may be anonymous declare no security.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from pydantic import BaseModel

from sellerdesk.db import get_session
from sellerdesk.kit.types import MAX_ID

F = TypeVar("F", bound=Callable[..., Any])

IDEMPOTENCY_HEADER = "Idempotency-Key"
_DECLARED = "__openapi_errors__"
_REQUIRES_AUTH = "__openapi_requires_auth__"


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
    429: "Rate limited (see Retry-After)",
    502: "Upstream unavailable",
    503: "Service unavailable (see Retry-After when given)",
    504: "Upstream timeout",
    500: "Internal error (quote the request id)",
}

_RETRY_AFTER = {
    "description": "Seconds to wait before retrying.",
    "schema": {"type": "integer", "minimum": 1},
}


_ERROR_CONTENT = {
    "application/json": {"schema": {"$ref": f"#/components/schemas/{ErrorResponse.__name__}"}}
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each code documented with the error model."""
    return {code: {**_error_response(code), "model": ErrorResponse} for code in codes}


def _error_response(code: int) -> dict[str, Any]:
    # The content is spelled out: responses added after a route is built get no `model` schema.
    response: dict[str, Any] = {
        "description": _DESCRIPTIONS.get(code, "Error"),
        "content": _ERROR_CONTENT,
    }
    if code in (429, 503):
        # Always sent with a 429; with a 503 when the wait is known.
        response["headers"] = {"Retry-After": {**_RETRY_AFTER, "required": code == 429}}
    return response


def response_headers(status: int, **headers: str) -> dict[int | str, dict[str, Any]]:
    """`responses=` entry declaring integer headers always sent with `status` (name=description;
    underscores become hyphens: `X_Credits_Charged` → `X-Credits-Charged`)."""
    return {
        status: {
            "headers": {
                name.replace("_", "-"): {
                    "description": description,
                    "required": True,
                    "schema": {"type": "integer", "minimum": 0},
                }
                for name, description in headers.items()
            }
        }
    }


def declares(*codes: int, requires_auth: bool = False) -> Callable[[F], F]:
    """Mark a dependency with the errors it can answer; every route using it declares them.

    `requires_auth=True` also makes the routes that use it declare the security schemes it
    reads (the others, whose caller may be anonymous, declare none).
    """

    def mark(dependency: F) -> F:
        setattr(dependency, _DECLARED, codes)
        setattr(dependency, _REQUIRES_AUTH, requires_auth)
        return dependency

    return mark


_BODY_MODELS: dict[str, type[BaseModel]] = {}


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra=` for a route that reads its body itself: a JSON body of `model`.

    The model becomes a named component (`#/components/schemas/<Model>`), as FastAPI does for
    the bodies it parses, so generated clients get a class with the model's name.
    """
    _BODY_MODELS[model.__name__] = model
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def operation_id(route: APIRoute) -> str:
    """`generate_unique_id_function`: the route function's name (`list_products`)."""
    return route.name


def install_openapi(app: FastAPI) -> None:
    """Complete every route's declared responses and serve the finished document."""
    # Routes kept out of the document (the dashboard's pages) may share function names.
    routes = [
        ctx
        for ctx in iter_route_contexts(app.routes)
        if getattr(ctx, "dependant", None) and getattr(ctx, "include_in_schema", True)
    ]
    ids = Counter(ctx.operation_id or ctx.unique_id for ctx in routes)
    duplicates = sorted(name for name, count in ids.items() if count > 1)
    if duplicates:
        raise RuntimeError(f"duplicate OpenAPI operation ids: {', '.join(duplicates)}")
    per_ip = bool(app.state.settings.RATE_LIMIT_PER_IP)
    public: set[str] = set()
    for ctx in routes:
        implied: dict[int | str, dict[str, Any]] = {
            code: _error_response(code) for code in sorted(implied_errors(ctx, per_ip))
        }
        # A new dict (a route's `responses=` may be shared with other routes), set on this
        # app's own copy of the route: routers are module-level and shared by every app.
        if ctx._route_context is not None:
            ctx._route_context.responses = {**implied, **ctx._route_context.responses}
        elif isinstance(ctx.original_route, APIRoute):
            ctx.original_route.responses = {**implied, **ctx.original_route.responses}
        if not requires_auth(ctx.dependant):
            public.add(ctx.operation_id or ctx.unique_id)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                servers=app.servers,
            )
            for operation in _operations(document):
                if operation.get("operationId") in public:
                    operation.pop("security", None)  # the caller may be anonymous
            _restore_integer_bounds(document)
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            models: dict[str, type[BaseModel]] = {**_BODY_MODELS, "ErrorResponse": ErrorResponse}
            for name, model in models.items():
                definition = model.model_json_schema(ref_template="#/components/schemas/{model}")
                schemas.update(definition.pop("$defs", {}))
                schemas.setdefault(name, definition)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def implied_errors(route: RouteContext, per_ip_limit: bool = False) -> set[int]:
    """The error statuses that follow from how `route` is built (see the module docstring)."""
    codes = {500}
    dependant: Dependant = route.dependant
    if any(_params(dependant)):
        codes.add(422)
    if any(sub.body_params for sub in _walk(dependant)):
        codes |= {413, 422}
    for sub in _walk(dependant):
        codes.update(getattr(sub.call, _DECLARED, ()))
        if sub.call is get_session:
            codes.add(503)
        if any(param.alias == IDEMPOTENCY_HEADER for param in sub.header_params):
            codes |= {409, 422}
    if per_ip_limit and not str(route.path).startswith("/health"):
        codes.add(429)
    return codes


def requires_auth(dependant: Dependant) -> bool:
    """Whether a route refuses anonymous callers (it then declares its security schemes)."""
    return any(getattr(sub.call, _REQUIRES_AUTH, False) for sub in _walk(dependant))


_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def _restore_integer_bounds(node: Any) -> None:
    """FastAPI's OpenAPI model stores bounds as floats (`2**63 - 1` became `2**63`): undo it."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _BOUNDS and isinstance(value, float) and value.is_integer():
                node[key] = MAX_ID if value == float(MAX_ID) else int(value)
            else:
                _restore_integer_bounds(value)
    elif isinstance(node, list):
        for item in node:
            _restore_integer_bounds(item)


def _walk(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _walk(sub)


def _params(dependant: Dependant) -> Iterator[Any]:
    for sub in _walk(dependant):
        yield from sub.path_params
        yield from sub.query_params
        yield from sub.header_params
        yield from sub.cookie_params
        yield from sub.body_params


def _operations(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for item in document.get("paths", {}).values():
        for method, operation in item.items():
            if method in {"get", "put", "post", "delete", "patch", "options", "head", "trace"}:
                yield operation

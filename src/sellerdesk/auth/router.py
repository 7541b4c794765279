"""Auth routes: register, login (form or JSON), refresh, logout."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from sellerdesk.auth import service
from sellerdesk.auth.dependencies import AuthContextDep, CurrentUser
from sellerdesk.auth.schemas import LoginRequest, RefreshRequest, TokenPair
from sellerdesk.db import SessionDep
from sellerdesk.kit.middleware import client_ip
from sellerdesk.kit.openapi import errors, json_body
from sellerdesk.users.schemas import UserCreate, UserPublic

router = APIRouter(prefix="/auth", tags=["auth"])

_NO_STORE = "no-store"

# OpenAPI declares the JSON body only: one body type per operation keeps generated clients
# working. The OAuth2 password form is accepted as well (see the description), which is what
# OAuth2 tools and the docs page's Authorize button post to the `tokenUrl`.
_LOGIN_BODY = json_body(LoginRequest)
_LOGIN_DESCRIPTION = (
    'Send `{"email", "password"}` as JSON. An OAuth2 password form is accepted too '
    "(`application/x-www-form-urlencoded` with `username` = the email and `password`), as "
    "OAuth2 tools and the Authorize button of `/docs` send it. Wrong credentials are a 401 "
    "whether the email exists or not; repeated failures are throttled (429)."
)


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=UserPublic,
    responses=errors(409, 422),
)
async def register(body: UserCreate, session: SessionDep, ctx: AuthContextDep) -> UserPublic:
    """Create an account."""
    return UserPublic.model_validate(await service.register(session, ctx, body))


@router.post(
    "/login",
    response_model=TokenPair,
    responses=errors(401, 403, 413, 422, 429, 503),
    openapi_extra=_LOGIN_BODY,
    description=_LOGIN_DESCRIPTION,
)
async def login(
    request: Request, response: Response, session: SessionDep, ctx: AuthContextDep
) -> TokenPair:
    """Exchange email and password (OAuth2 form or JSON) for an access and a refresh token."""
    body = await _login_body(request)
    response.headers["Cache-Control"] = _NO_STORE  # RFC 6749 5.1: token answers are not cached
    return await service.login(session, ctx, body.email, body.password, client_ip(request.scope))


async def _login_body(request: Request) -> LoginRequest:
    content_type = request.headers.get("content-type", "")
    is_form = content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data"))
    try:
        if is_form:
            form = await request.form()
            username, password = form.get("username"), form.get("password")
            return LoginRequest.model_validate({"email": username, "password": password})
        try:
            payload = await request.json()
        # Not JSON, not UTF-8, or nested deeper than the parser's recursion limit (a 500 before):
        # reported as FastAPI does.
        except (ValueError, RecursionError) as exc:
            invalid = {"type": "json_invalid", "loc": ("body",), "msg": "JSON decode error"}
            raise RequestValidationError([{**invalid, "ctx": {"error": str(exc)[:200]}}]) from exc
        return LoginRequest.model_validate(payload)
    except ValidationError as exc:
        # Report locations as FastAPI does for a body, in the names the client sent.
        details = []
        for error in exc.errors(include_url=False):
            loc = ["username" if is_form and part == "email" else part for part in error["loc"]]
            details.append({**error, "loc": ("body", *loc)})
        raise RequestValidationError(details) from exc


@router.post("/refresh", response_model=TokenPair, responses=errors(401, 403, 422))
async def refresh(
    body: RefreshRequest, response: Response, session: SessionDep, ctx: AuthContextDep
) -> TokenPair:
    """Rotate a refresh token: the old one is revoked, a new pair is issued."""
    response.headers["Cache-Control"] = _NO_STORE
    return await service.refresh(session, ctx.settings, body.refresh_token)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=errors(401, 422))
async def logout(body: RefreshRequest, session: SessionDep, user: CurrentUser) -> Response:
    """Revoke the given refresh token."""
    await service.logout(session, user, body.refresh_token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

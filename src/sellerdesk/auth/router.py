"""Auth routes: register, login (form or JSON), refresh, logout."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from sellerdesk.auth import service
from sellerdesk.auth.dependencies import AuthContextDep, CurrentUser
from sellerdesk.auth.schemas import LoginRequest, RefreshRequest, TokenPair
from sellerdesk.db import SessionDep
from sellerdesk.errors import ValidationFailed
from sellerdesk.kit.middleware import client_ip
from sellerdesk.kit.openapi import errors
from sellerdesk.users.schemas import UserCreate, UserPublic

router = APIRouter(prefix="/auth", tags=["auth"])

_NO_STORE = "no-store"

_LOGIN_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["username", "password"],
                    "properties": {
                        "username": {"type": "string", "description": "The account email."},
                        "password": {"type": "string", "format": "password"},
                    },
                }
            },
            "application/json": {"schema": LoginRequest.model_json_schema()},
        },
    }
}


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
    responses=errors(401, 403, 422, 429, 503),
    openapi_extra=_LOGIN_BODY,
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
        except ValueError as exc:
            raise ValidationFailed("The body must be JSON or an OAuth2 password form.") from exc
        return LoginRequest.model_validate(payload)
    except ValidationError as exc:
        # Report locations as FastAPI does for a body, in the names the client sent.
        details = []
        for error in exc.errors(include_input=False, include_url=False, include_context=False):
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

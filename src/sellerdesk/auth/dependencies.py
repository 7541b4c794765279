"""`CurrentUser` and `AdminUser`: who is calling, resolved from the Bearer token."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from sellerdesk.auth import service
from sellerdesk.auth.service import AuthContext
from sellerdesk.db import SessionDep
from sellerdesk.errors import Forbidden, NotAuthenticated
from sellerdesk.kit.openapi import declares
from sellerdesk.models import User

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/login", auto_error=False)


async def get_auth_context(request: Request) -> AuthContext:
    ctx: AuthContext = request.app.state.auth
    return ctx


AuthContextDep = Annotated[AuthContext, Depends(get_auth_context)]


@declares(401, 403, requires_auth=True)
async def get_current_user(
    session: SessionDep,
    ctx: AuthContextDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> User:
    if not token:
        raise NotAuthenticated()
    return await service.user_from_token(session, ctx, token)


CurrentUser = Annotated[User, Depends(get_current_user)]


@declares(403, requires_auth=True)
async def get_admin_user(user: CurrentUser) -> User:
    if not user.is_superuser:
        raise Forbidden("Administrator rights are required.")
    return user


AdminUser = Annotated[User, Depends(get_admin_user)]


@declares(401, 403)
async def get_optional_user(
    session: SessionDep,
    ctx: AuthContextDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> User | None:
    """The caller on public routes: None without a token; a bad token is still a 401."""
    if not token:
        return None
    return await service.user_from_token(session, ctx, token)


OptionalUser = Annotated[User | None, Depends(get_optional_user)]

"""User routes: the caller's own account and admin management."""

from __future__ import annotations

from fastapi import APIRouter

from sellerdesk.auth.dependencies import AdminUser, AuthContextDep, CurrentUser
from sellerdesk.db import SessionDep
from sellerdesk.kit.openapi import errors
from sellerdesk.kit.pagination import Page, PageDep
from sellerdesk.kit.types import IdPath
from sellerdesk.users import service
from sellerdesk.users.schemas import UserPublic, UserUpdateAdmin, UserUpdateMe

router = APIRouter(prefix="/users", tags=["users"])


@router.get("/me", response_model=UserPublic, responses=errors(401, 403))
async def read_me(user: CurrentUser) -> UserPublic:
    """The caller's account."""
    return UserPublic.model_validate(user)


@router.patch("/me", response_model=UserPublic, responses=errors(401, 403, 422))
async def update_me(
    body: UserUpdateMe, session: SessionDep, user: CurrentUser, ctx: AuthContextDep
) -> UserPublic:
    """Change the caller's name or password."""
    return UserPublic.model_validate(await service.update_me(session, ctx.passwords, user, body))


@router.get("", response_model=Page[UserPublic], responses=errors(401, 403, 422))
async def list_users(session: SessionDep, _: AdminUser, params: PageDep) -> Page[UserPublic]:
    """Every user, oldest first (admin)."""
    users, total = await service.list_users(session, params)
    return Page.of([UserPublic.model_validate(u) for u in users], total, params)


@router.patch("/{user_id}", response_model=UserPublic, responses=errors(401, 403, 404, 409, 422))
async def update_user(
    user_id: IdPath, body: UserUpdateAdmin, session: SessionDep, admin: AdminUser
) -> UserPublic:
    """Activate, deactivate, promote or demote a user (admin)."""
    return UserPublic.model_validate(await service.update_user(session, admin, user_id, body))

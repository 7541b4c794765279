"""Rules for reading and changing users."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sellerdesk import events
from sellerdesk.errors import Conflict, NotFound, ValidationFailed
from sellerdesk.kit.pagination import PageParams
from sellerdesk.models import User
from sellerdesk.users.repository import RefreshTokenRepository, UserRepository
from sellerdesk.users.schemas import UserUpdateAdmin, UserUpdateMe

log = structlog.get_logger(__name__)


class PasswordHasher(Protocol):
    """What changing a password needs (auth's `Passwords` is one): users does not import auth."""

    async def verify(self, password: str, hashed: str | None) -> tuple[bool, str | None]: ...

    async def hash(self, password: str) -> str: ...


async def update_me(
    session: AsyncSession, passwords: PasswordHasher, user: User, data: UserUpdateMe
) -> User:
    """Apply the self-service fields; a new password needs the current one."""
    if "full_name" in data.model_fields_set:
        user.full_name = data.full_name
    if data.password is not None:
        valid, _ = await passwords.verify(data.current_password or "", user.hashed_password)
        if not valid:
            raise ValidationFailed(
                "current_password is incorrect.",
                details=[{"loc": ["body", "current_password"], "msg": "incorrect password"}],
            )
        user.hashed_password = await passwords.hash(data.password)
        await end_sessions(session, user)  # the caller logs in again with the new password
        log.info("password_changed", user_id=user.id)
        await events.publish(session, "password_changed", {"user_id": user.id})
    await session.flush()
    return user


async def get(session: AsyncSession, user_id: int) -> User | None:
    """A user by id (active or not)."""
    return await UserRepository(session).get(user_id)


async def find_by_email(session: AsyncSession, email: str) -> User | None:
    """A user by email (case-insensitive, as stored), active or not."""
    return await UserRepository(session).get_by_email(email.strip().lower())


async def active_admin_emails(session: AsyncSession) -> list[str]:
    """The email address of every active administrator."""
    rows = await session.scalars(
        select(User.email)
        .where(User.is_superuser.is_(True), User.is_active.is_(True))
        .order_by(User.id)
    )
    return list(rows)


async def end_sessions(session: AsyncSession, user: User) -> None:
    """Every access and refresh token issued to the user so far stops working."""
    await UserRepository(session).bump_token_version(user)
    await RefreshTokenRepository(session).revoke_all_for_user(user.id, datetime.now(UTC))


async def list_users(session: AsyncSession, params: PageParams) -> tuple[list[User], int]:
    return await UserRepository(session).page(params.offset, params.page_size)


async def update_user(
    session: AsyncSession, admin: User, user_id: int, data: UserUpdateAdmin
) -> User:
    """Admin change of `is_active` / `is_superuser`; admins cannot lock themselves out."""
    user = await UserRepository(session).get(user_id)
    if user is None:
        raise NotFound("User not found.")
    if user.id == admin.id and (data.is_active is False or data.is_superuser is False):
        raise Conflict("You cannot deactivate or demote your own account.")
    if data.is_active is not None:
        user.is_active = data.is_active
        if not data.is_active:
            await end_sessions(session, user)
    if data.is_superuser is not None:
        user.is_superuser = data.is_superuser
    await session.flush()
    log.info(
        "user_updated_by_admin",
        user_id=user.id,
        admin_id=admin.id,
        changes=data.model_dump(exclude_unset=True),
    )
    return user

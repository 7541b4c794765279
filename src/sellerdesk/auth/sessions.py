"""Browser sessions of the dashboard: a random token in an HttpOnly cookie, its SHA-256 in the
database, so a signed-out or expired session is over everywhere at once."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sellerdesk.models import BrowserSession, User
from sellerdesk.models.base import utcnow

log = structlog.get_logger(__name__)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class SignedIn:
    """The user a live browser session stands for."""

    user: User
    session_id: int
    expires_at: datetime


async def start(session: AsyncSession, user: User, lifetime: timedelta) -> tuple[str, datetime]:
    """A new session for `user`: (the token for the cookie, when it expires).

    The user's own expired sessions are cleared on the way (the periodic purge does the rest).
    """
    now = utcnow()
    await session.execute(
        delete(BrowserSession)
        .where(BrowserSession.user_id == user.id, BrowserSession.expires_at <= now)
        .execution_options(synchronize_session=False)
    )
    token = secrets.token_urlsafe(32)
    row = BrowserSession(
        user_id=user.id,
        token_hash=hash_token(token),
        token_version=user.token_version,
        created_at=now,
        expires_at=now + lifetime,
    )
    session.add(row)
    await session.flush()
    log.info("browser_session_started", user_id=user.id, session_id=row.id)
    return token, row.expires_at


async def resolve(session: AsyncSession, token: str) -> SignedIn | None:
    """The active user of a live session; None for an unknown or expired one, an inactive user,
    or one whose password changed since (their tokens' version moved on)."""
    row = (
        await session.execute(
            select(User, BrowserSession.id, BrowserSession.expires_at, BrowserSession.token_version)
            .join(BrowserSession, BrowserSession.user_id == User.id)
            .where(BrowserSession.token_hash == hash_token(token))
        )
    ).first()
    if row is None:
        return None
    user, session_id, expires_at, version = row
    if expires_at <= utcnow() or not user.is_active or version != user.token_version:
        return None
    return SignedIn(user, session_id, expires_at)


async def end(session: AsyncSession, token: str) -> None:
    """Sign a browser out (nothing happens for an unknown token)."""
    await session.execute(
        delete(BrowserSession)
        .where(BrowserSession.token_hash == hash_token(token))
        .execution_options(synchronize_session=False)
    )


async def purge_expired(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    """Delete expired sessions (a periodic job); how many went."""
    async with sessionmaker() as session:
        result = await session.execute(
            delete(BrowserSession)
            .where(BrowserSession.expires_at <= utcnow())
            .execution_options(synchronize_session=False)
        )
        await session.commit()
    return int(getattr(result, "rowcount", 0) or 0)

"""Demo data: an admin, a user, and whatever each domain registers in `SEEDERS`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from sellerdesk.auth.passwords import Passwords
from sellerdesk.auth.service import normalize_email
from sellerdesk.catalog.seed import seed_catalog
from sellerdesk.config import Settings
from sellerdesk.credits import service as credits_service
from sellerdesk.models import User
from sellerdesk.users.repository import UserRepository

log = structlog.get_logger(__name__)

DEMO_ADMIN = ("admin@example.com", "admin-password")
DEMO_USER = ("user@example.com", "user-password")

Seeder = Callable[[AsyncSession, Settings], Awaitable[None]]
SEEDERS: list[Seeder] = []
"""Domain seeders, run in order after the demo accounts (each must be idempotent)."""


async def ensure_user(
    session: AsyncSession,
    passwords: Passwords,
    email: str,
    password: str,
    *,
    superuser: bool = False,
    full_name: str | None = None,
) -> tuple[User, bool]:
    """Create the user, or promote/reset an existing one; (user, created)."""
    users = UserRepository(session)
    email = normalize_email(email)
    user = await users.get_by_email(email)
    hashed = await passwords.hash(password)
    if user is None:
        user = await users.add(
            User(email=email, hashed_password=hashed, full_name=full_name, is_superuser=superuser)
        )
        return user, True
    user.hashed_password = hashed
    user.is_active = True
    user.is_superuser = user.is_superuser or superuser
    await session.flush()
    return user, False


async def seed(session: AsyncSession, settings: Settings) -> None:
    """Idempotent demo data for a fresh installation."""
    passwords = Passwords(settings)
    await ensure_user(session, passwords, *DEMO_ADMIN, superuser=True, full_name="Demo Admin")
    demo, _ = await ensure_user(session, passwords, *DEMO_USER, full_name="Demo User")
    await seed_catalog(session, settings)
    await credits_service.grant_once(
        session, user_id=demo.id, amount=100, reason="Demo credits", key=f"seed:demo:{demo.id}"
    )
    for seeder in SEEDERS:
        await seeder(session, settings)
    log.info("seeded", admin=DEMO_ADMIN[0], user=DEMO_USER[0])

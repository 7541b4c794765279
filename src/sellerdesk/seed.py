"""Demo data: an admin, a user, and whatever each domain registers in `SEEDERS`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from sellerdesk.auth.passwords import Passwords
from sellerdesk.auth.service import normalize_email
from sellerdesk.catalog.seed import seed_catalog
from sellerdesk.config import Settings
from sellerdesk.credits import service as credits_service
from sellerdesk.models import User
from sellerdesk.users import service as users_service
from sellerdesk.users.repository import UserRepository

log = structlog.get_logger(__name__)

DEMO_ADMIN = ("admin@example.com", "admin-password")
DEMO_USER = ("user@example.com", "user-password")

Seeder = Callable[[AsyncSession, Settings], Awaitable[None]]
SEEDERS: list[Seeder] = []
"""Domain seeders, run in order after the demo accounts (each must be idempotent)."""


@dataclass(frozen=True, slots=True)
class SeedReport:
    """Which demo accounts this run created (existing ones are left exactly as they were)."""

    admin_created: bool
    user_created: bool


async def ensure_user(
    session: AsyncSession,
    passwords: Passwords,
    email: str,
    password: str,
    *,
    superuser: bool = False,
    full_name: str | None = None,
) -> tuple[User, bool]:
    """The account with this email: created when missing, else untouched; (user, created)."""
    users = UserRepository(session)
    email = normalize_email(email)
    user = await users.get_by_email(email)
    if user is not None:
        return user, False
    hashed = await passwords.hash(password)
    user = await users.add(
        User(email=email, hashed_password=hashed, full_name=full_name, is_superuser=superuser)
    )
    return user, True


async def make_admin(
    session: AsyncSession, passwords: Passwords, email: str, password: str
) -> tuple[User, bool]:
    """`create-admin`: a new administrator, or an existing account promoted and reactivated
    with this password (its sessions end); (user, created)."""
    user, created = await ensure_user(session, passwords, email, password, superuser=True)
    if not created:
        user.hashed_password = await passwords.hash(password)
        user.is_active = True
        user.is_superuser = True
        await users_service.end_sessions(session, user)
        await session.flush()
    return user, created


async def seed(session: AsyncSession, settings: Settings) -> SeedReport:
    """Idempotent demo data; never changes an account that already exists (nor its password)."""
    passwords = Passwords(settings)
    _, admin_created = await ensure_user(
        session, passwords, *DEMO_ADMIN, superuser=True, full_name="Demo Admin"
    )
    demo, user_created = await ensure_user(session, passwords, *DEMO_USER, full_name="Demo User")
    await seed_catalog(session, settings)
    if user_created:  # an account that existed before is not given demo credits
        await credits_service.grant_once(
            session, user_id=demo.id, amount=100, reason="Demo credits", key=f"seed:demo:{demo.id}"
        )
    for seeder in SEEDERS:
        await seeder(session, settings)
    log.info("seeded", admin_created=admin_created, user_created=user_created)
    return SeedReport(admin_created=admin_created, user_created=user_created)

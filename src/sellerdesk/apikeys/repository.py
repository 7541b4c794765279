"""SQL for API keys."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sellerdesk.models import ApiKey, User


@dataclass(frozen=True, slots=True)
class KeyOwner:
    """What authenticating a key needs, read in one indexed query."""

    key_id: int
    key_hash: str
    last_used_at: datetime | None
    user_id: int
    user_active: bool


class ApiKeyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, key: ApiKey) -> ApiKey:
        self.session.add(key)
        await self.session.flush()
        return key

    async def take_slot(self, user_id: int, cap: int) -> bool:
        """Count one more live key for the user unless they have `cap` already (atomic)."""
        taken = await self.session.scalar(
            update(User)
            .where(User.id == user_id, User.api_key_count < cap)
            .values(api_key_count=User.api_key_count + 1)
            .returning(User.id)
            .execution_options(synchronize_session=False)
        )
        return taken is not None

    async def free_slot(self, user_id: int) -> None:
        """One live key fewer (after a revocation in the same transaction)."""
        await self.session.execute(
            update(User)
            .where(User.id == user_id)
            .values(api_key_count=User.api_key_count - 1)
            .execution_options(synchronize_session=False)
        )

    async def page_for_user(
        self, user_id: int, offset: int, limit: int
    ) -> tuple[list[ApiKey], int]:
        live = (ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
        total = await self.session.scalar(select(func.count()).select_from(ApiKey).where(*live))
        rows = await self.session.scalars(
            select(ApiKey).where(*live).order_by(ApiKey.id.desc()).offset(offset).limit(limit)
        )
        return list(rows), int(total or 0)

    async def owner_by_prefix(self, prefix: str) -> KeyOwner | None:
        """The live key with this prefix and its owner's state (never a revoked key)."""
        row = (
            await self.session.execute(
                select(ApiKey.id, ApiKey.key_hash, ApiKey.last_used_at, User.id, User.is_active)
                .join(User, User.id == ApiKey.user_id)
                .where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))
            )
        ).first()
        if row is None:
            return None
        return KeyOwner(row[0], row[1], row[2], row[3], bool(row[4]))

    async def revoke(self, user_id: int, key_id: int, now: datetime) -> bool:
        """Revoke one of the user's live keys; False when there is no such key."""
        revoked = await self.session.scalar(
            update(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=now)
            .returning(ApiKey.id)
            .execution_options(synchronize_session=False)
        )
        return revoked is not None

    async def touch(self, key_id: int, now: datetime, stale_before: datetime) -> None:
        await self.session.execute(
            update(ApiKey)
            .where(
                ApiKey.id == key_id,
                (ApiKey.last_used_at.is_(None)) | (ApiKey.last_used_at < stale_before),
            )
            .values(last_used_at=now)
            .execution_options(synchronize_session=False)
        )

"""Low-balance warnings: `credits_low` is published once each time a charge takes the balance
to or below the account's threshold (the user's own, else 10% of the last pack they bought).

Only a crossing counts (before above, after at or below), so a run of charges under the
threshold warns once, and a purchase that lifts the balance above it arms the warning again.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from sellerdesk import events
from sellerdesk.credits.repository import AlertRepository

DEFAULT_SHARE_PERCENT = 10  # of the last pack bought


@dataclass(frozen=True, slots=True)
class AlertSettings:
    enabled: bool
    threshold: int | None
    default_threshold: int | None

    @property
    def effective_threshold(self) -> int | None:
        if not self.enabled:
            return None
        return self.threshold if self.threshold is not None else self.default_threshold


async def settings_of(session: AsyncSession, user_id: int) -> AlertSettings:
    row = await AlertRepository(session).get(user_id)
    if row is None:
        return AlertSettings(True, None, None)
    return AlertSettings(row.enabled, row.threshold, row.default_threshold)


async def update(
    session: AsyncSession, user_id: int, *, enabled: bool, threshold: int | None
) -> AlertSettings:
    """Replace the user's settings (`threshold` None: back to the default)."""
    await AlertRepository(session).upsert(user_id, {"enabled": enabled, "threshold": threshold})
    return await settings_of(session, user_id)


async def remember_pack(session: AsyncSession, user_id: int, credits: int) -> None:
    """A pack was bought: its share becomes the default threshold."""
    default = credits * DEFAULT_SHARE_PERCENT // 100
    await AlertRepository(session).upsert(user_id, {"default_threshold": default})


async def after_charge(session: AsyncSession, user_id: int, before: int, after: int) -> None:
    """Publish `credits_low` when this charge crossed the account's threshold downwards."""
    if after >= before:
        return
    threshold = await AlertRepository(session).threshold(user_id)
    if threshold is not None and after <= threshold < before:
        await events.publish(
            session, "credits_low", {"user_id": user_id, "balance": after, "threshold": threshold}
        )

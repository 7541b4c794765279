"""Domain events (`low_stock`, `order_paid`, ...), recorded in the transaction that caused them."""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from sellerdesk.models import DomainEvent

log = structlog.get_logger(__name__)


async def record_event(session: AsyncSession, kind: str, payload: dict[str, Any]) -> None:
    """Store an event beside the change it describes; it exists only if that change commits."""
    session.add(DomainEvent(kind=kind, payload=payload))
    await session.flush()
    log.info("domain_event", kind=kind, **{k: v for k, v in payload.items() if k.endswith("_id")})

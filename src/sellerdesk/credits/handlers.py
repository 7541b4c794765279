"""How credits react to payment events: a credit purchase's payment moves the purchase (and
the ledger) in the payment's own transaction."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from sellerdesk import events
from sellerdesk.credits import service
from sellerdesk.events import Event

PURPOSE_PREFIX = "credit_purchase:"


@dataclass(frozen=True, slots=True)
class _Payment:
    id: int
    amount: Decimal
    refunded_amount: Decimal
    currency: str


def _purchase_payment(event: Event) -> _Payment | None:
    payload = event.payload
    if not str(payload.get("purpose", "")).startswith(PURPOSE_PREFIX):
        return None
    return _Payment(
        int(payload["payment_id"]),
        Decimal(payload["amount"]),
        Decimal(payload["refunded_amount"]),
        str(payload["currency"]),
    )


async def on_payment_succeeded(session: AsyncSession, event: Event) -> None:
    if (payment := _purchase_payment(event)) is not None:
        await service.apply_purchase_payment_succeeded(session, payment)


async def on_payment_failed(session: AsyncSession, event: Event) -> None:
    if (payment := _purchase_payment(event)) is not None:
        await service.apply_purchase_payment_failed(session, payment)


async def on_payment_refunded(session: AsyncSession, event: Event) -> None:
    if (payment := _purchase_payment(event)) is not None:
        await service.apply_purchase_refunded(session, payment)


def register() -> None:
    """Subscribe the credits domain to the payment events of credit purchases."""
    events.on("payment_succeeded", on_payment_succeeded, in_transaction=True)
    events.on("payment_failed", on_payment_failed, in_transaction=True)
    events.on("payment_refunded", on_payment_refunded, in_transaction=True)

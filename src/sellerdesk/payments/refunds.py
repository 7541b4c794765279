"""Refunds, in two phases: a `pending` row with its amount reserved and its provider key is
committed before the provider is called; the provider's answer settles it `succeeded` or
`failed` in a second transaction; `settle_pending_refunds` settles what a crash, a lost commit
or a missing answer left in between, asking the provider under the same key, so the provider
refunds at most once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sellerdesk.db import commit
from sellerdesk.errors import Conflict
from sellerdesk.events import OutboxContext
from sellerdesk.kit.idempotency import IdempotencyMismatch
from sellerdesk.kit.money import to_minor_units
from sellerdesk.models import Payment, Refund
from sellerdesk.models.base import utcnow
from sellerdesk.payments import repository as repo
from sellerdesk.payments.providers import (
    IntentRef,
    PaymentDeclined,
    PaymentProvider,
    ProviderFailed,
    RefundInfo,
)
from sellerdesk.payments.state import announce, apply_intent_state, intent_ref, provider_for, reread

log = structlog.get_logger(__name__)

SETTLE_BATCH = 100


def request_key_for(user_id: int, idempotency_key: str) -> str:
    """The request key of a refund made under a client's Idempotency-Key (keys are per user)."""
    digest = hashlib.sha256(f"{user_id}:{idempotency_key}".encode()).hexdigest()
    return f"idempotency:{digest}"


@dataclass(frozen=True, slots=True)
class _Pending:
    """A pending refund, with what calling the provider for it takes."""

    refund_id: int
    payment_id: int
    key: str
    amount: Decimal
    ref: IntentRef
    resumed: bool  # left by an earlier attempt: the provider may have made it already


async def refund(
    session: AsyncSession,
    payment: Payment,
    amount: Decimal | None,
    *,
    reason: str,
    request_key: str | None = None,
    provider: PaymentProvider | None = None,
) -> tuple[Refund, Payment]:
    """Refund `amount` (None: all that is left) through the provider, never over the capture,
    and announce it (`payment_refunded`, with `reason`), in two phases.

    1. A `pending` refund row is inserted and its amount reserved on the payment by one
       conditional UPDATE (the row lock makes concurrent refunds queue; the loser sees too
       little left: 409), with its provider key `refund:{id}`; then the caller's transaction
       is committed.
    2. The provider is called with that key and no transaction open.
    3. Its answer is applied in the caller's next transaction: `succeeded` (the reserved
       amount becomes refunded, and the refund is announced), left for the caller to commit;
       or, when the provider refused, `failed` (the amount is free again), committed here
       before the error is raised. An unknown outcome (no answer, a 5xx) raises and leaves
       the row `pending`: a retry of the same request (`request_key`) carries on with it, and
       `settle_pending_refunds` settles it otherwise, asking the provider with the same key.
    """
    provider = provider or provider_for(session)
    row, resumed = await _record_refund(
        session, payment.id, amount, reason=reason, request_key=request_key
    )
    if row.status != "pending":  # the same request, already settled
        return row, await reread(session, payment.id)
    assert row.provider_key is not None  # set with the row
    pending = _Pending(
        row.id, payment.id, row.provider_key, row.amount, intent_ref(payment), resumed
    )
    await commit(session)
    try:
        info = await _ask_provider(provider, pending)
    except Exception as exc:
        if not _refused(exc):
            log.warning("refund_left_pending", refund_id=row.id, error=type(exc).__name__)
            if isinstance(exc, ProviderFailed):
                raise ProviderFailed(
                    "The payment provider did not answer. The refund stays pending and is "
                    "completed automatically; retrying this request carries on with it.",
                    details=_about(row, "pending"),
                ) from exc
            raise
        info = None
    if info is None or not info.accepted:
        await _apply_refund_answer(session, row.id, info)
        await commit(session)  # the refusal is recorded although the request fails
        await _refresh_refunded(session, provider, payment.id, pending.ref)
        raise _refusal(row)
    await _apply_refund_answer(session, row.id, info)
    settled = await repo.get_refund(session, row.id)
    assert settled is not None
    if settled.status == "failed":  # pragma: no cover - settled meanwhile, and refused
        raise _refusal(row)
    return settled, await reread(session, payment.id)


def _about(row: Refund, status: str) -> dict[str, object]:
    return {"refund_id": row.id, "amount": str(row.amount), "status": status}


def _refusal(row: Refund) -> ProviderFailed:
    return ProviderFailed(
        "The payment provider refused the refund; nothing was refunded.",
        transient=False,
        details=_about(row, "failed"),
    )


async def _record_refund(
    session: AsyncSession,
    payment_id: int,
    amount: Decimal | None,
    *,
    reason: str,
    request_key: str | None,
) -> tuple[Refund, bool]:
    """Phase 1: the pending refund with its amount reserved, or the live refund the same
    request made before (True: resumed)."""
    if request_key is not None:
        existing = await repo.refund_for_request(session, payment_id, request_key)
        if existing is not None:
            if amount is not None and amount != existing.amount:
                raise IdempotencyMismatch(
                    f"This request already refunds {existing.amount}, not {amount}."
                )
            return existing, True
    payment = await reread(session, payment_id)
    if payment.status != "succeeded":
        raise Conflict(
            "This payment has not been captured; there is nothing to refund.",
            details={"payment_status": payment.status},
        )
    wanted = amount if amount is not None else _refundable(payment)
    if wanted <= 0:
        raise await _too_much(session, payment_id, wanted)
    refund_id = await repo.insert_refund(
        session, payment_id, wanted, reason=reason, request_key=request_key
    )
    if refund_id is None:  # the same request, made concurrently, holds the refund
        assert request_key is not None
        existing = await repo.refund_for_request(session, payment_id, request_key)
        if existing is None:  # pragma: no cover - it failed in between
            raise Conflict("This refund is being made; retry.")
        return existing, True
    if not await repo.reserve_refund(session, payment_id, wanted):
        raise await _too_much(session, payment_id, wanted)
    await repo.set_provider_key(session, refund_id, f"refund:{refund_id}")
    row = await repo.get_refund(session, refund_id)
    assert row is not None
    log.info("refund_recorded", payment_id=payment_id, refund_id=refund_id, amount=str(wanted))
    return row, False


def _refundable(payment: Payment) -> Decimal:
    return payment.amount - payment.refunded_amount - payment.refund_reserved


async def _too_much(session: AsyncSession, payment_id: int, wanted: Decimal) -> Conflict:
    current = await reread(session, payment_id)
    left = _refundable(current)
    details = {
        "requested": str(wanted),
        "captured": str(current.amount),
        "refunded": str(current.refunded_amount),
        "refundable": str(left),
    }
    if current.refund_reserved:  # refunds the provider has not answered yet hold this much
        details["pending"] = str(current.refund_reserved)
    return Conflict(
        "The refund exceeds what is left to refund."
        if left > 0
        else "This payment is already refunded in full.",
        details=details,
    )


async def _ask_provider(provider: PaymentProvider, pending: _Pending) -> RefundInfo:
    """The provider's refund for a pending row: an earlier attempt's, found by its key, or made
    now with that key (a provider that still remembers the key answers with the same refund)."""
    if pending.resumed:
        found = await provider.find_refund(pending.ref, idempotency_key=pending.key)
        if found is not None:
            return found
    return await provider.refund(
        pending.ref, amount=to_minor_units(pending.amount), idempotency_key=pending.key
    )


def _refused(exc: Exception) -> bool:
    """The provider answered no (nothing was refunded), as opposed to no answer at all."""
    return isinstance(exc, PaymentDeclined) or (
        isinstance(exc, ProviderFailed) and not exc.transient
    )


async def _apply_refund_answer(
    session: AsyncSession, refund_id: int, info: RefundInfo | None
) -> bool:
    """Phase 3: settle a pending refund by the provider's answer (None or not accepted: it
    refused). Once: a refund already settled (by a retry or the job) is left alone."""
    if info is not None and info.accepted:
        settled = await repo.settle_refund(session, refund_id, "succeeded", info.id)
        if settled is None:
            return False
        await repo.confirm_reserved(session, settled.payment_id, settled.amount)
        log.info(
            "payment_refunded",
            payment_id=settled.payment_id,
            refund_id=refund_id,
            amount=str(settled.amount),
        )
        await announce(
            session,
            settled.payment_id,
            "payment_refunded",
            refunded_now=str(settled.amount),
            reason=settled.reason,
            refund_id=refund_id,
        )
        return True
    settled = await repo.settle_refund(session, refund_id, "failed", info.id if info else None)
    if settled is None:
        return False
    await repo.release_reserved(session, settled.payment_id, settled.amount)
    log.warning("refund_refused", payment_id=settled.payment_id, refund_id=refund_id)
    return True


async def _refresh_refunded(
    session: AsyncSession, provider: PaymentProvider, payment_id: int, ref: IntentRef
) -> None:
    """After a refused refund, read the intent again: the usual reason is that the money was
    refunded at the provider meanwhile, which a webhook may have reported while our refund held
    its amount. Best effort: a failure here leaves it to the next webhook."""
    try:
        info = await provider.retrieve_intent(ref)
        await apply_intent_state(session, await reread(session, payment_id), info)
        await commit(session)
    except Exception:
        log.warning("refund_refresh_failed", payment_id=payment_id, exc_info=True)
        await session.rollback()


async def refund_rest_once(
    ctx: OutboxContext, payment_id: int, *, request_key: str, reason: str
) -> bool:
    """For outbox handlers: refund whatever is left of a captured payment under `request_key`,
    in its own transactions, so running it again carries on with the same refund (or finds
    nothing left). True when this call settled a refund."""
    async with ctx.sessionmaker() as session:
        payment = await repo.get(session, payment_id)
        if payment is None or payment.status != "succeeded":
            await session.rollback()
            return False
        if (
            await repo.refund_for_request(session, payment_id, request_key) is None
            and _refundable(payment) <= 0
        ):
            await session.rollback()
            return False
        try:
            row, _ = await refund(session, payment, None, reason=reason, request_key=request_key)
        except Conflict:  # refunded meanwhile by someone else: nothing left to do
            await session.rollback()
            return False
        await commit(session)
    return row.status == "succeeded"


async def settle_pending_refunds(
    sessionmaker: async_sessionmaker[AsyncSession],
    provider: PaymentProvider,
    *,
    older_than: timedelta,
    now: datetime | None = None,
    limit: int = SETTLE_BATCH,
) -> int:
    """Settle refunds left `pending` for longer than `older_than` (a crash, a lost commit or no
    answer between the phases): the provider is asked for the refund by its key and, when it
    never made it, asked to make it with that same key, so it refunds at most once; its answer
    settles the row like a request would. Each refund is on its own (one that fails is logged
    and tried again next run). How many were settled."""
    cutoff = (now or utcnow()) - older_than
    async with sessionmaker() as session:
        work: list[_Pending] = []
        for row in await repo.stale_pending_refunds(session, cutoff, limit):
            assert row.provider_key is not None  # set with every pending row
            payment = await reread(session, row.payment_id)
            work.append(
                _Pending(
                    row.id, payment.id, row.provider_key, row.amount, intent_ref(payment), True
                )
            )
        await session.commit()
    settled = 0
    for pending in work:
        try:
            settled += await _settle_one(sessionmaker, provider, pending)
        except Exception:
            log.exception("refund_settle_failed", refund_id=pending.refund_id)
    if settled:
        log.info("refunds_settled", count=settled)
    return settled


async def _settle_one(
    sessionmaker: async_sessionmaker[AsyncSession], provider: PaymentProvider, pending: _Pending
) -> bool:
    async with sessionmaker() as session:
        row = await repo.get_refund(session, pending.refund_id)
        await session.commit()
    if row is None or row.status != "pending":  # settled since it was listed
        return False
    try:
        info: RefundInfo | None = await _ask_provider(provider, pending)
    except Exception as exc:
        if not _refused(exc):
            raise
        info = None
    async with sessionmaker() as session:
        changed = await _apply_refund_answer(session, pending.refund_id, info)
        await commit(session)
        if changed and (info is None or not info.accepted):
            await _refresh_refunded(session, provider, pending.payment_id, pending.ref)
    return changed

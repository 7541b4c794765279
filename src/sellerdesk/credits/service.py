"""The credit ledger's rules: balances, grants, charges with their refunds, and purchases."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Protocol

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sellerdesk import events
from sellerdesk.config import Settings
from sellerdesk.credits import alerts
from sellerdesk.credits.errors import BalanceWouldBeNegative, InsufficientCredits
from sellerdesk.credits.repository import (
    ChargeRepository,
    LedgerRepository,
    PaidLookupRepository,
    PurchaseRepository,
    UsageRepository,
)
from sellerdesk.db import commit
from sellerdesk.errors import NotFound, ServiceUnavailable
from sellerdesk.kit.dates import DayRange
from sellerdesk.kit.pagination import PageParams
from sellerdesk.models import CreditLedger, CreditPurchase, CreditUsage, User
from sellerdesk.models.base import utcnow

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Balance:
    balance: int
    lifetime_purchased: int
    lifetime_spent: int


async def balance_of(session: AsyncSession, user_id: int) -> Balance:
    """The account's balance and lifetime totals; zeros for an account never used."""
    account = await LedgerRepository(session).account(user_id)
    if account is None:
        return Balance(0, 0, 0)
    return Balance(account.balance, account.lifetime_purchased, account.lifetime_spent)


async def transactions(
    session: AsyncSession, user_id: int, params: PageParams
) -> tuple[list[CreditLedger], int]:
    """One page of the account's ledger, newest first."""
    return await LedgerRepository(session).page(user_id, params.offset, params.page_size)


async def search_ledger(
    session: AsyncSession, params: PageParams, *, user_id: int | None, kind: str | None
) -> tuple[list[CreditLedger], int]:
    """One page of every account's ledger (or one account's), optionally of one kind (admin)."""
    return await LedgerRepository(session).search(
        params.offset, params.page_size, user_id=user_id, kind=kind
    )


async def usage(session: AsyncSession, user_id: int, days: DayRange) -> list[CreditUsage]:
    """The user's paid calls and net credits per day and endpoint; days without any left out."""
    return await UsageRepository(session).days(user_id, days)


async def credits_sold_per_day(session: AsyncSession, days: DayRange) -> dict[date, int]:
    """Credits purchased per UTC day in the range (days without purchases left out)."""
    return await LedgerRepository(session).purchased_per_day(days)


async def count_call(session: AsyncSession, user_id: int, endpoint: str, credits: int) -> None:
    """Count one paid call answered 200 today, with what it cost (0 for a free repeat), in the
    transaction that commits the answer: a call that fails is never counted."""
    await UsageRepository(session).count(user_id, utcnow().date(), endpoint, credits)


async def grant(
    session: AsyncSession, *, user_id: int, amount: int, reason: str, admin_id: int
) -> tuple[CreditLedger, int]:
    """Add (grant) or take away (adjustment) credits; never below 0 (409)."""
    if await session.get(User, user_id) is None:
        raise NotFound("User not found.")
    ledger = LedgerRepository(session)
    kind = "grant" if amount > 0 else "adjustment"
    entry = await ledger.apply(user_id, amount, kind=kind, reference=reason)
    if entry is None:
        raise BalanceWouldBeNegative(await ledger.balance(user_id), amount)
    log.info("credits_granted", user_id=user_id, amount=amount, admin_id=admin_id, kind=kind)
    row = await ledger.entry(entry.id)
    assert row is not None
    return row, entry.balance_after


async def grant_once(
    session: AsyncSession, *, user_id: int, amount: int, reason: str, key: str
) -> bool:
    """Grant credits under a ledger idempotency key unless that key was used (for seeding)."""
    ledger = LedgerRepository(session)
    if await ledger.has_key(user_id, key):
        return False
    return (
        await ledger.apply(user_id, amount, kind="grant", reference=reason, idempotency_key=key)
        is not None
    )


# --------------------------------------------------------------------------- charges

SWEEP_BATCH = 200


class ChargeSettledElsewhere(ServiceUnavailable):
    """The call's charge was settled by someone else while it ran (the sweep refunded it after
    CREDITS_SWEEP_AFTER_SECONDS, or a retry holding the same Idempotency-Key settled it)."""

    message = "This call took too long and its charge was settled elsewhere; retry it."

    def __init__(self) -> None:
        super().__init__(headers={"Retry-After": "1"})


@dataclass(frozen=True, slots=True)
class Charge:
    """What one paid call took.

    `credits` is what this call charged (0 for a free repeat or when it carries on with the
    charge an earlier attempt under the same Idempotency-Key made); `charge_id` is the charge
    the call answers for (None when nothing was charged), whose outcome it must record.
    """

    user_id: int
    endpoint: str
    codes: tuple[str, ...]
    credits: int
    balance: int
    charge_id: int | None
    paid_at: datetime

    @property
    def carried_on(self) -> bool:
        """This call answers for an earlier attempt's charge and charged nothing itself."""
        return self.charge_id is not None and self.credits == 0


def client_key_hash(idempotency_key: str) -> str:
    """How a client's Idempotency-Key is kept next to the money: its sha256, hex."""
    return hashlib.sha256(idempotency_key.encode()).hexdigest()


async def charge(
    session: AsyncSession,
    *,
    user_id: int,
    endpoint: str,
    codes: Sequence[str],
    unit_cost: int,
    repeat_window: int,
    reference: str,
    idempotency_key: str | None = None,
    served: bool = False,
) -> Charge:
    """Charge `unit_cost` per code not already paid for within the repeat window.

    402 (and nothing written once the caller rolls back) when the balance is short. With the
    client's `idempotency_key`, a charge an earlier attempt under that key made and did not
    settle (it is still running, or died) is carried on without charging again; otherwise the
    new charge's ledger key is `charge:idem:<sha256 of the key>:<n>`, unique per account, n
    counting the key's earlier charges (each refunded or from an expired key). `served` records
    the outcome at once (the caller commits the answer in this same transaction); otherwise
    the caller commits this transaction before serving and settles the charge afterwards.
    """
    now = utcnow()
    # Sorted: concurrent batches claim shared codes in one order, so they cannot deadlock.
    codes = tuple(sorted(set(codes)))
    charges = ChargeRepository(session)
    ledger = LedgerRepository(session)
    key_hash = client_key_hash(idempotency_key) if idempotency_key else None
    if key_hash is not None:
        earlier = await charges.unsettled_for_key(user_id, key_hash)
        if earlier is not None and earlier.endpoint == endpoint and earlier.codes == list(codes):
            log.info("credit_charge_carried_on", user_id=user_id, charge_id=earlier.id)
            balance = await ledger.balance(user_id)
            return Charge(user_id, endpoint, (), 0, balance, earlier.id, earlier.created_at)
    if repeat_window > 0 and unit_cost > 0:
        cutoff = now - timedelta(seconds=repeat_window)
        to_pay = await PaidLookupRepository(session).claim(user_id, endpoint, codes, now, cutoff)
    else:
        to_pay = list(codes)
    cost = unit_cost * len(to_pay)
    if cost == 0:
        return Charge(user_id, endpoint, (), 0, await ledger.balance(user_id), None, now)
    if key_hash is not None:
        ledger_key = f"charge:idem:{key_hash}:{await charges.count_for_key(user_id, key_hash)}"
    else:
        ledger_key = f"charge:{uuid.uuid4().hex}"
    entry = await ledger.apply(
        user_id,
        -cost,
        kind="charge",
        reference=reference,
        endpoint=endpoint,
        idempotency_key=ledger_key,
        spent=cost,
    )
    if entry is None:
        raise InsufficientCredits(await ledger.balance(user_id), cost)
    await alerts.after_charge(session, user_id, entry.balance_after + cost, entry.balance_after)
    charge_id = await charges.add(
        user_id=user_id,
        entry_id=entry.id,
        endpoint=endpoint,
        codes=list(to_pay),
        credits=cost,
        idempotency_key=key_hash,
        outcome="served" if served else None,
        created_at=now,
        settled_at=now if served else None,
    )
    return Charge(user_id, endpoint, tuple(to_pay), cost, entry.balance_after, charge_id, now)


async def charge_served(
    session: AsyncSession,
    *,
    user_id: int,
    endpoint: str,
    codes: Sequence[str],
    unit_cost: int,
    repeat_window: int,
    reference: str,
    idempotency_key: str | None = None,
) -> Charge:
    """`charge` for an answer already computed, settled and counted in the caller's usage, all
    in the caller's transaction (which commits the answer with it).

    A charge carried on from an earlier attempt under the same `idempotency_key` (one that
    charged before an upstream lookup and never finished) is settled as served here.
    """
    charged = await charge(
        session,
        user_id=user_id,
        endpoint=endpoint,
        codes=codes,
        unit_cost=unit_cost,
        repeat_window=repeat_window,
        reference=reference,
        idempotency_key=idempotency_key,
        served=True,
    )
    if charged.carried_on:
        await settle_served(session, charged)
    else:
        await count_call(session, user_id, endpoint, charged.credits)
    return charged


async def settle_served(session: AsyncSession, charge: Charge) -> None:
    """Record that the call's answer was computed (in the transaction that commits it), and
    count the call in the caller's usage with the credits its charge took (0 when free).

    Raises `ChargeSettledElsewhere` (503) when the charge already has an outcome: the sweep
    refunded it, or another attempt under the same key settled it; the answer is not given.
    """
    credits = 0
    if charge.charge_id is not None:
        settled = await ChargeRepository(session).settle(charge.charge_id, "served")
        if settled is None:
            log.warning("credit_charge_settled_elsewhere", charge_id=charge.charge_id)
            raise ChargeSettledElsewhere()
        credits = settled.credits  # also when carried on from an earlier attempt's charge
    await count_call(session, charge.user_id, charge.endpoint, credits)


async def refund_charge(session: AsyncSession, charge_id: int, reason: str) -> int | None:
    """Give back a charge that has no outcome yet (its lookup failed or found nothing, or the
    sweep found it abandoned), exactly once: the outcome moves by one conditional UPDATE and the
    refund's ledger key `refund:{entry_id}` is unique. The balance after it, or None when the
    charge was already settled (nothing changes)."""
    settled = await ChargeRepository(session).settle(charge_id, "refunded")
    if settled is None:
        return None
    # Markers before the account row, the order a charge takes them in: no deadlock.
    await PaidLookupRepository(session).release(
        settled.user_id, settled.endpoint, settled.codes, settled.created_at
    )
    entry = await LedgerRepository(session).apply(
        settled.user_id,
        settled.credits,
        kind="refund",
        reference=f"refund of #{settled.entry_id}: {reason}",
        endpoint=settled.endpoint,
        idempotency_key=f"refund:{settled.entry_id}",
        spent=-settled.credits,
    )
    assert entry is not None  # a credit never fails the non-negative check
    return entry.balance_after


async def purge_paid_lookups(
    sessionmaker: async_sessionmaker[AsyncSession], repeat_window: int
) -> int:
    """Delete repeat-window markers older than the window (a periodic job); how many went."""
    cutoff = utcnow() - timedelta(seconds=repeat_window)
    async with sessionmaker() as session:
        purged = await PaidLookupRepository(session).purge_before(cutoff)
        await session.commit()
    if purged:
        log.info("paid_lookups_purged", count=purged)
    return purged


async def sweep_unsettled_charges(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    now: datetime | None = None,
) -> int:
    """Refund every charge left without an outcome for CREDITS_SWEEP_AFTER_SECONDS (a periodic
    job); how many it refunded. Each refund is its own short transaction and applies at most
    once however many sweeps run at the same time."""
    cutoff = (now or utcnow()) - timedelta(seconds=settings.CREDITS_SWEEP_AFTER_SECONDS)
    refunded = 0
    last_id = 0
    while True:
        async with sessionmaker() as session:
            ids = await ChargeRepository(session).unsettled_before(cutoff, last_id, SWEEP_BATCH)
            await session.commit()
            for charge_id in ids:
                last_id = charge_id
                balance = await refund_charge(session, charge_id, "not settled in time")
                await commit(session)
                if balance is not None:
                    refunded += 1
                    log.warning("credit_charge_swept", charge_id=charge_id)
        if len(ids) < SWEEP_BATCH:
            break
    if refunded:
        log.info("credit_charges_swept", count=refunded)
    return refunded


# --------------------------------------------------------------------------- purchases


class PaidPayment(Protocol):
    """What a purchase needs to know of its payment (a `Payment` row, or an event's payload)."""

    @property
    def id(self) -> int: ...
    @property
    def amount(self) -> Decimal: ...
    @property
    def refunded_amount(self) -> Decimal: ...
    @property
    def currency(self) -> str: ...


async def create_purchase(
    session: AsyncSession, *, user_id: int, pack_id: int, credits: int
) -> CreditPurchase:
    """A pending purchase of a pack; credits land when its payment succeeds."""
    return await PurchaseRepository(session).add(
        CreditPurchase(user_id=user_id, pack_id=pack_id, credits=credits, status="pending")
    )


async def apply_purchase_payment_succeeded(session: AsyncSession, payment: PaidPayment) -> bool:
    """Credit the purchase paid by `payment`, exactly once however often it is called.

    The conditional status move gates the ledger entry (a concurrent second call finds the
    purchase completed); the ledger's unique `purchase:{id}` key is the backstop. True when
    this call credited it.
    """
    purchases = PurchaseRepository(session)
    purchase = await purchases.by_payment(payment.id)
    if purchase is None:
        log.warning("purchase_payment_unknown", payment_id=payment.id)
        return False
    moved = await purchases.move(purchase.id, "pending", "completed") or await purchases.move(
        purchase.id, "failed", "completed"
    )
    if not moved:
        return False
    await LedgerRepository(session).apply(
        purchase.user_id,
        purchase.credits,
        kind="purchase",
        reference=f"purchase:{purchase.id}",
        idempotency_key=f"purchase:{purchase.id}",
        purchased=purchase.credits,
    )
    await alerts.remember_pack(session, purchase.user_id, purchase.credits)
    await events.publish(
        session,
        "credits_purchased",
        {
            "user_id": purchase.user_id,
            "purchase_id": purchase.id,
            "payment_id": payment.id,
            "credits": purchase.credits,
            "amount": str(payment.amount),
            "currency": payment.currency,
        },
    )
    return True


async def apply_purchase_payment_failed(session: AsyncSession, payment: PaidPayment) -> bool:
    """Mark the purchase failed (a later success still credits it)."""
    purchases = PurchaseRepository(session)
    purchase = await purchases.by_payment(payment.id)
    if purchase is None:
        return False
    return await purchases.move(purchase.id, "pending", "failed")


async def apply_purchase_refunded(session: AsyncSession, payment: PaidPayment) -> bool:
    """Take back a refunded purchase's credits (a partial refund its share), once per amount.

    Never below 0: what was already spent is recorded as a shortfall in the ledger entry and
    the logs. A purchase refunded before it was credited just ends `refunded`, so a late
    success event cannot credit it any more. True when this call changed something.
    """
    purchases = PurchaseRepository(session)
    found = await purchases.by_payment(payment.id)
    if found is None:
        log.warning("purchase_payment_unknown", payment_id=payment.id)
        return False
    for before in ("pending", "failed"):
        if await purchases.move(found.id, before, "refunded"):
            return True
    purchase = await purchases.lock(found.id)
    if purchase is None or purchase.status != "completed":
        return False
    target = _credits_to_take_back(purchase.credits, payment)
    if target <= purchase.credits_refunded:
        return False
    due = target - purchase.credits_refunded
    await purchases.record_refund(
        purchase.id, target, "refunded" if target >= purchase.credits else "completed"
    )
    ledger = LedgerRepository(session)
    # The account row lock keeps this balance true until our UPDATE (SQLite serialises writers).
    taken = min(await ledger.lock_balance(purchase.user_id), due)
    reference = f"refund of purchase:{purchase.id}"
    if taken < due:
        reference += f"; shortfall {due - taken} credits already spent"
        log.warning(
            "purchase_refund_shortfall",
            user_id=purchase.user_id,
            purchase_id=purchase.id,
            shortfall=due - taken,
        )
    entry = await ledger.apply(
        purchase.user_id,
        -taken,
        kind="refund",
        reference=reference,
        idempotency_key=f"purchase_refund:{purchase.id}:{target}",
        purchased=-due,
    )
    assert entry is not None
    log.info("credits_purchase_refunded", user_id=purchase.user_id, purchase_id=purchase.id)
    return True


def _credits_to_take_back(credits: int, payment: PaidPayment) -> int:
    """All of them for a full refund; a partial one its share, rounded in the buyer's favour."""
    refunded, amount = payment.refunded_amount, payment.amount
    if not refunded or refunded >= amount or amount <= 0:
        return credits
    return int(credits * refunded / amount)

"""SQL for credit accounts, the ledger, paid-lookup markers, packs, prices and purchases."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Date,
    String,
    bindparam,
    delete,
    func,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from sellerdesk.db import insert_for
from sellerdesk.kit.dates import DayRange, as_date, utc_day
from sellerdesk.models import (
    CreditAccount,
    CreditAlert,
    CreditCharge,
    CreditLedger,
    CreditPack,
    CreditPaidLookup,
    CreditPrice,
    CreditPurchase,
    CreditUsage,
)
from sellerdesk.models.base import UTCDateTime, utcnow


@dataclass(frozen=True, slots=True)
class Entry:
    """A ledger entry just written."""

    id: int
    balance_after: int


class LedgerRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def ensure_account(self, user_id: int) -> None:
        # PostgreSQL's and SQLite's Insert share this API but no common type.
        stmt: Any = insert_for(self.session, CreditAccount).values(
            user_id=user_id, balance=0, lifetime_purchased=0, lifetime_spent=0, updated_at=utcnow()
        )
        await self.session.execute(stmt.on_conflict_do_nothing(index_elements=["user_id"]))

    async def account(self, user_id: int) -> CreditAccount | None:
        return await self.session.get(CreditAccount, user_id, populate_existing=True)

    async def balance(self, user_id: int) -> int:
        value = await self.session.scalar(
            select(CreditAccount.balance).where(CreditAccount.user_id == user_id)
        )
        return int(value or 0)

    async def lock_balance(self, user_id: int) -> int:
        """The balance, with the account row locked until the transaction ends (PostgreSQL)."""
        value = await self.session.scalar(
            select(CreditAccount.balance).where(CreditAccount.user_id == user_id).with_for_update()
        )
        return int(value or 0)

    async def apply(
        self,
        user_id: int,
        delta: int,
        *,
        kind: str,
        reference: str | None,
        endpoint: str | None = None,
        idempotency_key: str | None = None,
        purchased: int = 0,
        spent: int = 0,
    ) -> Entry | None:
        """Change the balance by `delta` and append its ledger entry; None if it would go below 0.

        The conditional UPDATE is the one place a balance changes: it checks and changes at once,
        so concurrent charges can never overdraw the account.
        """
        if delta > 0:
            await self.ensure_account(user_id)
        change = (
            update(CreditAccount)
            .where(CreditAccount.user_id == user_id, CreditAccount.balance + delta >= 0)
            .values(
                balance=CreditAccount.balance + delta,
                lifetime_purchased=CreditAccount.lifetime_purchased + purchased,
                lifetime_spent=CreditAccount.lifetime_spent + spent,
                updated_at=utcnow(),
            )
            .returning(CreditAccount.balance)
        )
        entry = {
            "user_id": user_id,
            "amount": delta,
            "kind": kind,
            "reference": reference[:255] if reference else None,
            "endpoint": endpoint,
            "idempotency_key": idempotency_key,
            "created_at": utcnow(),
        }
        if self.session.get_bind().dialect.name == "postgresql":
            return await self._apply_in_one_statement(change, entry)
        balance = await self.session.scalar(change.execution_options(synchronize_session=False))
        if balance is None:
            return None
        entry_id = await self.session.scalar(
            insert(CreditLedger).values(**entry, balance_after=balance).returning(CreditLedger.id)
        )
        assert entry_id is not None
        return Entry(id=int(entry_id), balance_after=int(balance))

    async def _apply_in_one_statement(self, change: Any, entry: dict[str, Any]) -> Entry | None:
        # The UPDATE as a CTE feeding the ledger INSERT: one round trip on the hot path, and no
        # ledger row at all when the UPDATE's condition refuses the change.
        changed = change.cte("changed")
        columns = [*entry, "balance_after"]
        values = [literal(v, CreditLedger.__table__.c[k].type) for k, v in entry.items()]
        row = (
            await self.session.execute(
                insert(CreditLedger)
                .from_select(columns, select(*values, changed.c.balance))
                .returning(CreditLedger.id, CreditLedger.balance_after)
            )
        ).first()
        return Entry(id=int(row[0]), balance_after=int(row[1])) if row else None

    async def page(self, user_id: int, offset: int, limit: int) -> tuple[list[CreditLedger], int]:
        total = await self.session.scalar(
            select(func.count()).select_from(CreditLedger).where(CreditLedger.user_id == user_id)
        )
        rows = await self.session.scalars(
            select(CreditLedger)
            .where(CreditLedger.user_id == user_id)
            .order_by(CreditLedger.id.desc())
            .offset(offset)
            .limit(limit)
        )
        return list(rows), int(total or 0)

    async def has_key(self, user_id: int, idempotency_key: str) -> bool:
        found = await self.session.scalar(
            select(CreditLedger.id).where(
                CreditLedger.user_id == user_id, CreditLedger.idempotency_key == idempotency_key
            )
        )
        return found is not None

    async def entry(self, entry_id: int) -> CreditLedger | None:
        return await self.session.get(CreditLedger, entry_id)

    async def search(
        self, offset: int, limit: int, *, user_id: int | None, kind: str | None
    ) -> tuple[list[CreditLedger], int]:
        """Entries of every account (or one), optionally of one kind, newest first."""
        where = []
        if user_id is not None:
            where.append(CreditLedger.user_id == user_id)
        if kind is not None:
            where.append(CreditLedger.kind == kind)
        total = await self.session.scalar(
            select(func.count()).select_from(CreditLedger).where(*where)
        )
        rows = await self.session.scalars(
            select(CreditLedger)
            .where(*where)
            .order_by(CreditLedger.id.desc())
            .offset(offset)
            .limit(limit)
        )
        return list(rows), int(total or 0)

    async def purchased_per_day(self, days: DayRange) -> dict[date, int]:
        """Credits bought per UTC day (purchase entries), served by their partial index."""
        day = utc_day(CreditLedger.created_at)
        rows = await self.session.execute(
            select(day, func.sum(CreditLedger.amount))
            .where(
                CreditLedger.kind == "purchase",
                CreditLedger.created_at >= days.start,
                CreditLedger.created_at < days.end,
            )
            .group_by(day)
        )
        return {as_date(d): int(total or 0) for d, total in rows}


# The same SQL on PostgreSQL and SQLite (3.35+); SQLAlchemy's ON CONFLICT construct is not
# cacheable, and compiling it on every paid call costs more than the round trip.
_CLAIM_ONE = text(
    "INSERT INTO credit_paid_lookup (user_id, endpoint, code, paid_at) "
    "VALUES (:user_id, :endpoint, :code, :now) "
    "ON CONFLICT (user_id, endpoint, code) DO UPDATE SET paid_at = excluded.paid_at "
    "WHERE credit_paid_lookup.paid_at < :cutoff "
    "RETURNING code"
).bindparams(
    bindparam("user_id", type_=BigInteger()),
    bindparam("now", type_=UTCDateTime()),
    bindparam("cutoff", type_=UTCDateTime()),
)

# A batch on PostgreSQL: the codes as one array parameter, so the statement is compiled once
# and cached (a VALUES list of 1,000 rows was 4,000 bind parameters compiled on every call).
# The rows are inserted in the array's order (sorted by the caller: no deadlock).
_CLAIM_MANY = text(
    "INSERT INTO credit_paid_lookup (user_id, endpoint, code, paid_at) "
    "SELECT CAST(:user_id AS bigint), CAST(:endpoint AS text), code, CAST(:now AS timestamptz) "
    "FROM unnest(CAST(:codes AS text[])) WITH ORDINALITY AS c(code, n) "
    "ORDER BY n "
    "ON CONFLICT (user_id, endpoint, code) DO UPDATE SET paid_at = excluded.paid_at "
    "WHERE credit_paid_lookup.paid_at < :cutoff "
    "RETURNING code"
).bindparams(
    bindparam("user_id", type_=BigInteger()),
    bindparam("codes", type_=ARRAY(String())),
    bindparam("now", type_=UTCDateTime()),
    bindparam("cutoff", type_=UTCDateTime()),
)


class PaidLookupRepository:
    """Markers of codes an account has paid for, behind the repeat window."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def claim(
        self,
        user_id: int,
        endpoint: str,
        codes: Sequence[str],
        now: datetime,
        cutoff: datetime,
    ) -> list[str]:
        """Mark `codes` paid at `now` unless paid after `cutoff`; the codes newly marked.

        One statement: a concurrent claim of the same code waits on the first one's row and then
        sees it, so one answer is paid for once.
        """
        if not codes:
            return []
        if len(codes) == 1:  # the hot path: a statement compiled once and cached
            params = {"user_id": user_id, "endpoint": endpoint, "code": codes[0], "now": now}
            rows = await self.session.execute(_CLAIM_ONE, {**params, "cutoff": cutoff})
            return [row[0] for row in rows]
        if self.session.get_bind().dialect.name == "postgresql":
            params = {"user_id": user_id, "endpoint": endpoint, "codes": list(codes), "now": now}
            rows = await self.session.execute(_CLAIM_MANY, {**params, "cutoff": cutoff})
            return [row[0] for row in rows]
        stmt: Any = insert_for(self.session, CreditPaidLookup).values(
            [{"user_id": user_id, "endpoint": endpoint, "code": c, "paid_at": now} for c in codes]
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["user_id", "endpoint", "code"],
            set_={"paid_at": stmt.excluded.paid_at},
            where=CreditPaidLookup.paid_at < cutoff,
        ).returning(CreditPaidLookup.code)
        return list((await self.session.scalars(stmt)).all())

    async def release(
        self, user_id: int, endpoint: str, codes: Sequence[str], paid_at: datetime
    ) -> None:
        """Forget markers this charge wrote (its lookup failed, so the next one pays)."""
        await self.session.execute(
            delete(CreditPaidLookup)
            .where(
                CreditPaidLookup.user_id == user_id,
                CreditPaidLookup.endpoint == endpoint,
                CreditPaidLookup.code.in_(list(codes)),
                CreditPaidLookup.paid_at == paid_at,
            )
            .execution_options(synchronize_session=False)
        )

    async def purge_before(self, cutoff: datetime) -> int:
        """Delete markers older than the repeat window (they no longer make anything free)."""
        result = await self.session.execute(
            delete(CreditPaidLookup)
            .where(CreditPaidLookup.paid_at < cutoff)
            .execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0) or 0)


# One answered paid call: a cached statement (the same SQL on both dialects), on the hot path.
_COUNT_CALL = text(
    "INSERT INTO credit_usage (user_id, day, endpoint, calls, credits) "
    "VALUES (:user_id, :day, :endpoint, 1, :credits) "
    "ON CONFLICT (user_id, day, endpoint) DO UPDATE "
    "SET calls = credit_usage.calls + 1, credits = credit_usage.credits + excluded.credits"
).bindparams(
    bindparam("user_id", type_=BigInteger()),
    bindparam("day", type_=Date()),
    bindparam("credits", type_=BigInteger()),
)


class UsageRepository:
    """Paid calls answered and their credits, per user, UTC day and endpoint."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def count(self, user_id: int, day: date, endpoint: str, credits: int) -> None:
        """One more call on `day` (credits may be 0: a free repeat)."""
        params = {"user_id": user_id, "day": day, "endpoint": endpoint, "credits": credits}
        await self.session.execute(_COUNT_CALL, params)

    async def days(self, user_id: int, days: DayRange) -> list[CreditUsage]:
        """The user's rows in the range, by day then endpoint (the primary key serves it)."""
        rows = await self.session.scalars(
            select(CreditUsage)
            .where(
                CreditUsage.user_id == user_id,
                CreditUsage.day >= days.first,
                CreditUsage.day <= days.last,
            )
            .order_by(CreditUsage.day, CreditUsage.endpoint)
        )
        return list(rows)


@dataclass(frozen=True, slots=True)
class SettledCharge:
    """A charge whose outcome this transaction just moved from NULL."""

    id: int
    user_id: int
    entry_id: int
    endpoint: str
    codes: list[str]
    credits: int
    created_at: datetime


class ChargeRepository:
    """Paid calls' charges and their outcomes; an outcome moves once, from NULL."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, **values: Any) -> int:
        """Insert a charge row (one statement, no ORM bookkeeping on the hot path); its id."""
        charge_id = await self.session.scalar(
            insert(CreditCharge).values(**values).returning(CreditCharge.id)
        )
        assert charge_id is not None
        return int(charge_id)

    async def unsettled_for_key(self, user_id: int, key_hash: str) -> CreditCharge | None:
        """The newest charge under this client key that has no outcome yet."""
        return await self.session.scalar(
            select(CreditCharge)
            .where(
                CreditCharge.user_id == user_id,
                CreditCharge.idempotency_key == key_hash,
                CreditCharge.outcome.is_(None),
            )
            .order_by(CreditCharge.id.desc())
            .limit(1)
        )

    async def count_for_key(self, user_id: int, key_hash: str) -> int:
        value = await self.session.scalar(
            select(func.count())
            .select_from(CreditCharge)
            .where(CreditCharge.user_id == user_id, CreditCharge.idempotency_key == key_hash)
        )
        return int(value or 0)

    async def settle(self, charge_id: int, outcome: str) -> SettledCharge | None:
        """Record `outcome` unless the charge already has one; the charge, or None."""
        row = (
            await self.session.execute(
                update(CreditCharge)
                .where(CreditCharge.id == charge_id, CreditCharge.outcome.is_(None))
                .values(outcome=outcome, settled_at=utcnow())
                .returning(
                    CreditCharge.id,
                    CreditCharge.user_id,
                    CreditCharge.entry_id,
                    CreditCharge.endpoint,
                    CreditCharge.codes,
                    CreditCharge.credits,
                    CreditCharge.created_at,
                )
                .execution_options(synchronize_session=False)
            )
        ).first()
        if row is None:
            return None
        return SettledCharge(
            int(row[0]), int(row[1]), int(row[2]), row[3], list(row[4]), int(row[5]), row[6]
        )

    async def unsettled_before(self, cutoff: datetime, after_id: int, limit: int) -> list[int]:
        """Ids of charges without an outcome created before `cutoff`, by id, after `after_id`."""
        rows = await self.session.scalars(
            select(CreditCharge.id)
            .where(
                CreditCharge.outcome.is_(None),
                CreditCharge.created_at < cutoff,
                CreditCharge.id > after_id,
            )
            .order_by(CreditCharge.id)
            .limit(limit)
        )
        return list(rows)


class CatalogRepository:
    """Packs and prices."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def packs(self, *, active_only: bool) -> list[CreditPack]:
        stmt = select(CreditPack).order_by(CreditPack.credits, CreditPack.id)
        if active_only:
            stmt = stmt.where(CreditPack.is_active.is_(True))
        return list(await self.session.scalars(stmt))

    async def pack(self, pack_id: int) -> CreditPack | None:
        return await self.session.get(CreditPack, pack_id)

    async def add_pack(self, pack: CreditPack) -> CreditPack:
        self.session.add(pack)
        await self.session.flush()
        return pack

    async def prices(self) -> list[CreditPrice]:
        return list(await self.session.scalars(select(CreditPrice).order_by(CreditPrice.endpoint)))

    async def price(self, endpoint: str) -> CreditPrice | None:
        return await self.session.get(CreditPrice, endpoint)


class PurchaseRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, purchase: CreditPurchase) -> CreditPurchase:
        self.session.add(purchase)
        await self.session.flush()
        return purchase

    async def by_key(self, user_id: int, key_hash: str) -> CreditPurchase | None:
        """The purchase a user started under an Idempotency-Key (its sha256)."""
        return await self.session.scalar(
            select(CreditPurchase).where(
                CreditPurchase.user_id == user_id, CreditPurchase.idempotency_key == key_hash
            )
        )

    async def by_payment(self, payment_id: int) -> CreditPurchase | None:
        return await self.session.scalar(
            select(CreditPurchase).where(CreditPurchase.payment_id == payment_id)
        )

    async def lock(self, purchase_id: int) -> CreditPurchase | None:
        """The purchase as it is now, its row locked until the transaction ends (PostgreSQL)."""
        return await self.session.scalar(
            select(CreditPurchase)
            .where(CreditPurchase.id == purchase_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )

    async def record_refund(self, purchase_id: int, credits_refunded: int, status: str) -> None:
        await self.session.execute(
            update(CreditPurchase)
            .where(CreditPurchase.id == purchase_id)
            .values(credits_refunded=credits_refunded, status=status, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )

    async def move(self, purchase_id: int, from_status: str, to_status: str) -> bool:
        """Move a purchase along its states; False when another request already did."""
        moved = await self.session.scalar(
            update(CreditPurchase)
            .where(CreditPurchase.id == purchase_id, CreditPurchase.status == from_status)
            .values(status=to_status, updated_at=utcnow())
            .returning(CreditPurchase.id)
            .execution_options(synchronize_session=False)
        )
        return moved is not None


class AlertRepository:
    """Low-balance alert settings, one row per account that has any."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, user_id: int) -> CreditAlert | None:
        return await self.session.get(CreditAlert, user_id, populate_existing=True)

    async def threshold(self, user_id: int) -> int | None:
        """The threshold in force (the user's, else the default); None when off or unknown."""
        row = (
            await self.session.execute(
                select(
                    CreditAlert.enabled,
                    func.coalesce(CreditAlert.threshold, CreditAlert.default_threshold),
                ).where(CreditAlert.user_id == user_id)
            )
        ).one_or_none()
        if row is None or not row[0] or row[1] is None:
            return None
        return int(row[1])

    async def upsert(self, user_id: int, values: dict[str, Any]) -> None:
        """Create the account's row or update the given columns of it."""
        stmt: Any = insert_for(self.session, CreditAlert).values(
            user_id=user_id, updated_at=utcnow(), **values
        )
        await self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=["user_id"], set_={**values, "updated_at": utcnow()}
            )
        )

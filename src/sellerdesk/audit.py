"""`sellerdesk check`: audit the database's invariants (stock, orders, credits, payments).

Every check is one or two aggregate queries (no Python loop over rows), all run in one
read-only transaction so they see one consistent state: REPEATABLE READ on PostgreSQL; on
SQLite the transaction holds the write lock (every transaction does, see `db.py`) for the
audit's duration, so writers wait, briefly. Each violation names its check and its subject:

    stock_movements: product 12: stock is 7 but its movements add up to 5

The checks (`CHECKS`, in this order):
- stock_negative: no product's stock is below 0.
- stock_movements: a product's stock equals the sum of its movements (its opening stock is an
  `initial` or `import` movement written with the product, so no other starting point).
- order_lines: each line's total is its unit price times its quantity.
- order_total: an order's total equals the sum of its lines' totals (the model has no
  adjustment lines yet; they would be added here).
- order_stock: an order took its lines' stock once and gave it back at most once: the net of
  the movements tied to it is 0 for a cancelled order, minus its quantities otherwise. An event
  (webhook, expiry, cancel) applied twice shows up here as stock returned twice.
- credit_balance: no balance is below 0, and each account's balance equals the sum of its
  ledger (a ledger without an account must sum to 0).
- ledger_chain: each entry's `balance_after` is the running sum of the account's ledger up to
  it (the first broken entry of each account is reported).
- idempotency_key_charged_twice: no client `Idempotency-Key` holds two charges that were not
  refunded within its 24 h life, and no ledger key appears twice in one account.
- charge_refunds: a paid call's charge matches its ledger entry, and it has its refund entry
  (`refund:{entry_id}`) exactly when its outcome is `refunded`.
- charge_unsettled: no charge is older than CREDITS_SWEEP_AFTER_SECONDS without an outcome
  (the sweep has not run, or cannot).
- purchase_credits: a credit purchase is credited once, exactly when it is completed (or was
  completed before a refund took its credits back), and never takes back more than it gave.
  A payment event applied twice would show up here as credits given twice.
- payment_refunds: a payment's refunded amount plus what pending refunds reserve lies in
  0..captured (the amount of a succeeded payment, 0 otherwise); its succeeded refund rows add
  up to its refunded amount (refunds made in the provider's dashboard get a `provider` row when
  they are reported), and its pending rows to its reserved amount.
- refund_unsettled: no refund is still `pending` after REFUND_SETTLE_AFTER_SECONDS (its
  provider call never answered and the settle job has not run, or cannot).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import String, and_, case, cast, func, literal, or_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sellerdesk.kit.idempotency import KEY_TTL
from sellerdesk.models import (
    CreditAccount,
    CreditCharge,
    CreditLedger,
    CreditPurchase,
    Order,
    OrderItem,
    Payment,
    Product,
    Refund,
    StockMovement,
)
from sellerdesk.models.base import utcnow

# Money sums on SQLite are binary floats: differences below half a cent are rounding.
_CENT = 0.005


@dataclass(frozen=True, slots=True)
class Violation:
    check: str
    subject: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        return f"{self.check}: {self.subject}: {self.message}"


@dataclass(frozen=True, slots=True)
class Context:
    now: datetime
    sweep_after: timedelta
    refund_settle_after: timedelta = timedelta(seconds=300)


Check = Callable[[AsyncConnection, Context], Awaitable[list[Violation]]]


@dataclass(frozen=True, slots=True)
class Report:
    checks: tuple[str, ...]
    violations: list[Violation]

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary(self) -> str:
        if self.ok:
            return f"sellerdesk check: no violations ({len(self.checks)} checks)"
        failed = len({v.check for v in self.violations})
        return (
            f"sellerdesk check: {len(self.violations)} violation"
            f"{'s' if len(self.violations) != 1 else ''} in {failed} of {len(self.checks)} checks"
        )

    def as_json(self) -> dict[str, Any]:
        counts = {name: 0 for name in self.checks}
        for violation in self.violations:
            counts[violation.check] += 1
        return {
            "ok": self.ok,
            "violations": [asdict(v) for v in self.violations],
            "checks": [{"name": name, "violations": n} for name, n in counts.items()],
            "summary": self.summary(),
        }


def _money(value: Any) -> str:
    return str(Decimal(str(value or 0)).quantize(Decimal("0.01")))


def _differs(a: Any, b: Any) -> Any:
    return func.abs(a - b) > _CENT


# --------------------------------------------------------------------------- stock


async def stock_negative(conn: AsyncConnection, _: Context) -> list[Violation]:
    rows = await conn.execute(
        select(Product.id, Product.stock_quantity)
        .where(Product.stock_quantity < 0)
        .order_by(Product.id)
    )
    return [
        Violation("stock_negative", f"product {pid}", f"stock is {stock}", {"stock": stock})
        for pid, stock in rows
    ]


async def stock_movements(conn: AsyncConnection, _: Context) -> list[Violation]:
    moved = (
        select(StockMovement.product_id, func.sum(StockMovement.delta).label("total"))
        .group_by(StockMovement.product_id)
        .subquery()
    )
    total = func.coalesce(moved.c.total, 0)
    rows = await conn.execute(
        select(Product.id, Product.stock_quantity, total)
        .outerjoin(moved, moved.c.product_id == Product.id)
        .where(Product.stock_quantity != total)
        .order_by(Product.id)
    )
    return [
        Violation(
            "stock_movements",
            f"product {pid}",
            f"stock is {stock} but its movements add up to {int(net)}",
            {"stock": stock, "movements": int(net)},
        )
        for pid, stock, net in rows
    ]


# --------------------------------------------------------------------------- orders


async def order_lines(conn: AsyncConnection, _: Context) -> list[Violation]:
    rows = await conn.execute(
        select(
            OrderItem.order_id,
            OrderItem.id,
            OrderItem.quantity,
            OrderItem.unit_price,
            OrderItem.line_total,
        )
        .where(_differs(OrderItem.line_total, OrderItem.unit_price * OrderItem.quantity))
        .order_by(OrderItem.id)
    )
    return [
        Violation(
            "order_lines",
            f"order {order_id} line {line_id}",
            f"line total {_money(line_total)} is not {quantity} x {_money(unit_price)}",
            {"line_total": _money(line_total), "quantity": quantity, "unit": _money(unit_price)},
        )
        for order_id, line_id, quantity, unit_price, line_total in rows
    ]


async def order_total(conn: AsyncConnection, _: Context) -> list[Violation]:
    lines = (
        select(OrderItem.order_id, func.sum(OrderItem.line_total).label("total"))
        .group_by(OrderItem.order_id)
        .subquery()
    )
    total = func.coalesce(lines.c.total, 0)
    rows = await conn.execute(
        select(Order.id, Order.total_amount, total)
        .outerjoin(lines, lines.c.order_id == Order.id)
        .where(_differs(Order.total_amount, total))
        .order_by(Order.id)
    )
    return [
        Violation(
            "order_total",
            f"order {oid}",
            f"total is {_money(amount)} but its lines add up to {_money(lines_total)}",
            {"total": _money(amount), "lines": _money(lines_total)},
        )
        for oid, amount, lines_total in rows
    ]


async def order_stock(conn: AsyncConnection, _: Context) -> list[Violation]:
    quantities = (
        select(OrderItem.order_id, func.sum(OrderItem.quantity).label("quantity"))
        .group_by(OrderItem.order_id)
        .subquery()
    )
    moved = (
        select(StockMovement.order_id, func.sum(StockMovement.delta).label("net"))
        .where(StockMovement.order_id.is_not(None))
        .group_by(StockMovement.order_id)
        .subquery()
    )
    net = func.coalesce(moved.c.net, 0)
    expected = case(
        (Order.status == "cancelled", 0), else_=-func.coalesce(quantities.c.quantity, 0)
    )
    rows = await conn.execute(
        select(Order.id, Order.status, net, expected)
        .outerjoin(quantities, quantities.c.order_id == Order.id)
        .outerjoin(moved, moved.c.order_id == Order.id)
        .where(net != expected)
        .order_by(Order.id)
    )
    return [
        Violation(
            "order_stock",
            f"order {oid}",
            f"{status} order's stock movements net {int(got)}, expected {int(want)}",
            {"status": status, "net": int(got), "expected": int(want)},
        )
        for oid, status, got, want in rows
    ]


# --------------------------------------------------------------------------- credits


async def credit_balance(conn: AsyncConnection, _: Context) -> list[Violation]:
    sums = (
        select(CreditLedger.user_id, func.sum(CreditLedger.amount).label("total"))
        .group_by(CreditLedger.user_id)
        .subquery()
    )
    total = func.coalesce(sums.c.total, 0)
    with_account = await conn.execute(
        select(CreditAccount.user_id, CreditAccount.balance, total)
        .outerjoin(sums, sums.c.user_id == CreditAccount.user_id)
        .where(or_(CreditAccount.balance != total, CreditAccount.balance < 0))
        .order_by(CreditAccount.user_id)
    )
    without_account = await conn.execute(
        select(sums.c.user_id, sums.c.total)
        .outerjoin(CreditAccount, CreditAccount.user_id == sums.c.user_id)
        .where(CreditAccount.user_id.is_(None), sums.c.total != 0)
        .order_by(sums.c.user_id)
    )
    found = [
        Violation(
            "credit_balance",
            f"user {uid}",
            f"balance is {bal} but the ledger adds up to {int(net)}"
            if bal != net
            else f"balance is {bal}",
            {"balance": bal, "ledger": int(net)},
        )
        for uid, bal, net in with_account
    ]
    found += [
        Violation(
            "credit_balance",
            f"user {uid}",
            f"no account but the ledger adds up to {int(net)}",
            {"balance": None, "ledger": int(net)},
        )
        for uid, net in without_account
    ]
    return found


async def ledger_chain(conn: AsyncConnection, _: Context) -> list[Violation]:
    running = func.sum(CreditLedger.amount).over(
        partition_by=CreditLedger.user_id, order_by=CreditLedger.id
    )
    chain = select(
        CreditLedger.id, CreditLedger.user_id, CreditLedger.balance_after, running.label("sum")
    ).subquery()
    first_broken = (
        select(chain.c.user_id, func.min(chain.c.id).label("id"))
        .where(chain.c.balance_after != chain.c.sum)
        .group_by(chain.c.user_id)
        .subquery()
    )
    rows = await conn.execute(
        select(chain.c.user_id, chain.c.id, chain.c.balance_after, chain.c.sum)
        .join(first_broken, first_broken.c.id == chain.c.id)
        .order_by(chain.c.user_id)
    )
    return [
        Violation(
            "ledger_chain",
            f"user {uid} entry {eid}",
            f"balance_after is {after} but the ledger up to it adds up to {int(net)}",
            {"balance_after": after, "running_sum": int(net)},
        )
        for uid, eid, after, net in rows
    ]


async def idempotency_key_charged_twice(conn: AsyncConnection, _: Context) -> list[Violation]:
    found: list[Violation] = []
    reused = await conn.execute(
        select(CreditLedger.user_id, CreditLedger.idempotency_key, func.count())
        .where(CreditLedger.idempotency_key.is_not(None))
        .group_by(CreditLedger.user_id, CreditLedger.idempotency_key)
        .having(func.count() > 1)
    )
    found += [
        Violation(
            "idempotency_key_charged_twice",
            f"user {uid}",
            f"ledger key {key!r} is used by {n} entries",
            {"ledger_key": key, "entries": n},
        )
        for uid, key, n in reused
    ]
    # A key's non-refunded charges: more than one is only right when they lie more than a key's
    # life apart (a key is a new key after 24 h). Candidates first, by aggregate; their few
    # timestamps are compared here.
    kept = and_(
        CreditCharge.idempotency_key.is_not(None),
        or_(CreditCharge.outcome.is_(None), CreditCharge.outcome != "refunded"),
    )
    candidates = (
        select(CreditCharge.user_id, CreditCharge.idempotency_key)
        .where(kept)
        .group_by(CreditCharge.user_id, CreditCharge.idempotency_key)
        .having(func.count() > 1)
        .subquery()
    )
    rows = await conn.execute(
        select(
            CreditCharge.user_id,
            CreditCharge.idempotency_key,
            CreditCharge.id,
            CreditCharge.created_at,
        )
        .join(
            candidates,
            and_(
                candidates.c.user_id == CreditCharge.user_id,
                candidates.c.idempotency_key == CreditCharge.idempotency_key,
            ),
        )
        .where(kept)
        .order_by(CreditCharge.user_id, CreditCharge.idempotency_key, CreditCharge.created_at)
    )
    previous: tuple[int, str, int, datetime] | None = None
    for uid, key, charge_id, created_at in rows:
        assert key is not None
        if previous and previous[:2] == (uid, key) and created_at - previous[3] < KEY_TTL:
            found.append(
                Violation(
                    "idempotency_key_charged_twice",
                    f"user {uid}",
                    f"Idempotency-Key sha256 {key[:12]}… charged by charges {previous[2]} and "
                    f"{charge_id}, neither refunded, within its 24 h life",
                    {"key_sha256": key, "charges": [previous[2], charge_id]},
                )
            )
        previous = (uid, key, charge_id, created_at)
    return found


async def charge_refunds(conn: AsyncConnection, _: Context) -> list[Violation]:
    entry = CreditLedger.__table__.alias("entry")
    refund = CreditLedger.__table__.alias("refund")
    refund_key = literal("refund:") + cast(CreditCharge.entry_id, String)
    rows = await conn.execute(
        select(
            CreditCharge.id,
            CreditCharge.user_id,
            CreditCharge.outcome,
            CreditCharge.credits,
            entry.c.amount,
            entry.c.kind,
            refund.c.id,
        )
        .outerjoin(entry, entry.c.id == CreditCharge.entry_id)
        .outerjoin(
            refund,
            and_(refund.c.user_id == CreditCharge.user_id, refund.c.idempotency_key == refund_key),
        )
        .where(
            or_(
                entry.c.id.is_(None),
                entry.c.kind != "charge",
                entry.c.amount != -CreditCharge.credits,
                and_(CreditCharge.outcome == "refunded", refund.c.id.is_(None)),
                and_(
                    or_(CreditCharge.outcome.is_(None), CreditCharge.outcome != "refunded"),
                    refund.c.id.is_not(None),
                ),
            )
        )
        .order_by(CreditCharge.id)
    )
    found: list[Violation] = []
    for charge_id, uid, outcome, credits, amount, kind, refund_id in rows:
        if kind != "charge" or amount != -credits:
            message = f"charge of {credits} credits but its ledger entry is {kind} {amount}"
        elif refund_id is None:
            message = "refunded but has no refund entry"
        else:
            message = f"has refund entry {refund_id} but its outcome is {outcome or 'unsettled'}"
        found.append(
            Violation(
                "charge_refunds",
                f"user {uid} charge {charge_id}",
                message,
                {"outcome": outcome, "refund_entry": refund_id},
            )
        )
    return found


async def charge_unsettled(conn: AsyncConnection, context: Context) -> list[Violation]:
    horizon = context.now - context.sweep_after
    rows = await conn.execute(
        select(CreditCharge.id, CreditCharge.user_id, CreditCharge.credits, CreditCharge.created_at)
        .where(CreditCharge.outcome.is_(None), CreditCharge.created_at < horizon)
        .order_by(CreditCharge.id)
    )
    return [
        Violation(
            "charge_unsettled",
            f"user {uid} charge {cid}",
            f"{credits} credits charged at {created:%Y-%m-%dT%H:%M:%SZ} with no outcome "
            f"after {int(context.sweep_after.total_seconds())} s (is the sweep running?)",
            {"credits": credits, "created_at": created.isoformat()},
        )
        for cid, uid, credits, created in rows
    ]


async def purchase_credits(conn: AsyncConnection, _: Context) -> list[Violation]:
    purchase_key = literal("purchase:") + cast(CreditPurchase.id, String)
    credited = (
        select(func.coalesce(func.sum(CreditLedger.amount), 0))
        .where(
            CreditLedger.user_id == CreditPurchase.user_id,
            CreditLedger.kind == "purchase",
            CreditLedger.idempotency_key == purchase_key,
        )
        .scalar_subquery()
    )
    should = or_(
        CreditPurchase.status == "completed",
        and_(CreditPurchase.status == "refunded", CreditPurchase.credits_refunded > 0),
    )
    expected = case((should, CreditPurchase.credits), else_=0)
    given = credited.label("credited")
    rows = await conn.execute(
        select(
            CreditPurchase.id,
            CreditPurchase.user_id,
            CreditPurchase.status,
            CreditPurchase.credits,
            CreditPurchase.credits_refunded,
            given,
        )
        .where(
            or_(
                credited != expected,
                CreditPurchase.credits_refunded > CreditPurchase.credits,
                CreditPurchase.credits_refunded < 0,
            )
        )
        .order_by(CreditPurchase.id)
    )
    return [
        Violation(
            "purchase_credits",
            f"purchase {pid}",
            f"{status} purchase of {credits} credits (taken back {taken}) credited {int(got)}",
            {"status": status, "credits": credits, "credited": int(got), "taken_back": taken},
        )
        for pid, _uid, status, credits, taken, got in rows
    ]


# --------------------------------------------------------------------------- payments


async def payment_refunds(conn: AsyncConnection, _: Context) -> list[Violation]:
    def total(status: str) -> Any:
        return func.sum(case((Refund.status == status, Refund.amount), else_=0))

    by_payment = (
        select(Refund.payment_id, total("succeeded").label("done"), total("pending").label("held"))
        .group_by(Refund.payment_id)
        .subquery()
    )
    done, held = func.coalesce(by_payment.c.done, 0), func.coalesce(by_payment.c.held, 0)
    captured = case((Payment.status == "succeeded", Payment.amount), else_=0)
    refunded, reserved = Payment.refunded_amount, Payment.refund_reserved
    rows = await conn.execute(
        select(Payment.id, Payment.status, Payment.amount, refunded, reserved, done, held)
        .outerjoin(by_payment, by_payment.c.payment_id == Payment.id)
        .where(
            or_(
                refunded < 0,
                reserved < 0,
                refunded + reserved - captured > _CENT,
                _differs(done, refunded),
                _differs(held, reserved),
            )
        )
        .order_by(Payment.id)
    )
    found: list[Violation] = []
    for pid, status, *amounts in rows:
        names = ("amount", "refunded", "reserved", "succeeded_rows", "pending_rows")
        f = dict(zip(names, map(_money, amounts), strict=True))
        cap = f["amount"] if status == "succeeded" else "0.00"
        taken = Decimal(f["refunded"]) + Decimal(f["reserved"])
        checks = (
            (
                min(Decimal(f["refunded"]), Decimal(f["reserved"])) < 0 or taken > Decimal(cap),
                f"refunded {f['refunded']} and {f['reserved']} pending of a {status} payment "
                f"of {f['amount']} (captured {cap})",
            ),
            (
                f["succeeded_rows"] != f["refunded"],
                f"succeeded refunds add up to {f['succeeded_rows']}, not {f['refunded']}",
            ),
            (
                f["pending_rows"] != f["reserved"],
                f"pending refunds add up to {f['pending_rows']}, not the {f['reserved']} reserved",
            ),
        )
        message = "; ".join(text for bad, text in checks if bad)
        found.append(
            Violation("payment_refunds", f"payment {pid}", message, {"status": status, **f})
        )
    return found


async def refund_unsettled(conn: AsyncConnection, context: Context) -> list[Violation]:
    horizon = context.now - context.refund_settle_after
    rows = await conn.execute(
        select(Refund.id, Refund.payment_id, Refund.amount, Refund.created_at)
        .where(Refund.status == "pending", Refund.created_at < horizon)
        .order_by(Refund.id)
    )
    return [
        Violation(
            "refund_unsettled",
            f"payment {pid} refund {rid}",
            f"refund of {_money(amount)} recorded at {created:%Y-%m-%dT%H:%M:%SZ} still pending "
            f"after {int(context.refund_settle_after.total_seconds())} s "
            "(is the settle job running?)",
            {"amount": _money(amount), "created_at": created.isoformat()},
        )
        for rid, pid, amount, created in rows
    ]


CHECKS: dict[str, Check] = {
    "stock_negative": stock_negative,
    "stock_movements": stock_movements,
    "order_lines": order_lines,
    "order_total": order_total,
    "order_stock": order_stock,
    "credit_balance": credit_balance,
    "ledger_chain": ledger_chain,
    "idempotency_key_charged_twice": idempotency_key_charged_twice,
    "charge_refunds": charge_refunds,
    "charge_unsettled": charge_unsettled,
    "purchase_credits": purchase_credits,
    "payment_refunds": payment_refunds,
    "refund_unsettled": refund_unsettled,
}


async def audit(
    engine: AsyncEngine,
    *,
    sweep_after_seconds: int,
    refund_settle_after_seconds: int = 300,
    now: datetime | None = None,
    only: Sequence[str] | None = None,
) -> Report:
    """Run the checks (all, or those named in `only`) in one read-only transaction."""
    names = tuple(only or CHECKS)
    unknown = [name for name in names if name not in CHECKS]
    if unknown:
        raise ValueError(f"unknown checks: {', '.join(unknown)}")
    context = Context(
        now or utcnow(),
        timedelta(seconds=sweep_after_seconds),
        timedelta(seconds=refund_settle_after_seconds),
    )
    violations: list[Violation] = []
    async with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execution_options(isolation_level="REPEATABLE READ")
            await conn.begin()
            await conn.execute(text("SET TRANSACTION READ ONLY"))
        else:
            await conn.begin()
        try:
            for name in names:
                violations += await CHECKS[name](conn, context)
        finally:
            await conn.rollback()
    return Report(names, violations)

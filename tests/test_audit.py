"""`sellerdesk check`: no violation after a realistic mix of store and credit scenarios, and
each kind of violation reported (exit 1, one line each, a summary, `--json`) once it is planted
by writing a bad row directly."""

from __future__ import annotations

import asyncio
import json
from contextlib import aclosing
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from click.testing import Result
from fastapi import FastAPI
from sqlalchemy import insert, select, text, update
from typer.testing import CliRunner

from sellerdesk.amazon.errors import UpstreamUnavailable
from sellerdesk.audit import CHECKS, Context, audit, stock_negative
from sellerdesk.cli import app as cli
from sellerdesk.config import get_settings
from sellerdesk.credits import service as credits_service
from sellerdesk.credits.service import sweep_unsettled_charges
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
from sellerdesk.orders.service import expire_unpaid_orders
from sellerdesk.payments.providers import ProviderFailed
from sellerdesk.payments.service import settle_pending_refunds
from tests.catalog_factories import create_product, csv_upload
from tests.conftest import AppFactory, Database
from tests.credits_factories import (
    GatedSource,
    assert_ledger_consistent,
    funded_with_mappings,
    grant,
)
from tests.factories import Account, register_admin
from tests.orders_factories import place_order
from tests.payment_fakes import GatedProvider
from tests.stripe_fixtures import (
    WEBHOOK_SECRET,
    charge_refunded_object,
    event,
    intent_object,
    signed,
)

SWEEP_AFTER = 300
SETTLE_AFTER = 300  # the default REFUND_SETTLE_AFTER_SECONDS, which `audit` also defaults to


class World:
    """An app with a gated Amazon source, its client, an admin and a buyer."""

    def __init__(self, app: FastAPI, client: httpx.AsyncClient, admin: Account, buyer: Account):
        self.app, self.client, self.admin, self.buyer = app, client, admin, buyer
        self.source: GatedSource = app.state.amazon
        self.provider: GatedProvider = app.state.payments

    async def post(self, path: str, account: Account | None, **kwargs: Any) -> httpx.Response:
        headers = {**(account.headers if account else {}), **kwargs.pop("headers", {})}
        return await self.client.post(f"/api/v1{path}", headers=headers, **kwargs)

    async def pay(self, order_id: int) -> None:
        intent = await self.post(
            "/payments/create-payment-intent", self.buyer, json={"order_id": order_id}
        )
        assert intent.status_code == 200, intent.text
        paid = await self.post(f"/payments/confirm-payment/{order_id}", self.buyer)
        assert paid.status_code == 200, paid.text

    async def refund(self, order_id: int, amount: str | None = None) -> None:
        body: dict[str, Any] = {"order_id": order_id, **({"amount": amount} if amount else {})}
        refunded = await self.post("/payments/refund", self.admin, json=body)
        assert refunded.status_code == 200, refunded.text

    async def webhook(self, body: dict[str, Any]) -> None:
        payload, headers = signed(body)
        delivered = await self.client.post(
            "/api/v1/payments/webhook", content=payload, headers=headers
        )
        assert delivered.status_code == 200, delivered.text

    async def purchase(self) -> dict[str, Any]:
        pack = (await self.client.get("/api/v1/credits/packs")).json()[0]
        started = await self.post("/credits/purchase", self.buyer, json={"pack_id": pack["id"]})
        assert started.status_code == 200, started.text
        body: dict[str, Any] = started.json()
        return body

    async def lookup(self, asin: str, key: str | None = None) -> httpx.Response:
        headers = {"Idempotency-Key": key} if key else {}
        return await self.post("/product/asin", self.buyer, json={"asin": asin}, headers=headers)

    async def audit(self, seconds_later: float = 0) -> set[str]:
        report = await audit(
            self.app.state.engine,
            sweep_after_seconds=SWEEP_AFTER,
            now=utcnow() + timedelta(seconds=seconds_later),
        )
        return {v.check for v in report.violations}

    async def settle(self) -> int:
        return await settle_pending_refunds(
            self.app.state.sessionmaker,
            self.provider,
            older_than=timedelta(seconds=SETTLE_AFTER),
            now=utcnow() + timedelta(seconds=SETTLE_AFTER + 1),
        )

    async def write(self, *statements: Any) -> None:
        async with self.app.state.sessionmaker() as session:
            for statement in statements:
                await session.execute(statement)
            await session.commit()

    async def scalar(self, statement: Any) -> Any:
        async with self.app.state.sessionmaker() as session:
            return await session.scalar(statement)


async def make_world(make_app: AppFactory) -> World:
    app = await make_app(
        STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET, CREDITS_SWEEP_AFTER_SECONDS=SWEEP_AFTER
    )
    app.state.amazon = GatedSource()
    GatedProvider(app).install()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    admin = await register_admin(client, app)
    buyer = await funded_with_mappings(client, admin, 50)
    return World(app, client, admin, buyer)


async def invoke_check(database: Database, *args: str) -> Result:
    env = {"DATABASE_URL": database.url, "REDIS_URL": "", "LOG_LEVEL": "WARNING"}

    def run() -> Result:
        get_settings.cache_clear()
        try:
            return CliRunner().invoke(cli, ["check", *args], env=env)
        finally:
            get_settings.cache_clear()

    return await asyncio.to_thread(run)


# --------------------------------------------------------------------------- a clean database


async def test_a_realistic_mix_of_scenarios_leaves_no_violation(
    make_app: AppFactory, database: Database
) -> None:
    world = await make_world(make_app)
    client, admin, buyer = world.client, world.admin, world.buyer
    async with aclosing(client):
        # Catalog: created with stock, imported, patched, adjusted.
        shoes = (await create_product(client, admin, stock_quantity=20, price="12.50"))["id"]
        socks = (await create_product(client, admin, stock_quantity=0, price="3.10"))["id"]
        csv = "sku,name,description,price,stock_quantity,category_slug\n"
        csv += "".join(f"AUD-{n},Imported {n},,1.99,{n * 3},\n" for n in range(1, 6))
        imported = await world.post("/products/import", admin, files=csv_upload(csv))
        assert imported.status_code == 200, imported.text
        patched = await client.patch(
            f"/api/v1/products/{socks}", json={"stock_quantity": 7}, headers=admin.headers
        )
        assert patched.status_code == 200, patched.text
        adjusted = await world.post(
            f"/admin/inventory/{shoes}/adjust", admin, json={"delta": -2, "reason": "damaged"}
        )
        assert adjusted.status_code == 200, adjusted.text

        # Orders: cancelled while pending, paid then refunded in two parts, paid then cancelled
        # (full refund, stock back), left pending, expired.
        cancelled = await place_order(client, buyer, shoes, 2)
        assert (await world.post(f"/orders/{cancelled['id']}/cancel", buyer)).status_code == 200
        refunded = await place_order(client, buyer, shoes, 3)
        await world.pay(refunded["id"])
        await world.refund(refunded["id"], "5.00")
        await world.refund(refunded["id"])
        paid_then_cancelled = await place_order(client, buyer, socks, 1)
        await world.pay(paid_then_cancelled["id"])
        cancel = await world.post(f"/orders/{paid_then_cancelled['id']}/cancel", buyer)
        assert cancel.status_code == 200, cancel.text
        await place_order(client, buyer, shoes, 1)
        expired = await place_order(client, buyer, socks, 2)
        await world.write(
            update(Order)
            .where(Order.id == expired["id"])
            .values(created_at=utcnow() - timedelta(hours=2))
        )
        assert (
            await expire_unpaid_orders(world.app.state.sessionmaker, world.app.state.settings) == 1
        )

        # A refund whose provider call never answered, settled by the job; meanwhile a refund
        # made in the provider's dashboard, reported by a webhook (12.00 in all at the provider).
        dashboard = await place_order(client, buyer, shoes, 2)
        await world.pay(dashboard["id"])
        world.provider.fail_next("refund", ProviderFailed())
        body = {"order_id": dashboard["id"], "amount": "5.00"}
        assert (await world.post("/payments/refund", admin, json=body)).status_code == 502
        intent_id = await world.scalar(
            select(Payment.intent_id).where(Payment.order_id == dashboard["id"])
        )
        await world.webhook(event("charge.refunded", charge_refunded_object(intent_id, 2500, 1200)))
        assert "refund_unsettled" in await world.audit(seconds_later=SETTLE_AFTER + 1)
        assert await world.settle() == 1

        # Credit purchases: confirmed; paid by a webhook delivered twice, then half refunded.
        confirmed = await world.purchase()
        done = await world.post(f"/credits/purchases/{confirmed['purchase_id']}/confirm", buyer)
        assert done.status_code == 200, done.text
        hooked = await world.purchase()
        intent_id = hooked["payment_intent_id"]
        succeeded = event("payment_intent.succeeded", intent_object(intent_id, 900))
        await world.webhook(succeeded)
        await world.webhook(succeeded)
        await world.webhook(event("charge.refunded", charge_refunded_object(intent_id, 900, 450)))

        # Paid calls: served, repeated, not found, keyed and replayed, batch, upstream failure,
        # cancelled mid-call and swept; grants both ways.
        assert (await world.lookup("B000000001")).status_code == 200
        assert (await world.lookup("B000000001")).status_code == 200
        assert (await world.lookup("B000000099")).status_code == 404
        assert (await world.lookup("B000000002", key="k-1")).status_code == 200
        assert (await world.lookup("B000000002", key="k-1")).status_code == 200
        batch = await world.post(
            "/conversion/fnsku/batch", buyer, json={"fnskus": ["X000000003", "X000000077"]}
        )
        assert batch.status_code == 200, batch.text

        async def fail() -> None:
            raise UpstreamUnavailable()

        world.source.close_gate()
        world.source.gate.set()
        world.source.then = fail
        assert (await world.lookup("B000000004")).status_code == 502
        world.source.then = None
        world.source.close_gate()
        call = asyncio.ensure_future(world.lookup("B000000005"))
        await asyncio.wait_for(world.source.entered.wait(), timeout=30)
        call.cancel()
        await asyncio.gather(call, return_exceptions=True)
        assert await world.audit(seconds_later=SWEEP_AFTER + 1) == {"charge_unsettled"}
        later = utcnow() + timedelta(seconds=SWEEP_AFTER + 1)
        app = world.app
        assert (
            await sweep_unsettled_charges(app.state.sessionmaker, app.state.settings, now=later)
            == 1
        )
        assert (await grant(client, admin, buyer.id, -3)).status_code == 200

        report = await audit(app.state.engine, sweep_after_seconds=SWEEP_AFTER)
        assert [v.line() for v in report.violations] == []
        assert report.summary() == f"sellerdesk check: no violations ({len(CHECKS)} checks)"
        await assert_ledger_consistent(app)

        result = await invoke_check(database)
        assert result.exit_code == 0, result.output
        assert result.output.strip() == report.summary()


# --------------------------------------------------------------------------- planted violations


async def test_each_planted_violation_is_reported_and_the_command_exits_1(
    make_app: AppFactory, database: Database
) -> None:
    world = await make_world(make_app)
    client, admin, buyer = world.client, world.admin, world.buyer
    async with aclosing(client):
        product = (await create_product(client, admin, stock_quantity=10, price="4.00"))["id"]
        cancelled = await place_order(client, buyer, product, 2)
        assert (await world.post(f"/orders/{cancelled['id']}/cancel", buyer)).status_code == 200
        paid = await place_order(client, buyer, product, 1)
        await world.pay(paid["id"])
        purchase = await world.purchase()
        confirm = await world.post(f"/credits/purchases/{purchase['purchase_id']}/confirm", buyer)
        assert confirm.status_code == 200, confirm.text
        assert (await world.lookup("B000000001", key="once")).status_code == 200
        assert (await world.lookup("B000000002")).status_code == 200
        assert await world.audit() == set()
        expected: set[str] = set()

        async def planted(check: str) -> None:
            expected.add(check)
            assert await world.audit() == expected, check

        # A product's stock changed without a movement.
        await world.write(
            update(Product)
            .where(Product.id == product)
            .values(stock_quantity=Product.stock_quantity + 3)
        )
        await planted("stock_movements")

        # A line whose unit price no longer explains its total.
        await world.write(
            update(OrderItem)
            .where(OrderItem.order_id == paid["id"])
            .values(unit_price=Decimal("3.00"))
        )
        await planted("order_lines")

        # An order whose total is not the sum of its lines.
        await world.write(
            update(Order).where(Order.id == paid["id"]).values(total_amount=Decimal("99.00"))
        )
        await planted("order_total")

        # A cancellation applied twice: the stock came back twice (movement and stock agree).
        await world.write(
            insert(StockMovement).values(
                product_id=product,
                delta=2,
                stock_after=0,
                reason="cancel",
                order_id=cancelled["id"],
            )
        )
        await world.write(
            update(Product)
            .where(Product.id == product)
            .values(stock_quantity=Product.stock_quantity + 2)
        )
        await planted("order_stock")

        # A balance that moved without a ledger entry.
        await world.write(
            update(CreditAccount)
            .where(CreditAccount.user_id == buyer.id)
            .values(balance=CreditAccount.balance + 1)
        )
        await planted("credit_balance")

        # A ledger entry whose balance_after breaks the running sum.
        first = await world.scalar(
            select(CreditLedger.id)
            .where(CreditLedger.user_id == buyer.id)
            .order_by(CreditLedger.id)
        )
        await world.write(
            update(CreditLedger)
            .where(CreditLedger.id == first)
            .values(balance_after=CreditLedger.balance_after + 7)
        )
        await planted("ledger_chain")

        # One client key charged a second time (what a broken takeover would do).
        async with world.app.state.sessionmaker() as session:
            await credits_service.charge(
                session,
                user_id=buyer.id,
                endpoint="asin_lookup",
                codes=["US:B000000001"],
                unit_cost=1,
                repeat_window=0,
                reference="US:B000000001",
                idempotency_key="once",
                served=True,
            )
            await session.commit()
        await planted("idempotency_key_charged_twice")

        # A charge marked refunded whose refund entry was never written.
        plain = await world.scalar(
            select(CreditCharge.id).where(CreditCharge.idempotency_key.is_(None))
        )
        await world.write(
            update(CreditCharge).where(CreditCharge.id == plain).values(outcome="refunded")
        )
        await planted("charge_refunds")

        # A charge left without an outcome past the sweep's horizon.
        keyed = await world.scalar(
            select(CreditCharge.id)
            .where(CreditCharge.idempotency_key.is_not(None))
            .order_by(CreditCharge.id)
        )
        await world.write(
            update(CreditCharge)
            .where(CreditCharge.id == keyed)
            .values(outcome=None, settled_at=None, created_at=utcnow() - timedelta(hours=1))
        )
        await planted("charge_unsettled")

        # A purchase credited although it is not completed.
        await world.write(
            update(CreditPurchase)
            .where(CreditPurchase.id == purchase["purchase_id"])
            .values(status="pending")
        )
        await planted("purchase_credits")

        # A succeeded refund row worth more than the payment's refunded amount.
        payment_id = await world.scalar(select(Payment.id).where(Payment.order_id == paid["id"]))
        await world.write(
            insert(Refund).values(
                payment_id=payment_id,
                amount=Decimal("1.00"),
                status="succeeded",
                settled_at=utcnow(),
            )
        )
        await planted("payment_refunds")

        # A refund left pending past the settle job's horizon (its reserve planted with it).
        await world.write(
            update(Payment)
            .where(Payment.id == payment_id)
            .values(refund_reserved=Payment.refund_reserved + Decimal("0.50")),
            insert(Refund).values(
                payment_id=payment_id,
                amount=Decimal("0.50"),
                status="pending",
                provider_key="refund:planted",
                created_at=utcnow() - timedelta(hours=1),
            ),
        )
        await planted("refund_unsettled")

        assert expected == set(CHECKS) - {"stock_negative"}

        result = await invoke_check(database)
        assert result.exit_code == 1, result.output
        lines = result.output.strip().splitlines()
        counts = f"{len(lines) - 1} violations in {len(expected)} of {len(CHECKS)} checks"
        assert lines[-1] == f"sellerdesk check: {counts}"
        assert {line.split(":", 1)[0] for line in lines[:-1]} == expected
        assert f"stock_movements: product {product}: stock is" in result.output
        assert (
            f"order_total: order {paid['id']}: total is 99.00 but its lines add up to 4.00"
            in result.output
        )

        as_json = await invoke_check(database, "--json")
        assert as_json.exit_code == 1
        document = json.loads(as_json.output)
        assert document["ok"] is False
        assert {v["check"] for v in document["violations"]} == expected
        assert {c["name"] for c in document["checks"]} == set(CHECKS)
        assert all(v["subject"] and v["message"] for v in document["violations"])


async def test_refund_violations_say_which_figure_is_off(make_app: AppFactory) -> None:
    world = await make_world(make_app)
    async with aclosing(world.client):
        product = await create_product(world.client, world.admin, price="10.00", stock_quantity=5)
        order = await place_order(world.client, world.buyer, product["id"], 3)
        await world.pay(order["id"])
        await world.refund(order["id"], "5.00")
        payment_id = await world.scalar(select(Payment.id).where(Payment.order_id == order["id"]))

        # The refunded amount moved without a refund row, and an amount is held for no refund.
        await world.write(
            update(Payment)
            .where(Payment.id == payment_id)
            .values(refunded_amount=Decimal("6.00"), refund_reserved=Decimal("2.00"))
        )
        report = await audit(world.app.state.engine, sweep_after_seconds=SWEEP_AFTER)

        assert [v.line() for v in report.violations] == [
            f"payment_refunds: payment {payment_id}: succeeded refunds add up to 5.00, not 6.00; "
            "pending refunds add up to 0.00, not the 2.00 reserved"
        ]

        # Refunds of a payment that was never captured.
        await world.write(update(Payment).where(Payment.id == payment_id).values(status="canceled"))
        [violation] = (
            await audit(world.app.state.engine, sweep_after_seconds=SWEEP_AFTER)
        ).violations
        assert violation.message.startswith(
            "refunded 6.00 and 2.00 pending of a canceled payment of 30.00 (captured 0.00); "
        )


async def test_stock_below_zero_is_reported_where_the_constraint_was_lost(
    make_app: AppFactory,
) -> None:
    app = await make_app()
    async with app.state.engine.connect() as conn:
        await conn.begin()
        if conn.dialect.name == "postgresql":
            await conn.execute(
                text("ALTER TABLE product DROP CONSTRAINT ck_product_stock_quantity_non_negative")
            )
        else:
            await conn.execute(text("PRAGMA ignore_check_constraints = ON"))
        await conn.execute(
            insert(Product).values(
                name="Broken", price=Decimal("1.00"), currency="usd", stock_quantity=-4,
                low_stock_threshold=0, sku="BROKEN-1", images=[],
            )
        )  # fmt: skip
        found = await stock_negative(conn, Context(utcnow(), timedelta(seconds=SWEEP_AFTER)))
        await conn.rollback()
        if conn.dialect.name != "postgresql":
            await conn.execute(text("PRAGMA ignore_check_constraints = OFF"))
    assert [(v.check, v.message) for v in found] == [("stock_negative", "stock is -4")]


async def test_an_unreachable_database_exits_2() -> None:
    unreachable = Database("postgresql+asyncpg://postgres@127.0.0.1:1/nothing")
    result = await invoke_check(unreachable)
    assert result.exit_code == 2
    assert "cannot read the database" in result.output
    await unreachable.engine.dispose()


@pytest.mark.parametrize("only", [["nope"]])
async def test_unknown_check_names_are_refused(make_app: AppFactory, only: list[str]) -> None:
    app = await make_app()
    with pytest.raises(ValueError, match="unknown checks: nope"):
        await audit(app.state.engine, sweep_after_seconds=SWEEP_AFTER, only=only)

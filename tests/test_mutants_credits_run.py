"""Credits behaviour of the full mutation run's survivors (issue 18, docs/mutation.md), each test
written to kill mutants the suite let through: the default low-balance threshold a pack leaves
(a tenth, rounded down, kept when the settings row already exists), the 404 of a pack not on
sale, a paid purchase completing only itself, the ledger entry and the `credits_purchased`
event a purchase writes, a payment of no purchase crediting nothing, and the endpoint a
charge's refund is booked under; a new price in force at once, an unknown paid endpoint's 404,
packs of equal size listed in the order they were created; and what a paid call whose lookup
failed after its charge says and books (the reason, the headers of a free repeat, and of a
refund left to the sweep). From the resumed run: `grant_once` books once per account and key,
a claim of several codes marks only those not paid since the cutoff (the cutoff inside the
window), and the low-credit warning follows the threshold in force.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from sellerdesk.credits import alerts
from sellerdesk.credits import service as credits_service
from sellerdesk.credits.handlers import _Payment
from sellerdesk.credits.repository import PaidLookupRepository
from sellerdesk.models import CreditPurchase, DomainEvent
from tests.conftest import AppFactory
from tests.credits_factories import (
    UpstreamDown,
    assert_ledger_consistent,
    balance,
    grant,
    ledger,
    set_price,
)
from tests.factories import Account, register, register_admin
from tests.stripe_fixtures import WEBHOOK_SECRET, event, intent_object
from tests.test_money_guards import buy_a_pack, deliver, make_pack, purchase_status
from tests.test_paid_call_safety import Setup, build

PURCHASE = "/api/v1/credits/purchase"
ALERTS = "/api/v1/credits/alerts"


@pytest.fixture
async def app(make_app: AppFactory) -> FastAPI:
    return await make_app(STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET)


async def pay(client: httpx.AsyncClient, started: dict[str, object], cents: int) -> None:
    """Stripe says the purchase's intent succeeded (signed webhook)."""
    paid = intent_object(str(started["payment_intent_id"]), cents, currency=started["currency"])
    await deliver(client, event("payment_intent.succeeded", paid))


# --------------------------------------------------------------------------- alerts


async def test_a_pack_bought_makes_a_tenth_of_it_rounded_down_the_default_warning(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    buyer, started = await buy_a_pack(client, app, 15, "1.50")
    # The buyer already has a settings row: the purchase updates it (the upsert's conflict).
    chosen = await client.put(
        ALERTS, json={"enabled": True, "threshold": None}, headers=buyer.headers
    )
    assert chosen.status_code == 200, chosen.text
    assert chosen.json()["default_threshold"] is None

    await pay(client, started, 150)
    assert await balance(client, buyer) == 15
    read = await client.get(ALERTS, headers=buyer.headers)
    assert read.status_code == 200, read.text
    assert read.json() == {
        "enabled": True,
        "threshold": None,
        "default_threshold": 1,
        "effective_threshold": 1,
    }

    # A threshold of the user's own, set after the purchase, keeps the pack's default.
    own = await client.put(ALERTS, json={"enabled": True, "threshold": 7}, headers=buyer.headers)
    assert own.status_code == 200, own.text
    assert own.json() == {
        "enabled": True,
        "threshold": 7,
        "default_threshold": 1,
        "effective_threshold": 7,
    }


# --------------------------------------------------------------------------- packs


async def test_buying_a_pack_that_does_not_exist_or_is_off_sale_is_a_404_that_says_so(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    buyer = await register(client)
    missing = await client.post(PURCHASE, json={"pack_id": 999999}, headers=buyer.headers)
    assert missing.status_code == 404, missing.text
    assert missing.json()["message"] == "Credit pack not found."

    pack = await make_pack(client, app, 20, "2.00")
    admin = await register_admin(client, app)
    hidden = await client.patch(
        f"/api/v1/admin/credits/packs/{pack['id']}",
        json={"is_active": False},
        headers=admin.headers,
    )
    assert hidden.status_code == 200, hidden.text
    withdrawn = await client.post(PURCHASE, json={"pack_id": pack["id"]}, headers=buyer.headers)
    assert withdrawn.status_code == 404, withdrawn.text
    assert withdrawn.json()["message"] == "Credit pack not found."


# --------------------------------------------------------------------------- purchases


async def test_a_paid_purchase_completes_itself_and_leaves_other_pending_purchases_pending(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    alice, alices = await buy_a_pack(client, app, 30, "3.00")
    bob, bobs = await buy_a_pack(client, app, 40, "4.00")

    await pay(client, alices, 300)
    assert await purchase_status(app, alices["purchase_id"]) == "completed"
    assert await purchase_status(app, bobs["purchase_id"]) == "pending"
    assert (await balance(client, alice), await balance(client, bob)) == (30, 0)

    # Bob's payment, when it comes, still credits his pack.
    await pay(client, bobs, 400)
    assert await purchase_status(app, bobs["purchase_id"]) == "completed"
    assert await balance(client, bob) == 40
    await assert_ledger_consistent(app)


async def test_a_purchase_is_booked_under_its_id_and_announced_with_its_purchase_and_payment(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    buyer, started = await buy_a_pack(client, app, 25, "2.50")
    await pay(client, started, 250)
    purchase_id = started["purchase_id"]

    [entry] = await ledger(app, buyer.id)
    assert (entry.kind, entry.amount) == ("purchase", 25)
    assert entry.reference == f"purchase:{purchase_id}"
    assert entry.idempotency_key == f"purchase:{purchase_id}"

    async with app.state.sessionmaker() as session:
        purchase = await session.get(CreditPurchase, purchase_id)
        assert purchase is not None and purchase.payment_id is not None
        payloads = list(
            await session.scalars(
                select(DomainEvent.payload).where(DomainEvent.kind == "credits_purchased")
            )
        )
    [announced] = [p for p in payloads if p["user_id"] == buyer.id]
    assert announced == {
        "user_id": buyer.id,
        "purchase_id": purchase_id,
        "payment_id": purchase.payment_id,
        "credits": 25,
        "amount": "2.50",
        "currency": started["currency"],
    }


async def test_a_payment_that_is_no_purchase_s_credits_nothing(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    async with app.state.sessionmaker() as session:
        stranger = _Payment(999999, Decimal("5.00"), Decimal("0"), "usd")
        assert await credits_service.apply_purchase_payment_succeeded(session, stranger) is False
        created = await session.scalar(
            select(DomainEvent.id).where(DomainEvent.kind == "credits_purchased")
        )
        assert created is None


# --------------------------------------------------------------------------- charges


async def test_a_refunded_charge_is_booked_back_under_the_charge_s_endpoint(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await register_admin(client, app)
    user = await register(client)
    assert (await grant(client, admin, user.id, 10)).status_code == 200
    async with app.state.sessionmaker() as session:
        made = await credits_service.charge(
            session,
            user_id=user.id,
            endpoint="fnsku_conversion",
            codes=["X000000001", "X000000002"],
            unit_cost=2,
            repeat_window=3600,
            reference="two codes",
        )
        await session.commit()
        assert made.charge_id is not None
        assert await credits_service.refund_charge(session, made.charge_id, "lookup failed") == 10
        await session.commit()

    _granted, charged, refunded = await ledger(app, user.id)
    assert (charged.kind, charged.amount, charged.endpoint) == ("charge", -4, "fnsku_conversion")
    assert (refunded.kind, refunded.amount, refunded.endpoint) == ("refund", 4, "fnsku_conversion")
    assert refunded.reference == f"refund of #{charged.id}: lookup failed"
    await assert_ledger_consistent(app)


# --------------------------------------------------------------------------- prices


async def test_a_new_price_is_in_force_at_once_and_an_unknown_paid_endpoint_is_a_404(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await register_admin(client, app)
    await set_price(client, admin, "asin_lookup", 2)
    book = app.state.price_book
    async with app.state.sessionmaker() as session:
        assert await book.cost(session, "asin_lookup") == 2  # read now, cached for seconds
    await set_price(client, admin, "asin_lookup", 3)
    async with app.state.sessionmaker() as session:
        assert await book.cost(session, "asin_lookup") == 3  # the change dropped the cache

    unknown = await client.patch(
        "/api/v1/admin/credits/pricing/no_such_endpoint", json={"credits": 2}, headers=admin.headers
    )
    assert unknown.status_code == 404, unknown.text
    assert unknown.json()["message"] == "No such paid endpoint."


async def test_packs_of_the_same_size_are_listed_in_the_order_they_were_created(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await register_admin(client, app)
    ids = []
    for name in ("First fifty", "Second fifty"):
        created = await client.post(
            "/api/v1/admin/credits/packs",
            json={"name": name, "credits": 50, "price": "5.00"},
            headers=admin.headers,
        )
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
    # A change to the first one moves its row (PostgreSQL writes a new row version).
    renamed = await client.patch(
        f"/api/v1/admin/credits/packs/{ids[0]}",
        json={"name": "First fifty!"},
        headers=admin.headers,
    )
    assert renamed.status_code == 200, renamed.text
    listed = (await client.get("/api/v1/credits/packs")).json()
    assert [p["id"] for p in listed if p["credits"] == 50] == ids


# --------------------------------------------------------------------------- failed lookups


@pytest.fixture
async def windowed(make_app: AppFactory) -> AsyncIterator[Setup]:
    async for setup in build(make_app):
        yield setup


def failing(setup: Setup, error: Exception) -> None:
    """The next upstream lookup fails with `error` (after its charge)."""

    async def fail() -> None:
        setup.source.then = None
        raise error

    setup.source.close_gate()
    setup.source.gate.set()
    setup.source.then = fail


@pytest.mark.parametrize(
    ("error", "status", "reason"),
    [(RuntimeError("broke"), 500, "internal_error"), (UpstreamDown(), 502, "upstream_unavailable")],
    ids=["crash", "upstream"],
)
async def test_a_lookup_that_failed_after_its_charge_books_the_refund_with_why(
    windowed: Setup, error: Exception, status: int, reason: str
) -> None:
    user = await windowed.user()
    failing(windowed, error)
    failed = await windowed.lookup(user)
    assert failed.status_code == status, failed.text
    if status != 500:  # an unexpected error's 500 carries no credit headers
        assert failed.headers["X-Credits-Charged"] == "0"
        assert failed.headers["X-Credits-Remaining"] == "10"
    charged, refunded = (await ledger(windowed.app, user.id))[-2:]
    assert (refunded.kind, refunded.amount) == ("refund", 1)
    assert refunded.reference == f"refund of #{charged.id}: {reason}"


async def test_a_free_repeat_whose_lookup_failed_says_nothing_was_charged(
    windowed: Setup,
) -> None:
    user = await windowed.user()
    paid = await windowed.lookup(user)
    assert paid.status_code == 200, paid.text
    assert paid.headers["X-Credits-Charged"] == "1"
    failing(windowed, UpstreamDown())
    repeat = await windowed.lookup(user)
    assert repeat.status_code == 502, repeat.text
    assert repeat.headers["X-Credits-Charged"] == "0"
    assert repeat.headers["X-Credits-Remaining"] == "9"


async def test_a_refund_left_to_the_sweep_still_says_nothing_was_charged(
    windowed: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await windowed.user()

    async def database_blinked(*args: object) -> int:
        raise ConnectionError("the database blinked")

    monkeypatch.setattr(credits_service, "refund_charge", database_blinked)
    failing(windowed, UpstreamDown())
    failed = await windowed.lookup(user)
    assert failed.status_code == 502, failed.text
    assert failed.headers["X-Credits-Charged"] == "0"  # once, not "0, 0"
    assert [name for name in failed.headers if "credits" in name] == ["x-credits-charged"]
    monkeypatch.undo()
    assert await windowed.sweep() == 1
    assert await balance(windowed.client, user) == 10


# --------------------------------------------------------------------------- seeding


async def test_a_grant_once_is_booked_with_its_reason_under_its_key_and_never_twice(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """`grant_once` (the demo account's credits, `sellerdesk seed`): run again under the same
    key for the same account, it grants nothing and says so; other keys, and the same key for
    another account, grant."""
    first, second = await register(client), await register(client)

    async def grant_once(account: Account, key: str) -> bool:
        async with app.state.sessionmaker() as session:
            granted = await credits_service.grant_once(
                session, user_id=account.id, amount=100, reason="Demo credits", key=key
            )
            await session.commit()
            return granted

    assert await grant_once(first, "seed:0") is True
    assert await grant_once(first, "seed:1") is True
    assert await grant_once(first, "seed:1") is False
    assert await grant_once(second, "seed:1") is True

    entries = await ledger(app, first.id)
    assert [(e.amount, e.kind, e.reference, e.idempotency_key) for e in entries] == [
        (100, "grant", "Demo credits", "seed:0"),
        (100, "grant", "Demo credits", "seed:1"),
    ]
    assert (await balance(client, first), await balance(client, second)) == (200, 100)


# --------------------------------------------------------------------------- repeat markers


async def test_a_claim_of_several_codes_marks_those_not_paid_since_the_cutoff_and_names_them(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """`PaidLookupRepository.claim` of several codes (a batch): a code paid at the cutoff
    itself is still inside the repeat window, one paid before it is due again; the answer is
    the codes marked now."""
    account = await register(client)
    t0 = datetime(2026, 12, 1, 12, tzinfo=UTC)
    window = timedelta(hours=1)

    async def claim(codes: list[str], now: datetime) -> list[str]:
        async with app.state.sessionmaker() as session:
            marked = await PaidLookupRepository(session).claim(
                account.id, "asin", codes, now, now - window
            )
            await session.commit()
            return sorted(marked)

    assert await claim(["A1", "B2"], t0) == ["A1", "B2"]
    assert await claim(["A1", "C3"], t0 + timedelta(minutes=1)) == ["C3"]
    assert await claim(["A1", "B2"], t0 + window) == []  # paid at the cutoff: still free
    assert await claim(["A1", "B2"], t0 + window + timedelta(microseconds=1)) == ["A1", "B2"]


async def credits_low(app: FastAPI, user_id: int) -> list[tuple[int, int]]:
    """The (balance, threshold) of each `credits_low` event published for the account."""
    async with app.state.sessionmaker() as session:
        rows = await session.scalars(
            select(DomainEvent).where(DomainEvent.kind == "credits_low").order_by(DomainEvent.id)
        )
        return [
            (row.payload["balance"], row.payload["threshold"])
            for row in rows
            if row.payload["user_id"] == user_id
        ]


async def test_the_low_credit_warning_follows_the_threshold_in_force(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """The default threshold (from the last pack) warns when the account set none; alerts
    switched off never warn, whatever threshold they keep; a threshold of 0 warns when the
    balance reaches 0."""
    by_default, switched_off, zero = [await register(client) for _ in range(3)]
    async with app.state.sessionmaker() as session:
        await alerts.remember_pack(session, by_default.id, 50)  # default threshold: 5
        await alerts.update(session, switched_off.id, enabled=False, threshold=5)
        await alerts.update(session, zero.id, enabled=True, threshold=0)
        for account in (by_default, switched_off):
            await alerts.after_charge(session, account.id, 6, 5)
        await alerts.after_charge(session, zero.id, 1, 0)
        await session.commit()

    assert await credits_low(app, by_default.id) == [(5, 5)]
    assert await credits_low(app, switched_off.id) == []
    assert await credits_low(app, zero.id) == [(0, 0)]

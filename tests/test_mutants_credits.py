"""Credits behaviour the mutation run found untested (issue 18): error messages, details and
headers clients read, the admin pack list and ledger search, purchase keys per account,
Checkout metadata, the repeat-marker purge's cut-off, alert settings read as stored, and the
first day of a usage range."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import insert, select

from sellerdesk.credits import alerts
from sellerdesk.credits import service as credits_service
from sellerdesk.credits.handlers import _Payment
from sellerdesk.credits.repository import AlertRepository, PaidLookupRepository
from sellerdesk.kit.pagination import PageParams
from sellerdesk.models import CreditPaidLookup, CreditUsage
from sellerdesk.models.base import utcnow
from tests.conftest import AppFactory
from tests.credits_factories import grant
from tests.factories import Account, register, register_admin
from tests.stripe_fixtures import localstripe, stripe_settings
from tests.test_dashboard import sign_in
from tests.test_paid_call_safety import Setup, build

__all__ = ["localstripe"]  # the session fixture, imported for pytest

FNSKU = "/api/v1/conversion/fnsku"
PURCHASE = "/api/v1/credits/purchase"
ADMIN_PACKS = "/api/v1/admin/credits/packs"


# --------------------------------------------------------------------------- errors


async def test_a_refused_negative_adjustment_says_the_balance_and_the_amount(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await register_admin(client, app)
    user = await register(client)
    assert (await grant(client, admin, user.id, 30)).status_code == 200
    refused = await grant(client, admin, user.id, -31)
    assert refused.status_code == 409
    assert refused.json() == {
        "error": "conflict",
        "message": "The balance is 30; taking 31 credits would make it negative.",
        "details": {"balance": 30, "amount": -31},
    }


async def test_an_unknown_pack_is_named_in_the_404(client: httpx.AsyncClient, app: FastAPI) -> None:
    admin = await register_admin(client, app)
    missing = await client.patch(
        f"{ADMIN_PACKS}/999999", json={"is_active": False}, headers=admin.headers
    )
    assert missing.status_code == 404
    assert missing.json()["message"] == "Credit pack not found."


async def test_a_local_lookup_of_an_unknown_code_says_which_code(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await register_admin(client, app)
    user = await register(client)
    assert (await grant(client, admin, user.id, 5)).status_code == 200
    unknown = await client.post(FNSKU, json={"fnsku": "X000000099"}, headers=user.headers)
    assert unknown.status_code == 404, unknown.text
    assert unknown.json()["message"] == "FNSKU X000000099 is not known."
    assert unknown.headers["X-Credits-Charged"] == "0"


@pytest.fixture
async def paid(make_app: AppFactory) -> AsyncIterator[Setup]:
    async for setup in build(make_app, CREDITS_REPEAT_WINDOW=0):
        yield setup


async def test_an_answer_whose_charge_was_swept_asks_for_a_retry_in_a_second(
    paid: Setup,
) -> None:
    user = await paid.user()
    paid.source.close_gate()
    [call] = await paid.started(paid.lookup(user))
    assert await paid.sweep() == 1
    paid.source.gate.set()
    late = await call
    assert late.status_code == 503, late.text
    assert late.headers["Retry-After"] == "1"
    assert late.json()["message"] == (
        "This call took too long and its charge was settled elsewhere; retry it."
    )


# --------------------------------------------------------------------------- admin views


async def test_the_admin_pack_list_keeps_packs_taken_off_sale(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await register_admin(client, app)
    created = await client.post(
        ADMIN_PACKS, json={"name": "Tiny", "credits": 10, "price": "1.5"}, headers=admin.headers
    )
    pack_id = created.json()["id"]
    hidden = await client.patch(
        f"{ADMIN_PACKS}/{pack_id}", json={"is_active": False}, headers=admin.headers
    )
    assert hidden.status_code == 200
    listed = await client.get(ADMIN_PACKS, headers=admin.headers)
    assert listed.status_code == 200
    by_id = {p["id"]: p for p in listed.json()}
    assert by_id[pack_id]["is_active"] is False
    assert [p["credits"] for p in listed.json()] == [10, 100, 1000, 10000]
    on_sale = (await client.get("/api/v1/credits/packs")).json()
    assert pack_id not in [p["id"] for p in on_sale]


async def test_the_admin_ledger_search_filters_by_account_and_kind_newest_first(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await register_admin(client, app)
    alice = await register(client)
    bob = await register(client)
    for user, amount in ((alice, 5), (bob, 7), (alice, -2), (alice, 4)):
        assert (await grant(client, admin, user.id, amount)).status_code == 200

    async def search(
        user_id: int | None, kind: str | None, page: int = 1, size: int = 20
    ) -> tuple[list[tuple[int, str, int]], int]:
        async with app.state.sessionmaker() as session:
            rows, total = await credits_service.search_ledger(
                session, PageParams(page, size), user_id=user_id, kind=kind
            )
        return [(r.user_id, r.kind, r.amount) for r in rows], total

    alices = [(alice.id, "grant", 4), (alice.id, "adjustment", -2), (alice.id, "grant", 5)]
    assert await search(alice.id, None) == (alices, 3)
    assert await search(alice.id, "grant") == ([alices[0], alices[2]], 2)
    assert await search(alice.id, "purchase") == ([], 0)
    assert await search(bob.id, None) == ([(bob.id, "grant", 7)], 1)
    everyone, total = await search(None, None)
    assert total >= 4 and everyone[:4] == [alices[0], alices[1], (bob.id, "grant", 7), alices[2]]
    adjustments, _ = await search(None, "adjustment")
    assert adjustments and {kind for _, kind, _ in adjustments} == {"adjustment"}
    assert await search(alice.id, None, page=2, size=1) == ([alices[1]], 3)


# --------------------------------------------------------------------------- purchases


async def _buy(client: httpx.AsyncClient, buyer: Account, key: str) -> int:
    pack = (await client.get("/api/v1/credits/packs")).json()[0]
    started = await client.post(
        PURCHASE, json={"pack_id": pack["id"]}, headers={**buyer.headers, "Idempotency-Key": key}
    )
    assert started.status_code == 200, started.text
    purchase_id: int = started.json()["purchase_id"]
    return purchase_id


async def test_a_purchase_key_belongs_to_one_account_and_names_one_purchase(
    client: httpx.AsyncClient,
) -> None:
    alice = await register(client)
    bob = await register(client)
    alices = await _buy(client, alice, "buy-1")
    bobs = await _buy(client, bob, "buy-1")
    assert bobs != alices
    second = await _buy(client, bob, "buy-2")
    assert second not in (alices, bobs)


async def test_a_failed_payment_of_no_purchase_changes_nothing(app: FastAPI) -> None:
    stranger = _Payment(
        id=987_654, amount=Decimal("9.00"), refunded_amount=Decimal(0), currency="usd"
    )
    async with app.state.sessionmaker() as session:
        assert await credits_service.apply_purchase_payment_failed(session, stranger) is False


async def test_stripe_checkout_of_a_pack_names_the_purchase_and_its_credits(
    make_app: Any, localstripe: str
) -> None:
    settings = stripe_settings(localstripe)
    app = await make_app(**settings)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        buyer = await register(client)
        csrf = await sign_in(client, buyer)
        pack = (await client.get("/api/v1/credits/packs")).json()[0]
        answer = await client.post(
            "/dashboard/credits/buy", data={"pack_id": str(pack["id"]), "csrf_token": csrf}
        )
        assert answer.status_code == 303, answer.text
        session_id = answer.headers["location"].rsplit("/", 1)[1]
        stripe_auth = {"Authorization": f"Bearer {settings['STRIPE_SECRET_KEY']}"}
        async with httpx.AsyncClient(base_url=localstripe, headers=stripe_auth) as api:
            opened = (await api.get(f"/v1/checkout/sessions/{session_id}")).json()
    purpose = opened["client_reference_id"]
    purchase_id = purpose.removeprefix("credit_purchase:")
    assert purchase_id.isdigit()
    assert opened["metadata"] == {
        "credit_purchase_id": purchase_id,
        "credits": str(pack["credits"]),
        "purpose": purpose,
    }


# --------------------------------------------------------------------------- repeat markers


async def test_the_purge_keeps_markers_paid_exactly_at_the_cutoff_and_counts_what_went(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await register(client)
    cutoff = utcnow().replace(microsecond=0) - timedelta(hours=24)
    async with app.state.sessionmaker() as session:
        session.add_all(
            [
                CreditPaidLookup(
                    user_id=user.id,
                    endpoint="asin_lookup",
                    code="OLD",
                    paid_at=cutoff - timedelta(seconds=1),
                ),
                CreditPaidLookup(
                    user_id=user.id, endpoint="asin_lookup", code="EDGE", paid_at=cutoff
                ),
            ]
        )
        await session.commit()
    async with app.state.sessionmaker() as session:
        assert await PaidLookupRepository(session).purge_before(cutoff) == 1
        assert await PaidLookupRepository(session).purge_before(cutoff) == 0
        await session.commit()
        left = await session.scalars(
            select(CreditPaidLookup.code).where(CreditPaidLookup.user_id == user.id)
        )
        assert list(left) == ["EDGE"]


# --------------------------------------------------------------------------- alert settings


async def test_alert_settings_are_read_as_stored_even_when_the_session_holds_an_older_row(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await register(client)
    async with app.state.sessionmaker() as session:
        await alerts.update(session, user.id, enabled=True, threshold=5)
        await session.commit()
    async with app.state.sessionmaker() as session:
        held = await AlertRepository(session).get(user.id)  # a caller keeping the row it read
        assert held is not None and (held.enabled, held.threshold) == (True, 5)
        after = await alerts.update(session, user.id, enabled=False, threshold=None)
        assert (after.enabled, after.threshold, after.effective_threshold) == (False, None, None)
        await session.commit()


# --------------------------------------------------------------------------- usage


async def test_usage_starts_on_the_first_day_asked_and_orders_its_endpoints(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await register(client)
    rows = [
        (date(2026, 3, 1), "asin_lookup", 9, 9),
        (date(2026, 3, 2), "fnsku_conversion", 7, 0),  # written first, listed second
        (date(2026, 3, 2), "asin_lookup", 1, 1),
    ]
    async with app.state.sessionmaker() as session:
        await session.execute(
            insert(CreditUsage),
            [
                {"user_id": user.id, "day": d, "endpoint": e, "calls": c, "credits": k}
                for d, e, c, k in rows
            ],
        )
        await session.commit()
    response = await client.get(
        "/api/v1/credits/usage",
        params={"from": "2026-03-02", "to": "2026-03-02"},
        headers=user.headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["items"] == [
        {"date": "2026-03-02", "endpoint": "asin_lookup", "calls": 1, "credits": 1},
        {"date": "2026-03-02", "endpoint": "fnsku_conversion", "calls": 7, "credits": 0},
    ]

"""Starting and confirming credit purchases, each written to kill a mutant of the full mutation
run that the suite let through (issue 18, docs/mutation.md): the answers a buyer reads when a
purchase is not theirs, has no payment yet, or is not paid; a key reused for another pack; the
metadata Stripe's intent carries back to us.
"""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import delete, update

from sellerdesk.models import CreditPurchase, IdempotencyKey, Payment
from sellerdesk.payments.providers import IntentInfo, IntentRef, ManualProvider
from sellerdesk.payments.state import register_provider
from tests.credits_factories import balance
from tests.factories import Account, register
from tests.stripe_fixtures import localstripe, stripe_settings

__all__ = ["localstripe"]  # the session fixture, imported for pytest

PURCHASE = "/api/v1/credits/purchase"


def confirm_url(purchase_id: int) -> str:
    return f"/api/v1/credits/purchases/{purchase_id}/confirm"


async def packs(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = (await client.get("/api/v1/credits/packs")).json()
    assert len(listed) >= 2
    return listed


async def start(
    client: httpx.AsyncClient, buyer: Account, pack_id: int, **headers: str
) -> httpx.Response:
    return await client.post(
        PURCHASE, json={"pack_id": pack_id}, headers={**buyer.headers, **headers}
    )


async def set_payment(app: FastAPI, purchase_id: int, **values: Any) -> None:
    async with app.state.sessionmaker() as session:
        purchase = await session.get(CreditPurchase, purchase_id)
        assert purchase is not None
        await session.execute(
            update(Payment).where(Payment.id == purchase.payment_id).values(**values)
        )
        await session.commit()


async def test_confirming_a_purchase_of_another_account_is_a_404_that_names_it(
    client: httpx.AsyncClient,
) -> None:
    buyer, other = await register(client), await register(client)
    pack = (await packs(client))[0]
    started = (await start(client, buyer, pack["id"])).json()
    stolen = await client.post(confirm_url(started["purchase_id"]), headers=other.headers)
    assert stolen.status_code == 404
    assert stolen.json()["message"] == "Credit purchase not found."


async def test_a_purchase_whose_intent_was_never_made_cannot_be_confirmed(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    buyer = await register(client)
    started = (await start(client, buyer, (await packs(client))[0]["id"])).json()
    # The provider was down when the purchase started: a pending payment without an intent.
    await set_payment(app, started["purchase_id"], intent_id=None)
    refused = await client.post(confirm_url(started["purchase_id"]), headers=buyer.headers)
    assert refused.status_code == 400, refused.text
    assert refused.json()["message"] == "No payment has been started for this purchase."
    assert await balance(client, buyer) == 0


async def test_a_paid_purchase_confirms_even_when_its_payment_names_no_intent(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """A payment captured through hosted Checkout may carry no intent id of ours: paid is paid."""
    buyer = await register(client)
    started = (await start(client, buyer, (await packs(client))[0]["id"])).json()
    await set_payment(app, started["purchase_id"], intent_id=None, status="succeeded")
    confirmed = await client.post(confirm_url(started["purchase_id"]), headers=buyer.headers)
    assert confirmed.status_code == 200, confirmed.text


class StillPending(ManualProvider):
    """A gateway whose confirmation leaves the intent waiting (3-D Secure, a slow bank)."""

    async def confirm_intent(self, ref: IntentRef) -> IntentInfo:
        return IntentInfo(ref.intent_id, "pending", ref.amount, ref.currency)


async def test_a_purchase_whose_payment_is_not_done_says_where_the_payment_stands(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    buyer = await register(client)
    started = (await start(client, buyer, (await packs(client))[0]["id"])).json()
    register_provider(app.state.engine, StillPending())
    waiting = await client.post(confirm_url(started["purchase_id"]), headers=buyer.headers)
    assert waiting.status_code == 400, waiting.text
    assert waiting.json()["message"] == "The payment is pending."
    assert await balance(client, buyer) == 0


async def test_a_key_that_started_a_purchase_of_one_pack_cannot_buy_another(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    buyer = await register(client)
    first, second = (await packs(client))[:2]
    assert (await start(client, buyer, first["id"], **{"Idempotency-Key": "k"})).status_code == 200
    # A day later the stored answer is purged; the purchase still belongs to the key.
    async with app.state.sessionmaker() as session:
        await session.execute(delete(IdempotencyKey).where(IdempotencyKey.user_id == buyer.id))
        await session.commit()
    reused = await start(client, buyer, second["id"], **{"Idempotency-Key": "k"})
    assert reused.status_code == 422, reused.text
    assert reused.json()["message"] == (
        "This Idempotency-Key already started a purchase of another pack."
    )


async def test_a_purchase_intent_at_stripe_names_the_purchase_and_its_credits(
    make_app: Any, localstripe: str
) -> None:
    settings = stripe_settings(localstripe)
    app = await make_app(**settings)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        buyer = await register(client)
        pack = (await packs(client))[0]
        started = (await start(client, buyer, pack["id"])).json()
    stripe_auth = {"Authorization": f"Bearer {settings['STRIPE_SECRET_KEY']}"}
    async with httpx.AsyncClient(base_url=localstripe, headers=stripe_auth) as api:
        intent = (await api.get(f"/v1/payment_intents/{started['payment_intent_id']}")).json()
    metadata = intent["metadata"]
    assert metadata["credit_purchase_id"] == str(started["purchase_id"])
    assert metadata["credits"] == str(pack["credits"])

"""Refunds under a request key, written to kill survivors of the full mutation run (issue 18,
docs/mutation.md): the live refund a request made is the one of that payment, never a refund
the provider refused (the same request may be made again after a refusal), and it is read as
stored even when the session already holds an older copy of it (a retry of a refund that was
settled meanwhile answers with it and does not ask the provider again).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import pytest
from fastapi import FastAPI

from sellerdesk.events import OutboxContext
from sellerdesk.payments import refunds as payments_refunds
from sellerdesk.payments import repository as payments_repository
from sellerdesk.payments import service as payments_service
from sellerdesk.payments.providers import ProviderFailed
from tests.conftest import AppFactory
from tests.payment_fakes import GatedProvider
from tests.test_payment_phases import SETTLE_AFTER, World

KEY = "rest"


@pytest.fixture
async def world(make_app: AppFactory) -> AsyncIterator[World]:
    app = await make_app(REFUND_SETTLE_AFTER_SECONDS=SETTLE_AFTER)
    provider = GatedProvider(app).install()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        try:
            yield await World(app, client, provider).setup()
        finally:
            provider.uninstall()


def outbox(app: FastAPI) -> OutboxContext:
    return OutboxContext(sessionmaker=app.state.sessionmaker, settings=app.state.settings)


async def refund_rest(world: World, payment_id: int) -> bool:
    return await payments_service.refund_rest_once(
        outbox(world.app), payment_id, request_key=KEY, reason="paid_after_cancel"
    )


async def test_a_request_the_provider_refused_refunds_when_it_is_made_again(
    world: World,
) -> None:
    """The refused refund is no longer the request's: running it again makes a new refund
    instead of answering with the refused one."""
    order_id = await world.paid_order()  # 30.00
    payment = await world.payment(order_id)
    world.provider.fail_next("refund", ProviderFailed("card closed", transient=False))
    with pytest.raises(ProviderFailed):
        await refund_rest(world, payment.id)
    assert [r.status for r in await world.refunds(order_id)] == ["failed"]

    settled = await refund_rest(world, payment.id)

    assert settled is True
    assert [r.status for r in await world.refunds(order_id)] == ["failed", "succeeded"]
    assert (await world.payment(order_id)).refunded_amount == Decimal("30.00")
    assert world.provider.refunded_total == 3000


async def test_the_same_request_key_refunds_each_payment_on_its_own(world: World) -> None:
    """A request key names a request of one payment: the refund of another payment made under
    the same key is not this payment's refund."""
    first = await world.paid_order()
    second = await world.paid_order()

    assert await refund_rest(world, (await world.payment(first)).id) is True
    assert await refund_rest(world, (await world.payment(second)).id) is True

    assert (await world.payment(first)).refunded_amount == Decimal("30.00")
    assert (await world.payment(second)).refunded_amount == Decimal("30.00")
    assert [r.status for r in await world.refunds(second)] == ["succeeded"]
    assert world.provider.refunded_total == 6000


async def test_a_retry_of_a_refund_settled_meanwhile_answers_with_it_without_asking_again(
    world: World,
) -> None:
    """The session read the request's refund while it was pending; the settle job then settled
    it. The retry in that session reads it as stored (succeeded) and does not call the
    provider again."""
    order_id = await world.paid_order()
    payment = await world.payment(order_id)
    world.provider.fail_next("refund", ProviderFailed())  # no answer: left pending
    with pytest.raises(ProviderFailed):
        await refund_rest(world, payment.id)

    async with world.app.state.sessionmaker() as session:
        held = await payments_repository.refund_for_request(session, payment.id, KEY)
        assert held is not None and held.status == "pending"
        await session.commit()  # the caller keeps the row it read
        assert await world.settle() == 1
        calls = len(world.provider.calls)

        row, after = await payments_refunds.refund(
            session, payment, None, reason="paid_after_cancel", request_key=KEY
        )

        assert (row.id, row.status) == (held.id, "succeeded")
        assert after.refunded_amount == Decimal("30.00")
        assert world.provider.calls[calls:] == []
    assert world.provider.refunded_total == 3000

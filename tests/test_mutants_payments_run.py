"""Payments behaviour written to kill survivors of the full mutation run (issue 18,
docs/mutation.md).

- Refunds under a request key: the live refund a request made is the one of that payment,
  never a refund the provider refused (the same request may be made again after a refusal),
  and it is read as stored even when the session already holds an older copy of it (a retry
  of a refund that was settled meanwhile answers with it and does not ask the provider again).
- A refund of "all that is left" leaves out what pending refunds hold.
- A refund is settled once: a retry answered after the job settled it changes nothing. A
  request whose key another run took between its check and its insert carries on with that
  refund (asking the provider by key first), or is told to retry when it is gone; a new refund
  asks the provider once; "the rest" of a payment refunded in full is a 409 recording nothing.
- A refund the provider answers as `failed` or `canceled` keeps the provider's refund id.
- An unpaid order's cancellation cancels no intent that was paid or never made, and answers the
  payment's state after; confirming a paid order again answers from our records.
- An intent is recorded on its own payment only; a payment row not readable yet after a
  concurrent insert is a 409 to retry; a payment read by its purpose is read as stored.
- Stripe's intent: declined only when it waits for a method after a failed attempt.
- A Checkout Session delivered again answers `duplicate` without asking Stripe again; the
  payment found by its intent is read as stored.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from sellerdesk.errors import Conflict
from sellerdesk.models import Payment, Refund
from sellerdesk.payments import refunds as payments_refunds
from sellerdesk.payments import repository as payments_repository
from sellerdesk.payments import service as payments_service
from sellerdesk.payments.providers import (
    IntentInfo,
    IntentRef,
    ManualProvider,
    ProviderFailed,
    RefundInfo,
    intent_info_from_stripe,
)
from tests.conftest import AppFactory
from tests.orders_factories import make_user
from tests.payment_fakes import GatedProvider
from tests.stripe_fixtures import WEBHOOK_SECRET, event, signed
from tests.test_mutants_payments import outbox, stripe_payment
from tests.test_payment_phases import World, confirm_url, world

__all__ = ["world"]  # the fixture, imported for pytest

KEY = "rest"


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


async def test_a_request_whose_refund_another_run_recorded_after_its_check_carries_on_with_it(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs of one request: this one looked for the request's refund before the other
    recorded it, so its own insert finds the key taken. It carries on with the other's refund
    (one refund at the provider), instead of failing or making a second one."""
    order_id = await world.paid_order()
    payment = await world.payment(order_id)
    world.provider.fail_next("refund", ProviderFailed())  # no answer: the other run's, pending
    with pytest.raises(ProviderFailed):
        await refund_rest(world, payment.id)
    real = payments_repository.refund_for_request
    looked: list[str] = []

    async def looked_too_early(session: AsyncSession, payment_id: int, key: str) -> Refund | None:
        looked.append(key)
        return None if len(looked) == 1 else await real(session, payment_id, key)

    monkeypatch.setattr(payments_repository, "refund_for_request", looked_too_early)
    calls = len(world.provider.calls)
    async with world.app.state.sessionmaker() as session:
        row, after = await payments_refunds.refund(
            session, payment, Decimal("30.00"), reason="paid_after_cancel", request_key=KEY
        )
        await session.commit()

    assert looked == [KEY, KEY]
    # Carried on: the provider is asked for the key's refund first (its memory of keys may
    # have expired), then the refund is made under that key.
    assert world.provider.calls[calls:] == ["find_refund", "refund"]
    assert row.status == "succeeded" and after.refunded_amount == Decimal("30.00")
    assert [r.status for r in await world.refunds(order_id)] == ["succeeded"]
    assert world.provider.refunded_total == 3000


async def test_a_request_whose_other_run_s_refund_was_refused_meanwhile_is_told_to_retry(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As above, but the other run's refund is gone by the time this run looks again (the
    provider refused it): a 409 that says to retry, and nothing recorded."""
    order_id = await world.paid_order()
    payment = await world.payment(order_id)
    world.provider.fail_next("refund", ProviderFailed())
    with pytest.raises(ProviderFailed):
        await refund_rest(world, payment.id)

    async def never_found(session: AsyncSession, payment_id: int, key: str) -> Refund | None:
        return None

    monkeypatch.setattr(payments_repository, "refund_for_request", never_found)
    async with world.app.state.sessionmaker() as session:
        with pytest.raises(Conflict) as raised:
            await payments_refunds.refund(
                session, payment, Decimal("30.00"), reason="paid_after_cancel", request_key=KEY
            )

    assert raised.value.message == "This refund is being made; retry."
    assert len(await world.refunds(order_id)) == 1


async def test_a_new_refund_asks_the_provider_once_without_looking_for_an_earlier_one(
    world: World,
) -> None:
    """Only a refund left by an earlier attempt is looked for first (a list call at Stripe)."""
    order_id = await world.paid_order()
    calls = len(world.provider.calls)

    assert (await world.refund(order_id, "10.00", key="new-1")).status_code == 200

    assert world.provider.calls[calls:] == ["refund"]


async def test_refunding_all_that_is_left_leaves_out_what_a_pending_refund_holds(
    world: World,
) -> None:
    order_id = await world.paid_order()  # 30.00
    world.provider.fail_next("refund", ProviderFailed())  # no answer: 10.00 stays reserved
    assert (await world.refund(order_id, "10.00")).status_code >= 500

    rest = await world.refund(order_id)

    assert rest.status_code == 200, rest.text
    payment = await world.payment(order_id)
    assert (payment.refunded_amount, payment.refund_reserved) == (
        Decimal("20.00"),
        Decimal("10.00"),
    )
    assert [r.status for r in await world.refunds(order_id)] == ["pending", "succeeded"]
    assert world.provider.refunded_total == 2000


async def test_a_retry_whose_refund_the_job_settled_while_it_waited_on_the_provider_answers_200(
    world: World,
) -> None:
    """A refund is settled once: the retry that gets the provider's answer after the job has
    settled the refund leaves it as it is (no second settlement, no second refunded amount)."""
    order_id = await world.paid_order()  # 30.00
    world.provider.fail_next("refund", ProviderFailed())  # no answer: the refund stays pending
    assert (await world.refund(order_id, "30.00", key="r-1")).status_code == 502
    world.provider.hold("find_refund")  # the retry asks the provider about its refund, held
    retry = asyncio.ensure_future(world.refund(order_id, "30.00", key="r-1"))
    await world.provider.entered.wait()

    assert await world.settle() == 1  # meanwhile the job makes the refund and settles it
    world.provider.release()
    answer = await retry

    assert answer.status_code == 200, answer.text
    assert [r.status for r in await world.refunds(order_id)] == ["succeeded"]
    payment = await world.payment(order_id)
    assert (payment.refunded_amount, payment.refund_reserved) == (Decimal("30.00"), Decimal("0"))
    assert await world.announced_refunds(order_id) == 1
    assert world.provider.refunded_total == 3000


async def test_refunding_the_rest_of_a_payment_refunded_in_full_is_a_409_that_records_nothing(
    world: World,
) -> None:
    order_id = await world.paid_order()  # 30.00
    assert (await world.refund(order_id)).status_code == 200

    again = await world.refund(order_id)  # no amount: all that is left, which is nothing

    assert again.status_code == 409, again.text
    assert again.json()["message"] == "This payment is already refunded in full."
    assert [r.status for r in await world.refunds(order_id)] == ["succeeded"]
    assert world.provider.refunded_total == 3000


@pytest.mark.parametrize("status", ["failed", "canceled"])
async def test_a_refund_the_provider_answers_as_failed_keeps_the_providers_refund_id(
    world: World, monkeypatch: pytest.MonkeyPatch, status: str
) -> None:
    """Stripe can answer a refund with its own refund object, `failed` or `canceled`: the
    refund row fails, and keeps Stripe's id of it, for whoever reconciles the two."""
    order_id = await world.paid_order()  # 30.00

    async def answered_refused(ref: IntentRef, *, amount: int, idempotency_key: str) -> RefundInfo:
        return RefundInfo(id="re_refused_1", status=status, amount=amount)

    monkeypatch.setattr(world.provider.inner, "refund", answered_refused)

    refused = await world.refund(order_id, "30.00")

    assert refused.status_code == 502 and refused.json()["error"] == "payment_error"
    [row] = await world.refunds(order_id)
    assert (row.status, row.provider_refund_id) == ("failed", "re_refused_1")
    payment = await world.payment(order_id)
    assert (payment.refunded_amount, payment.refund_reserved) == (Decimal("0"), Decimal("0"))


async def test_the_intent_of_a_paid_or_intentless_payment_is_not_cancelled(world: World) -> None:
    """`cancel_unpaid` (an unpaid order was cancelled) leaves alone a payment that succeeded
    meanwhile (its owner refunds it) and one whose intent was never made: no provider call."""
    paid = await world.payment(await world.paid_order())
    order_id = await world.order()
    world.provider.fail_next("create_intent", ProviderFailed())  # no answer: no intent recorded
    no_intent = await world.start_intent(order_id)
    assert no_intent.status_code >= 500, no_intent.text
    intentless = await world.payment(order_id)
    assert (intentless.status, intentless.intent_id) == ("pending", None)
    calls = len(world.provider.calls)

    for payment in (paid, intentless):
        assert await payments_service.cancel_unpaid(outbox(world.app), payment.purpose) is None

    assert world.provider.calls[calls:] == []
    assert (await world.payment_by_id(paid.id)).status == "succeeded"


async def test_cancelling_an_unpaid_intent_answers_the_payments_state_after(world: World) -> None:
    order_id = await world.order()
    made = await world.start_intent(order_id)
    assert made.status_code == 200, made.text
    payment = await world.payment(order_id)

    state = await payments_service.cancel_unpaid(outbox(world.app), payment.purpose)

    assert state == "canceled"
    assert world.provider.calls[-1] == "cancel_intent"
    assert (await world.payment_by_id(payment.id)).status == "canceled"


async def test_confirming_a_paid_order_again_answers_from_our_records_without_the_provider(
    world: World,
) -> None:
    order_id = await world.order()
    headers = world.buyer.headers
    intent = await world.start_intent(order_id)
    assert intent.status_code == 200, intent.text
    paid = await world.client.post(confirm_url(order_id), headers=headers)
    calls = len(world.provider.calls)

    again = await world.client.post(confirm_url(order_id), headers=headers)

    assert paid.status_code == again.status_code == 200, (paid.text, again.text)
    assert paid.json()["message"] == again.json()["message"] == "Payment succeeded."
    assert world.provider.calls[calls:] == []


# --------------------------------------------------------------------------- Stripe's intent


def stripe_intent(status: str, error: dict[str, str] | None) -> dict[str, object]:
    intent: dict[str, object] = {"id": "pi_x", "amount": 900, "currency": "usd", "status": status}
    if error is not None:
        intent["last_payment_error"] = error
    return intent


DECLINED = {"code": "card_declined", "message": "Your card was declined."}


def test_an_intent_waiting_for_a_method_after_a_declined_attempt_is_failed() -> None:
    info = intent_info_from_stripe(stripe_intent("requires_payment_method", DECLINED))

    assert (info.status, info.failure_message) == ("failed", "Your card was declined.")


def test_an_intent_waiting_for_its_first_method_is_pending() -> None:
    assert intent_info_from_stripe(stripe_intent("requires_payment_method", None)).status == (
        "pending"
    )


def test_an_intent_still_processing_after_an_earlier_error_is_pending() -> None:
    assert intent_info_from_stripe(stripe_intent("processing", DECLINED)).status == "pending"


# --------------------------------------------------------------------------- webhooks


class PaidAtStripe(ManualProvider):
    """Stripe as the webhook handler sees it: re-reading an intent finds it paid."""

    name = "stripe"

    async def retrieve_intent(self, ref: IntentRef) -> IntentInfo:
        return IntentInfo(ref.intent_id, "succeeded", ref.amount, ref.currency)


async def test_a_checkout_session_delivered_again_is_a_duplicate_and_stripe_is_not_asked_again(
    make_app: AppFactory,
) -> None:
    app = await make_app(STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET)
    provider = GatedProvider(app, PaidAtStripe()).install()
    user = await make_user(app)
    await stripe_payment(app, user.id, "again", "pi_again")
    completed = {
        "id": "cs_test_again",
        "object": "checkout.session",
        "client_reference_id": "mutants:again",
        "payment_intent": "pi_again",
        "payment_status": "paid",
        "amount_total": 900,
        "currency": "usd",
    }
    payload, headers = signed(event("checkout.session.completed", completed))
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test"
        ) as client:
            first = await client.post("/api/v1/payments/webhook", content=payload, headers=headers)
            again = await client.post("/api/v1/payments/webhook", content=payload, headers=headers)
    finally:
        provider.uninstall()

    assert (first.status_code, first.json()["result"]) == (200, "applied")
    assert (again.status_code, again.json()["result"]) == (200, "duplicate")
    assert provider.calls == ["retrieve_intent"]


@pytest.mark.parametrize("by", ["intent", "purpose"])
async def test_the_payment_is_read_as_stored_even_when_the_session_holds_it(
    world: World, by: str
) -> None:
    """`get_by_intent` and `get_by_purpose` read the row as stored, not the session's copy."""
    order_id = await world.paid_order()
    payment_id = (await world.payment(order_id)).id
    async with world.app.state.sessionmaker() as session:
        held = await session.get(Payment, payment_id)  # a caller keeping the row it read
        assert held is not None and held.refunded_amount == Decimal("0.00")
        assert held.intent_id is not None
        await payments_repository.add_to_refunded(session, payment_id, Decimal("2.50"))

        if by == "intent":
            found = await payments_repository.get_by_intent(session, held.intent_id)
        else:
            found = await payments_repository.get_by_purpose(session, held.purpose)

        assert found is not None and found.refunded_amount == Decimal("2.50")


async def test_an_intent_is_recorded_on_its_own_payment_only(world: World) -> None:
    """A payment left without an intent (the provider did not answer) keeps none while another
    order's intent is recorded, and gets its own when asked again."""
    stalled, other = await world.order(), await world.order()
    world.provider.fail_next("create_intent", ProviderFailed())
    assert (await world.start_intent(stalled)).is_error

    made = await world.start_intent(other)

    assert made.status_code == 200, made.text
    assert (await world.payment(stalled)).intent_id is None
    again = await world.start_intent(stalled)
    assert again.status_code == 200, again.text
    assert again.json()["payment_intent_id"] != made.json()["payment_intent_id"]
    assert (await world.payment(stalled)).intent_id == again.json()["payment_intent_id"]


async def test_a_payment_whose_row_cannot_be_read_after_a_concurrent_insert_is_a_409_to_retry(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The purpose's payment was inserted by a concurrent request whose row this one cannot
    read yet: a 409 that says to retry, rather than a second payment."""
    order_id = await world.order()
    first = await world.start_intent(order_id)
    assert first.status_code == 200, first.text

    async def not_visible_yet(session: AsyncSession, purpose: str) -> Payment | None:
        return None

    monkeypatch.setattr(payments_repository, "get_by_purpose", not_visible_yet)
    again = await world.start_intent(order_id)

    assert again.status_code == 409, again.text
    assert again.json()["message"] == "A payment for this purpose is being created; retry."
    assert await world.count(Payment) == 1

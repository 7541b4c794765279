"""What each handled Stripe event says about its intent (`payments.webhooks.observe`), field by
field: the webhook tests go through the whole route and see only the end state, so a field read
wrong that happens not to change that state went unseen (issue 18's mutation run)."""

from __future__ import annotations

from typing import Any

import pytest

from sellerdesk.payments.providers import IntentInfo, IntentStatus
from sellerdesk.payments.webhooks import Observation, observe


def test_a_failed_payment_is_failed_even_when_stripe_says_the_intent_waits_for_a_method() -> None:
    intent = {"id": "pi_1", "status": "requires_payment_method", "amount": 5000, "currency": "USD"}
    seen = observe("payment_intent.payment_failed", intent)
    assert seen is not None
    assert (seen.info.id, seen.info.status, seen.info.amount, seen.info.currency) == (
        "pi_1",
        "failed",
        5000,
        "usd",
    )
    assert (seen.reread, seen.reference) == (False, None)


def test_only_a_failure_event_turns_a_waiting_intent_into_failed() -> None:
    """An intent still processing, seen through any other event, stays pending."""
    intent = {"id": "pi_9", "status": "processing", "amount": 700, "currency": "usd"}
    seen = observe("payment_intent.succeeded", intent)
    assert seen is not None and seen.info.status == "pending"


def test_a_succeeded_intent_is_taken_as_stripe_sends_it() -> None:
    intent = {"id": "pi_2", "status": "succeeded", "amount": 1250, "currency": "eur"}
    seen = observe("payment_intent.succeeded", intent)
    assert seen is not None
    assert (seen.info.status, seen.info.amount, seen.info.currency) == ("succeeded", 1250, "eur")


@pytest.mark.parametrize(
    ("charge", "status"),
    [
        ({"status": "succeeded", "paid": False}, "succeeded"),
        ({"status": "pending", "paid": True}, "succeeded"),
        ({"status": "pending", "paid": False}, "pending"),
        ({}, "pending"),
    ],
)
def test_a_refunded_charge_proves_its_intent_was_captured(
    charge: dict[str, Any], status: IntentStatus
) -> None:
    """A refund can arrive before `payment_intent.succeeded`: a captured charge says the intent
    succeeded, with the charge's amount, currency and refunded amount."""
    obj = {
        "payment_intent": "pi_3",
        "amount": 5000,
        "currency": "USD",
        "amount_refunded": 1500,
        **charge,
    }
    assert observe("charge.refunded", obj) == Observation(
        IntentInfo(id="pi_3", status=status, amount=5000, currency="usd", amount_refunded=1500)
    )


def test_a_refunded_charge_without_amounts_counts_zero() -> None:
    seen = observe("charge.refunded", {"payment_intent": "pi_4", "paid": True})
    assert seen == Observation(
        IntentInfo(id="pi_4", status="succeeded", amount=0, currency="", amount_refunded=0)
    )


@pytest.mark.parametrize("intent", [None, 42, {"id": "pi_5"}])
def test_a_refunded_charge_without_an_intent_id_says_nothing(intent: Any) -> None:
    assert observe("charge.refunded", {"payment_intent": intent, "paid": True}) is None


def test_a_paid_checkout_session_names_its_intent_our_reference_and_asks_to_reread() -> None:
    session = {
        "payment_status": "paid",
        "payment_intent": "pi_6",
        "amount_total": 900,
        "currency": "GBP",
        "client_reference_id": "credit_purchase:7",
    }
    assert observe("checkout.session.completed", session) == Observation(
        IntentInfo(id="pi_6", status="succeeded", amount=900, currency="gbp"),
        reread=True,
        reference="credit_purchase:7",
    )


def test_a_checkout_session_without_totals_or_reference_still_names_its_intent() -> None:
    session = {"payment_status": "paid", "payment_intent": "pi_7", "client_reference_id": 3}
    assert observe("checkout.session.completed", session) == Observation(
        IntentInfo(id="pi_7", status="succeeded", amount=0, currency=""),
        reread=True,
        reference=None,
    )


@pytest.mark.parametrize(
    "session",
    [
        {"payment_status": "unpaid", "payment_intent": "pi_8"},
        {"payment_status": "paid", "payment_intent": None},
        {"payment_status": "paid", "payment_intent": {"id": "pi_8"}},
    ],
)
def test_an_unpaid_session_or_one_without_an_intent_id_says_nothing(
    session: dict[str, Any],
) -> None:
    assert observe("checkout.session.completed", session) is None


def test_other_event_types_say_nothing() -> None:
    assert observe("customer.created", {"id": "cus_1"}) is None


# --------------------------------------------------------------------------- the signature step


def _settings(secret: str | None) -> Any:
    from tests.conftest import make_settings

    return make_settings(
        "sqlite+aiosqlite:///:memory:", None, "webhooks", STRIPE_WEBHOOK_SECRET=secret
    )


def test_an_unconfigured_webhook_says_which_setting_is_missing() -> None:
    from sellerdesk.errors import ServiceUnavailable
    from sellerdesk.payments.webhooks import verify_event

    with pytest.raises(ServiceUnavailable) as refused:
        verify_event(_settings(None), b"{}", None)
    assert refused.value.message == ("Stripe webhooks are not configured (STRIPE_WEBHOOK_SECRET).")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("not json at all", "The webhook body is not JSON."),
        (
            '{"id": "evt_1", "type": "payment_intent.succeeded"}',
            "The webhook body is not a Stripe event.",
        ),
        (
            '{"id": "evt_1", "type": "x", "data": {"object": []}}',
            "The webhook body is not a Stripe event.",
        ),
    ],
)
def test_a_signed_body_that_is_not_a_stripe_event_is_refused_with_a_reason(
    body: str, message: str
) -> None:
    from sellerdesk.payments.webhooks import WebhookRejected, verify_event
    from tests.stripe_fixtures import WEBHOOK_SECRET, signed

    payload, headers = signed(body)
    with pytest.raises(WebhookRejected) as refused:
        verify_event(_settings(WEBHOOK_SECRET), payload, headers["Stripe-Signature"])
    assert refused.value.message == message

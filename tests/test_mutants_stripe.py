"""How the Stripe provider is set up and how it reads Stripe's errors, each written to kill a
mutant of the full mutation run that the suite let through (issue 18, docs/mutation.md).

Whether an error is *transient* decides what happens to money: a refund whose call failed
transiently stays pending (the settle job asks again under the same key), one Stripe refused
is failed and its amount becomes refundable again. The SDK's own exception classes are raised
into `_call` here, as the SDK raises them from a request.
"""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from sellerdesk.config import Settings
from sellerdesk.payments.providers import PaymentDeclined, ProviderFailed, StripeProvider


def provider(**settings: Any) -> StripeProvider:
    return StripeProvider(Settings(STRIPE_SECRET_KEY="sk_test_mutants", **settings))  # type: ignore[arg-type]


async def failing(exc: Exception) -> dict[str, Any]:
    raise exc


def test_stripe_without_a_secret_key_says_which_setting_is_missing() -> None:
    with pytest.raises(ValueError) as raised:
        StripeProvider(Settings(STRIPE_SECRET_KEY=None))  # type: ignore[arg-type]
    assert str(raised.value) == "PAYMENT_PROVIDER=stripe needs STRIPE_SECRET_KEY"


def test_the_sdk_gets_the_configured_timeout_retries_and_api_base() -> None:
    configured = provider(
        STRIPE_TIMEOUT_SECONDS=7.5,
        STRIPE_MAX_NETWORK_RETRIES=4,
        STRIPE_API_BASE="http://127.0.0.1:8420",
    )
    options = configured._client._requestor._options
    assert configured._http._timeout == 7.5
    assert options.max_network_retries == 4
    assert options.base_addresses["api"] == "http://127.0.0.1:8420"


def test_without_an_api_base_the_sdk_talks_to_stripe_itself() -> None:
    options = provider()._client._requestor._options
    assert options.base_addresses["api"] == "https://api.stripe.com"
    assert options.max_network_retries == 2  # the setting's default


async def test_a_card_decline_is_a_400_with_stripes_message_for_the_customer() -> None:
    decline = stripe.CardError("Your card has insufficient funds.", None, "card_declined")
    with pytest.raises(PaymentDeclined) as raised:
        await provider()._call(failing(decline))
    assert raised.value.message == "Your card has insufficient funds."

    silent = stripe.CardError("", None, "card_declined")
    with pytest.raises(PaymentDeclined) as raised:
        await provider()._call(failing(silent))
    assert raised.value.message == "The card was declined."


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (stripe.APIConnectionError("no answer"), True),
        (stripe.APIError("idempotent request still running", http_status=409), True),
        (stripe.RateLimitError("too many requests", http_status=429), True),
        (stripe.APIError("internal error", http_status=500), True),
        (stripe.APIError("bad gateway", http_status=502), True),
        (stripe.IdempotencyError("key reused with other parameters", http_status=400), True),
        (stripe.InvalidRequestError("no such payment_intent", None, http_status=404), False),
        (stripe.InvalidRequestError("amount too large", None, http_status=400), False),
        (stripe.APIError("gone", http_status=410), False),
        (stripe.APIError("unknown client error", http_status=430), False),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
async def test_only_no_answer_a_busy_key_a_rate_limit_or_a_5xx_is_transient(
    error: stripe.StripeError, transient: bool
) -> None:
    with pytest.raises(ProviderFailed) as raised:
        await provider()._call(failing(error))
    assert raised.value.transient is transient


def test_a_declined_intent_carries_stripes_message_and_a_lower_case_currency() -> None:
    from sellerdesk.payments.providers import intent_info_from_stripe

    declined = intent_info_from_stripe(
        {
            "id": "pi_declined",
            "status": "requires_payment_method",
            "amount": 500,
            "currency": "USD",
            "last_payment_error": {"message": "Your card was declined.", "code": "card_declined"},
        }
    )
    assert (declined.status, declined.amount, declined.currency) == ("failed", 500, "usd")
    assert declined.failure_message == "Your card was declined."


def test_an_intent_missing_its_figures_or_with_an_odd_error_is_read_without_inventing_any() -> None:
    from sellerdesk.payments.providers import intent_info_from_stripe

    bare = intent_info_from_stripe({"id": "pi_bare", "status": "processing"})
    assert (bare.status, bare.amount, bare.currency, bare.amount_refunded) == ("pending", 0, "", 0)
    assert bare.failure_message is None
    odd = intent_info_from_stripe(
        {"id": "pi_odd", "status": "requires_payment_method", "last_payment_error": "err_1"}
    )
    assert odd.failure_message is None  # only an error object carries a message

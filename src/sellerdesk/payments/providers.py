"""Payment providers: Stripe (the official SDK, async) and `manual`, a built-in test gateway.

Every call that creates or moves money carries a deterministic idempotency key chosen by the
service (`order:{id}:payment_intent`, `refund:{id}`), so a retried request or job never makes a
second intent or refund. A refund also carries its key in its metadata, so it can be found
again (`find_refund`) after the provider has forgotten the key (Stripe keeps keys 24 h).
Amounts cross this boundary in minor units (cents).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import structlog

from sellerdesk.config import Settings
from sellerdesk.errors import AppError

log = structlog.get_logger(__name__)

IntentStatus = Literal["pending", "succeeded", "failed", "canceled"]


class PaymentDeclined(AppError):
    """The customer's payment method was refused (a card decline): the customer can retry."""

    status_code = 400
    code = "payment_error"
    message = "The payment was declined."


class PaymentNotCompleted(AppError):
    status_code = 400
    code = "payment_error"
    message = "The payment has not succeeded."


class ProviderFailed(AppError):
    """The provider could not be reached or refused the call: not the customer's fault.

    `transient`: retrying later may work (no answer, a 429 or a 5xx), which the outbox uses to
    choose between a later retry and giving up.
    """

    status_code = 502
    code = "payment_error"
    message = "The payment provider failed; retry later."

    def __init__(
        self, message: str | None = None, *, transient: bool = True, details: Any = None
    ) -> None:
        super().__init__(message, details=details)
        self.transient = transient


@dataclass(frozen=True, slots=True)
class IntentRef:
    """What we stored about an intent: the manual gateway answers from it alone."""

    intent_id: str
    amount: int
    currency: str
    refunded: int = 0


@dataclass(frozen=True, slots=True)
class IntentInfo:
    """The provider's view of one payment intent, in minor units."""

    id: str
    status: IntentStatus
    amount: int
    currency: str
    amount_refunded: int = 0
    client_secret: str | None = None
    failure_message: str | None = None


# The metadata field a refund carries its idempotency key in.
REFUND_KEY_METADATA = "sellerdesk_refund_key"


@dataclass(frozen=True, slots=True)
class RefundInfo:
    id: str
    status: str
    amount: int

    @property
    def accepted(self) -> bool:
        """The provider took the refund on: done (`succeeded`), or on its way to the customer
        (`pending`, `requires_action`: Stripe's slower payment methods). Only `failed` and
        `canceled` give the money back to the merchant."""
        return self.status not in ("failed", "canceled")


@dataclass(frozen=True, slots=True)
class CheckoutInfo:
    """A hosted Checkout page: where to send the buyer, and its intent once Stripe made one."""

    id: str
    url: str
    intent_id: str | None


class PaymentProvider(Protocol):
    """What the payment service needs from a gateway."""

    name: str

    async def create_intent(
        self, *, amount: int, currency: str, idempotency_key: str, metadata: dict[str, str]
    ) -> IntentInfo: ...

    async def retrieve_intent(self, ref: IntentRef) -> IntentInfo: ...

    async def confirm_intent(self, ref: IntentRef) -> IntentInfo:
        """Ask for the intent's state, confirming it when it only waits for confirmation."""
        ...

    async def refund(self, ref: IntentRef, *, amount: int, idempotency_key: str) -> RefundInfo:
        """Refund `amount` of the intent; the same key answers with the same refund."""
        ...

    async def find_refund(self, ref: IntentRef, *, idempotency_key: str) -> RefundInfo | None:
        """The refund of the intent made with `idempotency_key`, or None when there is none."""
        ...

    async def cancel_intent(self, ref: IntentRef) -> IntentInfo:
        """Cancel an intent nobody should pay any more; its state after (a payment that won the
        race stays `succeeded`)."""
        ...

    async def close(self) -> None: ...


class ManualProvider:
    """A test gateway (like Saleor's dummy gateway): intents live in our `payment` table only,
    confirming succeeds, refunds succeed. It lets the whole flow run on a fresh machine."""

    name = "manual"

    async def create_intent(
        self, *, amount: int, currency: str, idempotency_key: str, metadata: dict[str, str]
    ) -> IntentInfo:
        # Derived from the idempotency key, so a retried create yields the same intent id.
        digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]
        intent_id = f"pi_manual_{digest}"
        return IntentInfo(
            id=intent_id,
            status="pending",
            amount=amount,
            currency=currency,
            client_secret=f"{intent_id}_secret_{secrets.token_urlsafe(18)}",
        )

    async def retrieve_intent(self, ref: IntentRef) -> IntentInfo:
        # Our table is the record: only an explicit confirm moves a manual intent.
        return IntentInfo(ref.intent_id, "pending", ref.amount, ref.currency, ref.refunded)

    async def confirm_intent(self, ref: IntentRef) -> IntentInfo:
        return IntentInfo(ref.intent_id, "succeeded", ref.amount, ref.currency, ref.refunded)

    async def refund(self, ref: IntentRef, *, amount: int, idempotency_key: str) -> RefundInfo:
        digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]
        return RefundInfo(id=f"re_manual_{digest}", status="succeeded", amount=amount)

    async def find_refund(self, ref: IntentRef, *, idempotency_key: str) -> RefundInfo | None:
        # No money moves and nothing is kept: making the refund again is the same refund.
        return None

    async def cancel_intent(self, ref: IntentRef) -> IntentInfo:
        return IntentInfo(ref.intent_id, "canceled", ref.amount, ref.currency, ref.refunded)

    async def close(self) -> None:
        return None


def _status_of(intent: Any) -> IntentStatus:
    status = intent.get("status")
    if status == "succeeded":
        return "succeeded"
    if status == "canceled":
        return "canceled"
    if status == "requires_payment_method" and intent.get("last_payment_error"):
        return "failed"  # an attempt was declined; the customer may try another method
    return "pending"


def intent_info_from_stripe(intent: dict[str, Any]) -> IntentInfo:
    """Our view of a Stripe PaymentIntent (an API response or a webhook's object)."""
    charge = intent.get("latest_charge")
    refunded = int(charge.get("amount_refunded") or 0) if isinstance(charge, dict) else 0
    error = intent.get("last_payment_error") or {}
    return IntentInfo(
        id=str(intent["id"]),
        status=_status_of(intent),
        amount=int(intent.get("amount") or 0),
        currency=str(intent.get("currency") or "").lower(),
        amount_refunded=refunded,
        client_secret=intent.get("client_secret"),
        failure_message=error.get("message") if isinstance(error, dict) else None,
    )


class StripeProvider:
    """Stripe through the official SDK's async methods over its HTTPX client (never blocks)."""

    name = "stripe"

    def __init__(self, settings: Settings) -> None:
        if not settings.STRIPE_SECRET_KEY:
            raise ValueError("PAYMENT_PROVIDER=stripe needs STRIPE_SECRET_KEY")
        import stripe  # lazy: ~0.1 s and ~7 MiB of a cold start, and `manual` never needs it

        self._http = stripe.HTTPXClient(timeout=settings.STRIPE_TIMEOUT_SECONDS)
        base = {"api": settings.STRIPE_API_BASE} if settings.STRIPE_API_BASE else None
        self._client = stripe.StripeClient(
            settings.STRIPE_SECRET_KEY,
            base_addresses=base,  # type: ignore[arg-type]
            max_network_retries=settings.STRIPE_MAX_NETWORK_RETRIES,
            http_client=self._http,
        )
        self._method_types = settings.STRIPE_PAYMENT_METHOD_TYPES

    async def create_intent(
        self, *, amount: int, currency: str, idempotency_key: str, metadata: dict[str, str]
    ) -> IntentInfo:
        params: dict[str, Any] = {
            "amount": amount,
            "currency": currency,
            # localstripe (and older accounts) refuse automatic_payment_methods.
            "payment_method_types": self._method_types,
            "metadata": metadata,
        }
        intent = await self._call(
            self._client.v1.payment_intents.create_async(
                params,  # type: ignore[arg-type]
                {"idempotency_key": idempotency_key},
            )
        )
        return intent_info_from_stripe(intent)

    async def retrieve_intent(self, ref: IntentRef) -> IntentInfo:
        intent = await self._call(
            self._client.v1.payment_intents.retrieve_async(
                ref.intent_id, {"expand": ["latest_charge"]}
            )
        )
        return intent_info_from_stripe(intent)

    async def confirm_intent(self, ref: IntentRef) -> IntentInfo:
        intent = await self._call(
            self._client.v1.payment_intents.retrieve_async(
                ref.intent_id, {"expand": ["latest_charge"]}
            )
        )
        if intent.get("status") != "requires_confirmation":
            return intent_info_from_stripe(intent)
        # Server-side confirmation of the method the client attached; the key names that
        # method, so a retry never confirms twice but a new method gets its own attempt.
        method = intent.get("payment_method")
        method_id = method.get("id") if isinstance(method, dict) else method
        try:
            confirmed = await self._call(
                self._client.v1.payment_intents.confirm_async(
                    ref.intent_id,
                    {"expand": ["latest_charge"]},
                    {"idempotency_key": f"{ref.intent_id}:confirm:{method_id}"},
                )
            )
        except PaymentDeclined:
            # The decline is now on the intent (requires_payment_method + last_payment_error).
            intent = await self._call(
                self._client.v1.payment_intents.retrieve_async(
                    ref.intent_id, {"expand": ["latest_charge"]}
                )
            )
            return intent_info_from_stripe(intent)
        return intent_info_from_stripe(confirmed)

    async def refund(self, ref: IntentRef, *, amount: int, idempotency_key: str) -> RefundInfo:
        refund = await self._call(
            self._client.v1.refunds.create_async(
                {
                    "payment_intent": ref.intent_id,
                    "amount": amount,
                    "metadata": {REFUND_KEY_METADATA: idempotency_key},
                },
                {"idempotency_key": idempotency_key},
            )
        )
        return _refund_info(refund, amount)

    async def find_refund(self, ref: IntentRef, *, idempotency_key: str) -> RefundInfo | None:
        # The newest 100 refunds of the intent: more refunds than that of one payment do not
        # happen in a shop (each needs an admin or a cancel).
        listed = await self._call(
            self._client.v1.refunds.list_async({"payment_intent": ref.intent_id, "limit": 100})
        )
        for refund in listed.get("data") or []:
            if (refund.get("metadata") or {}).get(REFUND_KEY_METADATA) == idempotency_key:
                return _refund_info(refund, 0)
        return None

    async def cancel_intent(self, ref: IntentRef) -> IntentInfo:
        try:
            intent = await self._call(
                self._client.v1.payment_intents.cancel_async(
                    ref.intent_id, {}, {"idempotency_key": f"{ref.intent_id}:cancel"}
                )
            )
        except ProviderFailed as exc:
            if exc.transient:
                raise
            # Refused (e.g. it succeeded or was canceled meanwhile): report its real state.
            return await self.retrieve_intent(ref)
        return intent_info_from_stripe(intent)

    async def create_checkout(
        self,
        *,
        amount: int,
        currency: str,
        name: str,
        reference: str,
        success_url: str,
        cancel_url: str,
        idempotency_key: str,
        metadata: dict[str, str],
    ) -> CheckoutInfo:
        """A Checkout Session (Stripe's hosted payment page) for one line of `amount`.

        `reference` (our payment's purpose) comes back as `client_reference_id` in
        `checkout.session.completed`, which ties the intent Checkout creates to our payment.
        """
        params: dict[str, Any] = {
            "mode": "payment",
            "client_reference_id": reference,
            "success_url": success_url,
            "cancel_url": cancel_url,
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": currency,
                        "unit_amount": amount,
                        "product_data": {"name": name},
                    },
                }
            ],
            "payment_intent_data": {"metadata": metadata},
            "metadata": metadata,
        }
        checkout = await self._call(
            self._client.v1.checkout.sessions.create_async(
                params,  # type: ignore[arg-type]
                {"idempotency_key": idempotency_key},
            )
        )
        intent = checkout.get("payment_intent")
        return CheckoutInfo(
            id=str(checkout["id"]),
            url=str(checkout["url"]),
            intent_id=intent if isinstance(intent, str) else None,
        )

    async def close(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]

    async def _call(self, request: Any) -> dict[str, Any]:
        """Await an SDK call; Stripe's errors become ours (declines 400, the rest 502)."""
        import stripe

        try:
            obj = await request
        except stripe.CardError as exc:
            raise PaymentDeclined(exc.user_message or "The card was declined.") from exc
        except stripe.StripeError as exc:
            log.warning(
                "stripe_error",
                error=type(exc).__name__,
                http_status=exc.http_status,
                code=exc.code,
                request_id=exc.request_id,
            )
            status = exc.http_status
            # 409: another request with the same idempotency key is still running; an
            # idempotency error means we cannot know what the key did. Neither is a refusal.
            transient = (
                status is None
                or status in (409, 429)
                or status >= 500
                or isinstance(exc, stripe.IdempotencyError)
            )
            raise ProviderFailed(transient=transient) from exc
        result: dict[str, Any] = obj.to_dict()
        return result


def _refund_info(refund: dict[str, Any], amount: int) -> RefundInfo:
    return RefundInfo(
        id=str(refund["id"]),
        status=str(refund.get("status") or "succeeded"),
        amount=int(refund.get("amount") or amount),
    )


def create_provider(settings: Settings) -> PaymentProvider:
    """The provider chosen by PAYMENT_PROVIDER (default: stripe when a key is set, else manual)."""
    if settings.payment_provider == "stripe":
        return StripeProvider(settings)
    return ManualProvider()

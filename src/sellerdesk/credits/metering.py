"""The charge step every paid data route goes through.

validate (FastAPI, before the route runs: a 422 is never charged) → rate limit (every valid
call counts, free repeats included) → repeat window → atomic charge → serve. How the charge
meets the lookup depends on where the answer comes from:

- **From our own database** (`upstream=False`: the `local` source, the batch after resolving):
  the answer is computed first, then charged in the transaction that commits it, with the
  outcome `served` (and the stored `Idempotency-Key` response). One transaction; a not-found
  or a failed lookup writes nothing to the ledger, and a 402 serves nothing.
- **From another service** (`upstream=True`: SP-API): the charge with its `credit_charge` row
  is committed in its own short transaction before the lookup (no account lock is ever held
  across an upstream call) → serve → the outcome `served` recorded in the transaction that
  commits the answer → on not-found or any failure the compensating `refund` entry in the same
  request, so the net charge is 0 and the ledger shows both entries.

No charge is left without its compensation: when the refund itself fails (the database
blinked) or the call never ends normally (`CancelledError`: worker stopped or killed mid-call),
the charge keeps no outcome and `credits.service.sweep_unsettled_charges` refunds it once it
is older than `CREDITS_SWEEP_AFTER_SECONDS`.

With `Idempotency-Key` (the paid routes are `@idempotent`), one client key is charged at most
once while it lives (24 h): the charge is keyed by it in the ledger, and a retry that takes over
the key from an attempt that outlived `IDEMPOTENCY_LEASE_SECONDS` carries on with that
attempt's charge instead of charging again (`X-Credits-Charged: 0`). A retry after a failure
that was refunded is charged again (net: at most one charge per key); a replayed answer says
`X-Credits-Charged: 0`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated, TypeVar

import structlog
from fastapi import Depends, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from sellerdesk.apikeys.dependencies import Payer
from sellerdesk.apikeys.service import PayerIdentity
from sellerdesk.credits import service
from sellerdesk.credits.errors import InsufficientCredits
from sellerdesk.credits.pricing import PriceBook, app_price_book
from sellerdesk.db import SessionDep, commit
from sellerdesk.errors import AppError, NotFound
from sellerdesk.kit import metrics
from sellerdesk.kit.idempotency import client_key
from sellerdesk.kit.ratelimit import PaidCallLimits

log = structlog.get_logger(__name__)

T = TypeVar("T")
R = TypeVar("R")


def paid_call_limits(request: Request) -> PaidCallLimits:
    """The app's paid-route limits (one per app, over its limiter's storage)."""
    limits: PaidCallLimits | None = getattr(request.app.state, "paid_call_limits", None)
    if limits is None:
        settings = request.app.state.settings
        limits = PaidCallLimits(
            request.app.state.limiter, settings.RATE_LIMIT_DEFAULT, settings.RATE_LIMIT_GLOBAL
        )
        request.app.state.paid_call_limits = limits
    return limits


class Meter:
    """Charges the payer of one paid call; build it with `MeterDep`."""

    def __init__(
        self,
        request: Request,
        response: Response,
        session: SessionDep,
        payer: Payer,
    ) -> None:
        self.request = request
        self.session: AsyncSession = session
        self.payer: PayerIdentity = payer
        self.response = response
        self.repeat_window: int = request.app.state.settings.CREDITS_REPEAT_WINDOW
        self.limits = paid_call_limits(request)
        self.prices: PriceBook = app_price_book(request)
        self.headers: dict[str, str] = {}

    @property
    def user_id(self) -> int:
        """The paying user (lets `@idempotent(user_param="meter")` key requests per user)."""
        return self.payer.user_id

    async def single(
        self,
        endpoint: str,
        code: str,
        serve: Callable[[], Awaitable[T | None]],
        *,
        not_found: str = "Not found.",
        upstream: bool = True,
    ) -> T:
        """Charge for one code and serve it; nothing is charged (net) when nothing is served.

        `upstream=False` when `serve` only reads our own database: one transaction.
        """
        if not upstream:
            return await self._single_in_one_transaction(endpoint, code, serve, not_found)
        with self._answering():
            await self._count_call()
            cost = await self.prices.cost(self.session, endpoint)
            charge = await service.charge(
                self.session,
                user_id=self.payer.user_id,
                endpoint=endpoint,
                codes=[code],
                unit_cost=cost,
                repeat_window=self.repeat_window,
                reference=code,
                idempotency_key=client_key(self.request),
            )
            await commit(self.session)
            # From here on the charge is committed: an exception gives it back at once, and a
            # cancellation (BaseException, not caught) leaves it to the sweep.
            try:
                result = await serve()
                if result is None:
                    raise NotFound(not_found)
            except Exception as exc:
                await self._give_back(charge, exc)
                raise
            await service.settle_served(self.session, charge)
            metrics.CREDITS_CHARGED.inc(charge.credits)
            self._credit_headers(charge.credits, charge.balance)
            return result

    async def _single_in_one_transaction(
        self,
        endpoint: str,
        code: str,
        serve: Callable[[], Awaitable[T | None]],
        not_found: str,
    ) -> T:
        # The answer first, read in this request's transaction; the charge after it, in the
        # same transaction, committed with the answer: a not-found or a failure writes nothing.
        with self._answering():
            await self._count_call()
            result = await serve()
            if result is None:
                balance = await service.balance_of(self.session, self.payer.user_id)
                self._credit_headers(0, balance.balance)
                raise NotFound(not_found)
            await self._charge_codes(endpoint, [code], reference=code)
            return result

    async def batch(
        self,
        endpoint: str,
        resolve: Callable[[], Awaitable[list[R]]],
        found_code: Callable[[R], str | None],
    ) -> tuple[list[R], int]:
        """Resolve every code first, then charge once per found code not paid for recently.

        One ledger entry for the whole batch; short of credits → 402 and nothing charged.
        """
        with self._answering():
            await self._count_call()
            # End the read transaction of authentication: resolving may call upstream.
            await commit(self.session)
            results = await resolve()
            found = list(dict.fromkeys(c for c in map(found_code, results) if c is not None))
            charge = await self._charge_codes(
                endpoint, found, reference=f"batch: {len(found)} codes found"
            )
            return results, charge.credits

    async def _charge_codes(
        self, endpoint: str, codes: Sequence[str], *, reference: str
    ) -> service.Charge:
        """Charge for an answer already computed, in the transaction that commits it."""
        cost = await self.prices.cost(self.session, endpoint)
        charge = await service.charge_served(
            self.session,
            user_id=self.payer.user_id,
            endpoint=endpoint,
            codes=codes,
            unit_cost=cost,
            repeat_window=self.repeat_window,
            reference=reference,
            idempotency_key=client_key(self.request),
        )
        metrics.CREDITS_CHARGED.inc(charge.credits)
        self._credit_headers(charge.credits, charge.balance)
        return charge

    @contextmanager
    def _answering(self) -> Iterator[None]:
        """Around a paid call: its error carries the credit and rate headers gathered so far,
        and every answer gets them."""
        try:
            yield
        except AppError as exc:
            self._error_headers(exc)
            raise
        finally:
            self.response.headers.update(self.headers)

    async def _count_call(self) -> None:
        quota = await self.limits.hit(self.payer.rate_key)
        self.headers.update(quota.headers())

    async def _give_back(self, charge: service.Charge, exc: Exception) -> None:
        """The compensating entry, committed before the error response goes out.

        If it cannot be written (the database blinked), the charge keeps no outcome and the
        sweep refunds it later: the credit is never lost, only late.
        """
        if charge.charge_id is None:
            self._credit_headers(0, charge.balance)
            return
        reason = exc.code if isinstance(exc, AppError) else "internal_error"
        try:
            # Whatever the failed lookup wrote is discarded, not committed with the refund.
            await self.session.rollback()
            balance = await service.refund_charge(self.session, charge.charge_id, reason)
            if balance is None:  # already settled elsewhere (a retry under the key, the sweep)
                balance = (await service.balance_of(self.session, charge.user_id)).balance
            await commit(self.session)
        except Exception:
            log.warning(
                "credit_refund_left_to_sweep",
                user_id=charge.user_id,
                charge_id=charge.charge_id,
                exc_info=True,
            )
            await self._rollback_quietly()
            self.headers["X-Credits-Charged"] = "0"
            return
        self._credit_headers(0, balance)

    async def _rollback_quietly(self) -> None:
        try:
            await self.session.rollback()
        except Exception:
            log.warning("rollback_failed", exc_info=True)

    def _error_headers(self, exc: AppError) -> None:
        if isinstance(exc, InsufficientCredits):
            self._credit_headers(0, exc.balance)
        self.headers.setdefault("X-Credits-Charged", "0")
        exc.headers = {**(exc.headers or {}), **self.headers}

    def _credit_headers(self, charged: int, remaining: int) -> None:
        self.headers["X-Credits-Charged"] = str(charged)
        self.headers["X-Credits-Remaining"] = str(remaining)


async def get_meter(
    request: Request, response: Response, session: SessionDep, payer: Payer
) -> Meter:
    # A coroutine, not the class itself: FastAPI runs a sync dependency in its threadpool.
    return Meter(request, response, session, payer)


MeterDep = Annotated[Meter, Depends(get_meter)]

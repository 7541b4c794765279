"""A payment provider that tests can slow down, cut off and fail, and a commit that fails once.

`GatedProvider` wraps a real provider: the manual gateway by default, which it gives a
provider's memory of refunds by idempotency key (Stripe answers a repeated key with the refund
it already made, and finds a refund by its key): `refunds_made` is what the provider paid out,
whatever our database says. Wrapping Stripe (localstripe), it passes every call through and
Stripe's own refund list is the record.

- `hold(operation)`: the next call of `operation` (`create_intent`, `confirm_intent`,
  `refund`, ...) waits at the gate until `release()`; `entered` is set once it waits there.
  With `after=True` the call is made first and the answer held back (the provider already
  acted when the caller is cut off).
- `fail_next(operation, exc)`: the next call of `operation` raises `exc` instead.
- `fail_commit_after(operation)`: the next database commit of the task that called
  `operation`, after the call returned, fails as if the connection dropped at COMMIT (other
  tasks, such as the outbox's, commit as usual).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import FastAPI
from sqlalchemy import event
from sqlalchemy.engine import Connection

from sellerdesk.payments import service as payments_service
from sellerdesk.payments.providers import (
    IntentInfo,
    IntentRef,
    ManualProvider,
    PaymentProvider,
    RefundInfo,
)

T = TypeVar("T")


class CommitFails(ConnectionResetError):
    """The database connection dropped at COMMIT (injected)."""


class GatedProvider:
    def __init__(self, app: FastAPI, inner: PaymentProvider | None = None) -> None:
        self.app = app
        self.remembers = inner is None  # the manual gateway has no memory of its own
        self.inner: PaymentProvider = inner or ManualProvider()
        self.name = self.inner.name
        self.calls: list[str] = []
        self.refunds_made: dict[str, RefundInfo] = {}
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()
        self.gate.set()
        self._held: tuple[str, bool] | None = None
        self._failures: dict[str, BaseException] = {}
        self._commit_armed_by: str | None = None
        self._commit_fails_in: asyncio.Task[Any] | None = None
        event.listen(app.state.engine.sync_engine, "commit", self._on_commit)

    def install(self) -> GatedProvider:
        """Make this the app's provider (routes, outbox handlers)."""
        self.app.state.payments = self
        payments_service.register_provider(self.app.state.engine, self)
        return self

    def uninstall(self) -> None:
        """Open the gate and stop watching commits (the app's own provider is closed by the
        app's shutdown, through `close`)."""
        self.gate.set()
        if event.contains(self.app.state.engine.sync_engine, "commit", self._on_commit):
            event.remove(self.app.state.engine.sync_engine, "commit", self._on_commit)

    # ----------------------------------------------------------------- what tests arrange

    def hold(self, operation: str, *, after: bool = False) -> None:
        self._held = (operation, after)
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    def release(self) -> None:
        self.gate.set()

    def fail_next(self, operation: str, exc: BaseException) -> None:
        self._failures[operation] = exc

    def fail_commit_after(self, operation: str) -> None:
        self._commit_armed_by = operation

    @property
    def refunded_total(self) -> int:
        """Minor units the provider refunded in all."""
        return sum(info.amount for info in self.refunds_made.values())

    # ----------------------------------------------------------------- the provider

    async def create_intent(
        self, *, amount: int, currency: str, idempotency_key: str, metadata: dict[str, str]
    ) -> IntentInfo:
        return await self._call(
            "create_intent",
            lambda: self.inner.create_intent(
                amount=amount, currency=currency, idempotency_key=idempotency_key, metadata=metadata
            ),
        )

    async def retrieve_intent(self, ref: IntentRef) -> IntentInfo:
        return await self._call("retrieve_intent", lambda: self.inner.retrieve_intent(ref))

    async def confirm_intent(self, ref: IntentRef) -> IntentInfo:
        return await self._call("confirm_intent", lambda: self.inner.confirm_intent(ref))

    async def cancel_intent(self, ref: IntentRef) -> IntentInfo:
        return await self._call("cancel_intent", lambda: self.inner.cancel_intent(ref))

    async def refund(self, ref: IntentRef, *, amount: int, idempotency_key: str) -> RefundInfo:
        async def once() -> RefundInfo:
            if not self.remembers:
                return await self.inner.refund(ref, amount=amount, idempotency_key=idempotency_key)
            if idempotency_key not in self.refunds_made:  # a repeated key: the same refund
                self.refunds_made[idempotency_key] = await self.inner.refund(
                    ref, amount=amount, idempotency_key=idempotency_key
                )
            return self.refunds_made[idempotency_key]

        return await self._call("refund", once)

    async def find_refund(self, ref: IntentRef, *, idempotency_key: str) -> RefundInfo | None:
        async def look() -> RefundInfo | None:
            if self.remembers:
                return self.refunds_made.get(idempotency_key)
            return await self.inner.find_refund(ref, idempotency_key=idempotency_key)

        return await self._call("find_refund", look)

    async def close(self) -> None:
        await self.inner.close()

    async def _call(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        self.calls.append(operation)
        if (failure := self._failures.pop(operation, None)) is not None:
            raise failure
        held = self._held is not None and self._held[0] == operation
        if held and self._held is not None and not self._held[1]:
            self._held = None
            self.entered.set()
            await self.gate.wait()
        result = await call()
        if held and self._held is not None and self._held[1]:
            self._held = None
            self.entered.set()
            await self.gate.wait()
        if self._commit_armed_by == operation:
            self._commit_armed_by, self._commit_fails_in = None, asyncio.current_task()
        return result

    def _on_commit(self, _: Connection) -> Any:
        # Runs in SQLAlchemy's greenlet inside the committing task's step.
        if self._commit_fails_in is not None and asyncio.current_task() is self._commit_fails_in:
            self._commit_fails_in = None
            raise CommitFails("injected: the connection dropped at COMMIT")
        return None

"""Credit helpers for tests: grants, prices, API keys, a test-only paid route, ledger checks."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, FastAPI
from pydantic import Field, StringConstraints
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from sellerdesk.amazon.providers import LocalSource
from sellerdesk.amazon.schemas import AsinProduct
from sellerdesk.credits.metering import MeterDep
from sellerdesk.errors import AppError
from sellerdesk.kit.types import InputModel
from sellerdesk.models import CreditAccount, CreditLedger
from tests.factories import Account, register

Code = Annotated[str, StringConstraints(pattern=r"^[A-Z0-9]{10}$")]


class UpstreamDown(AppError):
    status_code = 502
    code = "upstream_unavailable"
    message = "The data source did not answer."


class CodeQuery(InputModel):
    code: Code


class BatchQuery(InputModel):
    codes: Annotated[list[Code], Field(min_length=1, max_length=1000)]


def fake_source(code: str) -> dict[str, Any] | None:
    """Codes starting NF are unknown, UP fail upstream, BOOM crash; the rest are found."""
    if code.startswith("NF"):
        return None
    if code.startswith("UP"):
        raise UpstreamDown()
    if code.startswith("BOOM"):
        raise RuntimeError("the data source broke")
    return {"code": code, "title": f"Product {code}"}


paid_test_router = APIRouter(prefix="/api/v1/test-paid")


@paid_test_router.post("/lookup")
async def paid_lookup(body: CodeQuery, meter: MeterDep) -> dict[str, Any]:
    """A paid route over a fake data source (tests only)."""

    async def serve() -> dict[str, Any] | None:
        return fake_source(body.code)

    return await meter.single("asin_lookup", body.code, serve, not_found="Unknown code.")


@paid_test_router.post("/batch")
async def paid_batch(body: BatchQuery, meter: MeterDep) -> dict[str, Any]:
    """A paid batch over the fake data source (tests only)."""

    async def resolve() -> list[dict[str, Any]]:
        return [
            {"code": c, "status": "found" if fake_source(c) else "not_found"} for c in body.codes
        ]

    results, charged = await meter.batch(
        "fnsku_conversion", resolve, lambda r: r["code"] if r["status"] == "found" else None
    )
    return {"results": results, "charged": charged}


class GatedSource(LocalSource):
    """The local source; the next `hold` product lookups wait at the gate, then run `then`.

    `entered` is set once all of them are waiting there. It stands for a slow upstream, so the
    paid routes charge before its lookups, as they do for SP-API."""

    calls_upstream = True

    def __init__(self) -> None:
        self.hold = 0
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()
        self.then: Callable[[], Awaitable[None]] | None = None

    def close_gate(self, lookups: int = 1) -> None:
        self.hold, self.entered, self.gate = lookups, asyncio.Event(), asyncio.Event()

    async def product(
        self, session: AsyncSession, user_id: int, asin: str, marketplace: str
    ) -> AsinProduct | None:
        if self.hold > 0:
            self.hold -= 1
            if self.hold == 0:
                self.entered.set()
            await self.gate.wait()
            if self.then is not None:
                await self.then()
        return await super().product(session, user_id, asin, marketplace)


def mount_paid_test_routes(app: FastAPI) -> FastAPI:
    app.include_router(paid_test_router)
    return app


async def grant(
    client: httpx.AsyncClient, admin: Account, user_id: int, amount: int, reason: str = "test"
) -> httpx.Response:
    return await client.post(
        "/api/v1/admin/credits/grant",
        json={"user_id": user_id, "amount": amount, "reason": reason},
        headers=admin.headers,
    )


async def funded_with_mappings(
    client: httpx.AsyncClient, admin: Account, credits: int, mappings: int = 5
) -> Account:
    """A new user granted `credits`, whose uploaded FBA inventory report maps FNSKU
    X0000000n to ASIN B00000000n for n in 1..`mappings` (so the `local` source finds them)."""
    user = await register(client)
    assert (await grant(client, admin, user.id, credits)).status_code == 200
    report = "sku\tfnsku\tasin\tproduct-name\n" + "\n".join(
        f"SKU-{n}\tX0{n:08d}\tB0{n:08d}\tProduct {n}" for n in range(1, mappings + 1)
    )
    uploaded = await client.post(
        "/api/v1/conversion/inventory-report",
        files={"file": ("report.txt", report.encode(), "text/tab-separated-values")},
        headers=user.headers,
    )
    assert uploaded.status_code == 200, uploaded.text
    return user


async def set_price(client: httpx.AsyncClient, admin: Account, endpoint: str, credits: int) -> None:
    response = await client.patch(
        f"/api/v1/admin/credits/pricing/{endpoint}",
        json={"credits": credits},
        headers=admin.headers,
    )
    assert response.status_code == 200, response.text


async def create_key(
    client: httpx.AsyncClient, account: Account, name: str = "k"
) -> dict[str, Any]:
    response = await client.post("/api/v1/api-keys", json={"name": name}, headers=account.headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def balance(client: httpx.AsyncClient, account: Account) -> int:
    response = await client.get("/api/v1/credits", headers=account.headers)
    assert response.status_code == 200, response.text
    value: int = response.json()["balance"]
    return value


async def ledger(app: FastAPI, user_id: int) -> list[CreditLedger]:
    async with app.state.sessionmaker() as session:
        rows = await session.scalars(
            select(CreditLedger).where(CreditLedger.user_id == user_id).order_by(CreditLedger.id)
        )
        return list(rows)


async def assert_ledger_consistent(app: FastAPI) -> None:
    """For every account: balance == sum(ledger amounts) >= 0, and each balance_after adds up."""
    async with app.state.sessionmaker() as session:
        accounts = await session.execute(select(CreditAccount.user_id, CreditAccount.balance))
        balances = {row[0]: row[1] for row in accounts}
        totals = await session.execute(
            select(CreditLedger.user_id, func.sum(CreditLedger.amount)).group_by(
                CreditLedger.user_id
            )
        )
        sums = {row[0]: row[1] for row in totals}
        entries = (
            await session.execute(
                select(
                    CreditLedger.user_id, CreditLedger.amount, CreditLedger.balance_after
                ).order_by(CreditLedger.user_id, CreditLedger.id)
            )
        ).all()
        running: dict[int, int] = {}
        for user_id, amount, balance_after in entries:
            running[user_id] = running.get(user_id, 0) + amount
            assert running[user_id] == balance_after, (user_id, amount, balance_after)
    for user_id in set(balances) | set(sums):
        assert balances.get(user_id, 0) == int(sums.get(user_id) or 0), user_id
        assert balances.get(user_id, 0) >= 0

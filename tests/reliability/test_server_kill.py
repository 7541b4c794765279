"""SIGKILL of a server process in the middle of concurrent checkouts and paid calls, then a
restart: `sellerdesk check` finds no violation, and every paid call cut off after its charge
gets its credit back through the sweep (`credits.service.sweep_unsettled_charges`, the job
`sweep_unsettled_charges` runs).

The paid calls go to the SP-API fake (`tests/fakes/spapi.py`), which holds each answer for a
while: the kill lands while calls are charged and waiting upstream, as a crash in production
would.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from sellerdesk.credits import service as credits_service
from sellerdesk.models import CreditAccount, CreditCharge, Order
from tests.conftest import make_settings
from tests.fakes.spapi import catalog_item, serve_fake
from tests.orders_factories import ADDRESS
from tests.reliability.harness import Figures, Stack, Tally, check_lines, client, until
from tests.spapi_helpers import spapi_settings

pytestmark = pytest.mark.reliability

USERS = 8
PAID_CALLS_PER_USER = 6
CREDITS = 50
SPREAD_SECONDS = 4.0  # the calls start at random times within this
UPSTREAM_SECONDS = 1.5  # how long the fake holds each answer
SERVED_BEFORE_KILL = 3
IN_FLIGHT_AT_KILL = 6
SWEEP_AFTER_SECONDS = 2


async def test_sigkill_of_a_server_during_checkouts_and_paid_calls(figures: Figures) -> None:
    rng = random.Random(15_003)
    asins = [f"B0{uuid.uuid4().hex[:8].upper()}" for _ in range(USERS * PAID_CALLS_PER_USER)]
    with serve_fake() as fake:
        fake.hang_seconds = UPSTREAM_SECONDS
        fake.catalog = {asin: catalog_item(asin) for asin in asins}
        upstream = spapi_settings(
            fake,
            regions=("NA",),
            SPAPI_TIMEOUT_SECONDS=10,
            SPAPI_DEFAULT_RATE=1000,
            SPAPI_DEFAULT_BURST=1000,
            SPAPI_MAX_WAIT_SECONDS=0,
        )
        settings = {
            **{key: str(value) for key, value in upstream.items()},
            "CREDITS_REPEAT_WINDOW": "0",
            "CREDITS_SWEEP_AFTER_SECONDS": str(SWEEP_AFTER_SECONDS),
        }
        async with Stack.open("kill", **settings) as stack:
            victim = await stack.serve()
            stocked = await stack.stocked_products()
            tally = Tally()
            async with client(victim) as http:
                await stack.login_admin(http)
                users = [
                    await stack.user(http, credits=CREDITS, label="kill") for _ in range(USERS)
                ]
                for _, _, headers in users:
                    product = rng.choice(stocked)
                    answer = await http.put(
                        f"/api/v1/cart/items/{product}", json={"quantity": 2}, headers=headers
                    )
                    assert answer.status_code == 200, answer.text

                async def paid(headers: dict[str, str], asin: str) -> None:
                    await asyncio.sleep(rng.uniform(0, SPREAD_SECONDS))
                    body = {"asin": asin}
                    await tally.call(
                        "paid", http.post("/api/v1/product/asin", json=body, headers=headers)
                    )

                async def checkout(headers: dict[str, str]) -> None:
                    await asyncio.sleep(rng.uniform(0, SPREAD_SECONDS * 1.5))
                    body = {"shipping_address": ADDRESS}
                    await tally.call(
                        "checkout", http.post("/api/v1/orders", json=body, headers=headers)
                    )

                calls = [
                    paid(headers, asins[n * PAID_CALLS_PER_USER + k])
                    for n, (_, _, headers) in enumerate(users)
                    for k in range(PAID_CALLS_PER_USER)
                ]
                load = asyncio.gather(*calls, *(checkout(headers) for _, _, headers in users))
                started = time.monotonic()
                # The kill comes once some calls were served and others are charged and wait
                # upstream.
                async with stack.engine() as engine:

                    async def ripe() -> bool:
                        async with engine.connect() as conn:
                            outcomes = dict(
                                (
                                    await conn.execute(
                                        select(CreditCharge.outcome, func.count()).group_by(
                                            CreditCharge.outcome
                                        )
                                    )
                                ).all()
                            )
                        return (
                            outcomes.get("served", 0) >= SERVED_BEFORE_KILL
                            and outcomes.get(None, 0) >= IN_FLIGHT_AT_KILL
                        )

                    await until(ripe, 30, "calls served and calls in flight", step=0.05)
                killed_at = time.monotonic()
                stack.kill(victim)
                await load

            restarted = await stack.serve()
            restart_seconds = time.monotonic() - killed_at

            async with stack.engine() as engine:
                sessionmaker = async_sessionmaker(engine, expire_on_commit=False)

                async def scalar(statement: object) -> int:
                    async with sessionmaker() as session:
                        return int(await session.scalar(statement) or 0)  # type: ignore[arg-type]

                unsettled = await scalar(
                    select(func.count())
                    .select_from(CreditCharge)
                    .where(CreditCharge.outcome.is_(None))
                )
                await asyncio.sleep(SWEEP_AFTER_SECONDS + 0.5)
                before_sweep = await stack.check()
                swept = await credits_service.sweep_unsettled_charges(
                    sessionmaker,
                    make_settings(
                        stack.database_url,
                        None,
                        "kill",
                        CREDITS_SWEEP_AFTER_SECONDS=SWEEP_AFTER_SECONDS,
                    ),
                )
                after = await stack.check()
                served = await scalar(
                    select(func.count())
                    .select_from(CreditCharge)
                    .where(CreditCharge.outcome == "served")
                )
                refunded = await scalar(
                    select(func.count())
                    .select_from(CreditCharge)
                    .where(CreditCharge.outcome == "refunded")
                )
                still_unsettled = await scalar(
                    select(func.count())
                    .select_from(CreditCharge)
                    .where(CreditCharge.outcome.is_(None))
                )
                user_ids = [user_id for user_id, _, _ in users]
                balances = await scalar(
                    select(func.sum(CreditAccount.balance)).where(
                        CreditAccount.user_id.in_(user_ids)
                    )
                )
                orders = await scalar(
                    select(func.count()).select_from(Order).where(Order.user_id.in_(user_ids))
                )
            async with client(restarted) as http:
                again = await http.get("/api/v1/users/me", headers=users[0][2])

        figures.tally(f"requests (SIGKILL {killed_at - started:.2f} s into the load):", tally)
        figures.add(f"restart: ready {restart_seconds:.2f} s after the kill")
        figures.add(
            f"charges: {served} served, {refunded} refunded, {unsettled} left unsettled by the "
            f"kill, {swept} swept, {still_unsettled} unsettled after the sweep"
        )
        figures.add(
            f"credits: {USERS * CREDITS} granted, {balances} left, "
            f"{USERS * CREDITS - balances} spent = {served} served charges"
        )
        figures.add(f"orders placed: {orders} ({tally.statuses('checkout')['201']} answered 201)")
        figures.add("before the sweep (charges older than CREDITS_SWEEP_AFTER_SECONDS):")
        figures.lines.extend(f"  {line}" for line in check_lines(before_sweep))
        figures.add("after the sweep:")
        figures.lines.extend(f"  {line}" for line in check_lines(after))

        assert unsettled > 0, "the kill cut off no charged call: the test did not test"
        assert served >= SERVED_BEFORE_KILL
        assert swept == unsettled and still_unsettled == 0
        assert after["ok"], after["violations"]
        assert {v["check"] for v in before_sweep["violations"]} == {"charge_unsettled"}
        assert len(before_sweep["violations"]) == unsettled
        assert USERS * CREDITS - balances == served
        assert tally.statuses("paid")["200"] <= served
        assert orders >= tally.statuses("checkout")["201"]
        assert tally.count("5") == 0, tally.server_errors
        assert again.status_code == 200

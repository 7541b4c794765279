"""PostgreSQL unreachable in the middle of a run, then back (a private cluster, never the shared
server).

While it is down: what needs the database answers 503 `service_unavailable` in the error shape
with `Retry-After` (cached catalog reads may still answer 200), `/health` 200, `/health/ready`
503, never a 500. Once it is back the same process recovers, and no user is left locked out
by the login throttle however often they tried to log in meanwhile.
"""

from __future__ import annotations

import asyncio
import random
import time

import httpx
import pytest

from tests.private_postgres import PrivatePostgres
from tests.reliability.harness import (
    PASSWORD,
    Figures,
    Stack,
    Tally,
    TcpProxy,
    client,
    run_mix,
    until,
)

pytestmark = pytest.mark.reliability

PHASE_SECONDS = 4.0
CONCURRENCY = 6
USERS = 4
PARTITION_SECONDS = 12.0
CLIENT_TIMEOUT = 40.0
PARTITION_TIMEOUTS = {
    "DATABASE_CONNECT_TIMEOUT_SECONDS": "3",
    "DATABASE_COMMAND_TIMEOUT_SECONDS": "5",
}


def shape_problem(answer: httpx.Response) -> str | None:
    """Why a 503 is not the documented outage answer (None when it is)."""
    body = answer.json()
    if body.get("error") != "service_unavailable" or not body.get("message"):
        return f"body {body}"
    if int(answer.headers.get("Retry-After", "0")) < 1:
        return "no Retry-After"
    return None


async def test_database_unreachable_mid_run_then_back(
    private_postgres: PrivatePostgres, figures: Figures
) -> None:
    rng = random.Random(15_002)
    url = await asyncio.to_thread(private_postgres.create_database, "reliability")
    async with Stack.open("pg", database_url=url) as stack:
        server = await stack.serve()
        async with client(server) as http:
            await stack.login_admin(http)
            users = [await stack.user(http, label="pg") for _ in range(USERS)]
            page = (await http.get("/api/v1/products", params={"page_size": 20})).json()
            products = [item["id"] for item in page["items"]]
            for product_id in products:  # cached now: reads of these may answer from Redis
                await http.get(f"/api/v1/products/{product_id}")
            problems: list[str] = []

            async def counted(t: Tally, op: str, send: object) -> None:
                answer = await t.call(op, send)  # type: ignore[arg-type]
                if answer is not None and answer.status_code == 503:
                    problem = shape_problem(answer)
                    if problem:
                        problems.append(f"{op}: {problem}")

            async def browse(t: Tally) -> None:
                params = {"page": rng.randint(1, 5), "page_size": 20}
                await counted(t, "browse", http.get("/api/v1/products", params=params))

            async def product(t: Tally) -> None:
                path = f"/api/v1/products/{rng.choice(products)}"
                await counted(t, "product (cached)", http.get(path))

            async def me(t: Tally) -> None:
                await counted(t, "me", http.get("/api/v1/users/me", headers=rng.choice(users)[2]))

            async def signin(t: Tally) -> None:
                body = {"email": rng.choice(users)[1], "password": PASSWORD}
                await counted(t, "login", http.post("/api/v1/auth/login", json=body))

            async def health(t: Tally) -> None:
                await counted(t, "health", http.get("/health"))

            mix = {
                "browse": (2, browse),
                "product": (2, product),
                "me": (2, me),
                "login": (3, signin),
                "health": (1, health),
            }
            phases = {"before": Tally(), "down": Tally(), "after": Tally()}
            await run_mix(
                phases["before"], mix, seconds=PHASE_SECONDS, concurrency=CONCURRENCY, rng=rng
            )

            # The cluster stops while the requests run.
            load = asyncio.create_task(
                run_mix(
                    phases["down"], mix, seconds=PHASE_SECONDS, concurrency=CONCURRENCY, rng=rng
                )
            )
            await asyncio.to_thread(private_postgres.stop)
            await load
            ready_down = await http.get("/health/ready")

            await asyncio.to_thread(private_postgres.start)
            back = time.monotonic()

            async def ready() -> bool:
                return (await http.get("/health/ready")).status_code == 200

            async def me_ok() -> bool:
                answer = await http.get("/api/v1/users/me", headers=users[0][2])
                return answer.status_code == 200

            recovery = {
                "ready": await until(ready, 30, "/health/ready after the database came back"),
                "me 200": await until(me_ok, 30, "/users/me after the database came back"),
            }
            logins = [
                await http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
                for _, email, _ in users
            ]
            recovery["every user logged in"] = time.monotonic() - back
            await run_mix(
                phases["after"], mix, seconds=PHASE_SECONDS, concurrency=CONCURRENCY, rng=rng
            )

        for name, tally in phases.items():
            figures.tally(f"{name} ({PHASE_SECONDS:.0f} s, {CONCURRENCY} loops):", tally)
        figures.add(f"/health/ready while the database was down: {ready_down.status_code}")
        figures.add(
            "recovery after the database came back: "
            + ", ".join(f"{what} {seconds:.2f} s" for what, seconds in recovery.items())
        )
        figures.add(
            f"logins of the {USERS} users after it: {[answer.status_code for answer in logins]}"
        )
        figures.add(f"503 answers not in the documented shape: {len(problems)}")

        assert problems == []
        assert ready_down.status_code == 503
        assert ready_down.json()["checks"]["database"] == "unavailable"
        for answer in logins:
            assert answer.status_code == 200, answer.text
        down = phases["down"]
        assert set(down.statuses("health")) <= {"200"}
        for op in ("browse", "product (cached)", "me", "login"):
            assert set(down.statuses(op)) <= {"200", "503"}, (op, down.server_errors)
        assert down.statuses("me")["503"] > 0 and down.statuses("login")["503"] > 0
        for name in ("before", "after"):
            assert set(phases[name].statuses()) == {"200"}, (name, phases[name].server_errors)
        assert all(seconds < 15 for seconds in recovery.values())


async def test_database_partitioned_mid_run_then_healed(
    private_postgres: PrivatePostgres, figures: Figures
) -> None:
    """The database behind a TCP proxy that stops forwarding (packets dropped, connections
    left open: nobody is told): requests still answer 503 within the database timeouts instead
    of hanging, and the service recovers once the network heals."""
    rng = random.Random(15_006)
    url = await asyncio.to_thread(private_postgres.create_database, "partition")
    proxy = TcpProxy(private_postgres.port)
    proxied = url.replace(f":{private_postgres.port}/", f":{proxy.port}/")
    try:
        async with Stack.open("pgpart", database_url=proxied, **PARTITION_TIMEOUTS) as stack:
            server = await stack.serve()
            async with client(server, timeout=CLIENT_TIMEOUT) as http:
                await stack.login_admin(http)
                users = [await stack.user(http, label="part") for _ in range(USERS)]

                async def me(t: Tally) -> None:
                    headers = rng.choice(users)[2]
                    await t.call("me", http.get("/api/v1/users/me", headers=headers))

                async def signin(t: Tally) -> None:
                    body = {"email": rng.choice(users)[1], "password": PASSWORD}
                    await t.call("login", http.post("/api/v1/auth/login", json=body))

                async def health(t: Tally) -> None:
                    await t.call("health", http.get("/health"))

                mix = {"me": (3, me), "login": (2, signin), "health": (1, health)}
                phases = {"before": Tally(), "partitioned": Tally(), "after": Tally()}
                await run_mix(phases["before"], mix, seconds=3, concurrency=CONCURRENCY, rng=rng)

                await asyncio.to_thread(proxy.freeze)
                await run_mix(
                    phases["partitioned"], mix, seconds=PARTITION_SECONDS,
                    concurrency=CONCURRENCY, rng=rng,
                )  # fmt: skip
                await asyncio.to_thread(proxy.restore)

                async def me_ok() -> bool:
                    answer = await http.get("/api/v1/users/me", headers=users[0][2])
                    return answer.status_code == 200

                healed = await until(me_ok, 60, "/users/me after the network healed")
                await run_mix(phases["after"], mix, seconds=3, concurrency=CONCURRENCY, rng=rng)
    finally:
        proxy.close()

    for name, tally in phases.items():
        figures.tally(f"{name}:", tally)
    slowest = max(phases["partitioned"].seconds.get("me", [0.0]))
    figures.add(f"slowest answer while partitioned: {slowest:.1f} s")
    figures.add(f"recovery after the network healed: /users/me 200 after {healed:.2f} s")
    partitioned = phases["partitioned"]
    assert partitioned.count("cut") == 0, "requests hung past the client's timeout"
    for op in ("me", "login"):
        assert set(partitioned.statuses(op)) <= {"200", "503"}, partitioned.server_errors
    assert set(partitioned.statuses("health")) == {"200"}
    assert set(phases["after"].statuses()) == {"200"}, phases["after"].server_errors

"""Prometheus metrics at /metrics: who may read them, what they count, and several workers."""

from __future__ import annotations

import asyncio
import re
from contextlib import aclosing
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from sellerdesk.kit.metrics import UNMATCHED
from tests.auth_helpers import assert_error
from tests.conftest import AppFactory
from tests.credits_factories import grant, mount_paid_test_routes
from tests.factories import register, register_admin
from tests.live_server import Server, cli, environment
from tests.orders_factories import make_product, make_user, place_order
from tests.stripe_fixtures import WEBHOOK_SECRET, event, intent_object, signed

TOKEN = "metrics-token-0123456789"
SCRAPE = {"Authorization": f"Bearer {TOKEN}"}


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, keyed by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, frozenset(labels.items())), 0.0)


async def scrape(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics", headers=SCRAPE)
    assert response.status_code == 200, response.text
    return response.text


@pytest.fixture
async def app(make_app: AppFactory) -> FastAPI:
    return await make_app(METRICS_TOKEN=TOKEN, STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET)


# --------------------------------------------------------------------------- access


async def test_metrics_are_off_and_404_unless_a_token_or_allow_list_is_set(
    make_app: AppFactory,
) -> None:
    app = await make_app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        assert_error(await c.get("/metrics"), 404, "not_found")
        assert_error(await c.get("/metrics", headers=SCRAPE), 404, "not_found")


async def test_the_token_is_a_bearer_token(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/metrics"), 401, "not_authenticated")
    wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert_error(wrong, 401, "invalid_token")
    assert_error(
        await client.get("/metrics", headers={"Authorization": TOKEN}), 401, "not_authenticated"
    )

    response = await client.get("/metrics", headers=SCRAPE)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "# TYPE http_requests_total counter" in response.text


async def test_an_allowed_address_needs_no_token_and_others_need_it(
    make_app: AppFactory,
) -> None:
    # httpx's ASGI transport connects from 127.0.0.1.
    inside = await make_app(METRICS_ALLOW_IPS="10.0.0.0/8, 127.0.0.0/8")
    outside = await make_app(METRICS_ALLOW_IPS="10.0.0.0/8")
    both = await make_app(METRICS_ALLOW_IPS="10.0.0.0/8", METRICS_TOKEN=TOKEN)
    for app, anonymous, with_token in ((inside, 200, 200), (outside, 403, 403), (both, 401, 200)):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/metrics")).status_code == anonymous
            assert (await client.get("/metrics", headers=SCRAPE)).status_code == with_token
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=outside), base_url="http://t"
    ) as client:
        assert_error(await client.get("/metrics"), 403, "forbidden")


# --------------------------------------------------------------------------- what is counted


async def test_requests_are_counted_by_route_template_never_by_concrete_path(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    product_id = await make_product(app)
    before = await scrape(client)
    for _ in range(3):
        assert (await client.get(f"/api/v1/products/{product_id}")).status_code == 200
    assert (await client.get("/api/v1/products/999999999")).status_code == 404
    assert (await client.get(f"/no/such/page/{product_id}")).status_code == 404
    after = await scrape(client)

    template = "/api/v1/products/{product_id}"
    ok = {"method": "GET", "route": template, "status": "200"}
    assert (
        value(after, "http_requests_total", **ok) - value(before, "http_requests_total", **ok) == 3
    )
    missing = {"method": "GET", "route": template, "status": "404"}
    assert (
        value(after, "http_requests_total", **missing)
        - value(before, "http_requests_total", **missing)
        == 1
    )
    unmatched = {"method": "GET", "route": "<unmatched>", "status": "404"}
    assert (
        value(after, "http_requests_total", **unmatched)
        - value(before, "http_requests_total", **unmatched)
        == 1
    )
    latency = {"method": "GET", "route": template}
    assert (
        value(after, "http_request_duration_seconds_count", **latency)
        - value(before, "http_request_duration_seconds_count", **latency)
        == 4
    )
    # The registry is the process's: other tests' apps add their own routes. None of them
    # may be a concrete path.
    routes = {
        dict(labels)["route"] for name, labels in samples(after) if name == "http_requests_total"
    }
    assert template in routes and UNMATCHED in routes
    assert [route for route in routes if re.search(r"/\d+(/|$)", route)] == []


async def test_unknown_methods_share_one_label(client: httpx.AsyncClient) -> None:
    await client.request("BREW", "/health")
    assert 'method="BREW"' not in await scrape(client)
    assert (
        value(
            await scrape(client),
            "http_requests_total",
            method="OTHER",
            route="/health",
            status="405",
        )
        >= 1
    )


async def test_pool_gauges_are_read_from_the_engine_at_scrape_time(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    pool = app.state.engine.sync_engine.pool
    idle = await scrape(client)
    assert value(idle, "db_pool_size") == pool.size()
    assert value(idle, "db_pool_checked_out") == 0
    async with app.state.engine.connect():
        busy = await scrape(client)
    assert value(busy, "db_pool_checked_out") == 1
    assert value(busy, "db_pool_overflow") == 0


async def test_orders_placed_are_counted(client: httpx.AsyncClient, app: FastAPI) -> None:
    buyer = await make_user(app)
    product_id = await make_product(app, stock=5)
    before = value(await scrape(client), "orders_placed_total")
    await place_order(client, buyer, product_id)
    assert value(await scrape(client), "orders_placed_total") == before + 1


async def test_credits_charged_are_counted_net_of_refunds(make_app: AppFactory) -> None:
    app = mount_paid_test_routes(await make_app(METRICS_TOKEN=TOKEN))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    async with aclosing(client):
        admin, user = await register_admin(client, app), await register(client)
        assert (await grant(client, admin, user.id, 10)).status_code == 200
        before = value(await scrape(client), "credits_charged_total")
        lookups = ["AAAAAAAAA1", "AAAAAAAAA2", "NF00000001"]  # NF: not found, given back
        for code in lookups:
            await client.post("/api/v1/test-paid/lookup", json={"code": code}, headers=user.headers)
        batch = await client.post(
            "/api/v1/test-paid/batch",
            json={"codes": ["BBBBBBBBB1", "BBBBBBBBB2", "NF00000002"]},
            headers=user.headers,
        )
        assert batch.status_code == 200, batch.text
        assert value(await scrape(client), "credits_charged_total") == before + 4


async def test_webhook_events_are_counted_by_result(client: httpx.AsyncClient) -> None:
    before = await scrape(client)
    body = event("payment_intent.succeeded", intent_object("pi_nobody_knows", 5000))
    payload, headers = signed(body)
    for _ in range(2):
        answer = await client.post("/api/v1/payments/webhook", content=payload, headers=headers)
        assert answer.json()["result"] == "unmatched"
    after = await scrape(client)
    assert (
        value(after, "webhook_events_total", result="unmatched")
        - value(before, "webhook_events_total", result="unmatched")
        == 2
    )


# --------------------------------------------------------------------------- several workers


async def test_several_workers_report_one_sum_through_the_multiprocess_directory(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "prometheus"
    folder.mkdir()
    stale = folder / "counter_999999.db"
    stale.write_bytes(b"left over by the last run")
    env = environment(
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/metrics.db",
        METRICS_TOKEN=TOKEN,
        PROMETHEUS_MULTIPROC_DIR=str(folder),
    )
    await asyncio.to_thread(cli, env, "migrate")
    server = Server(env, "--workers", "2")
    try:
        await server.wait_ready()
        # Each worker opens its own engine (a pool of 5 on SQLite): the live sum is 10 once
        # both have started.
        for _ in range(300):
            async with httpx.AsyncClient(base_url=server.base_url) as client:
                if value(await scrape(client), "db_pool_size") == 10:
                    break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"the two workers' pools never added up:\n{server.log}")
        requests = 40
        for _ in range(requests):  # a new connection each: either worker may take it
            async with httpx.AsyncClient(base_url=server.base_url) as client:
                assert (await client.get("/health")).status_code == 200
        assert not stale.exists()  # `serve` emptied the directory before the workers started

        totals = set()
        for _ in range(6):
            async with httpx.AsyncClient(base_url=server.base_url) as client:
                text = await scrape(client)
            health = {"method": "GET", "route": "/health", "status": "200"}
            totals.add(value(text, "http_requests_total", **health))
        assert len(totals) == 1  # every worker answers with the same, summed, count
        assert totals.pop() >= requests  # + readiness polls
    finally:
        server.stop()

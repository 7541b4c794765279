"""`RATE_LIMIT_PER_IP`: off unless set; when set, every route counts per client address."""

from __future__ import annotations

import httpx

from tests.conftest import AppFactory


async def test_per_ip_limit_is_off_by_default(client: httpx.AsyncClient) -> None:
    statuses = {(await client.get("/")).status_code for _ in range(30)}
    assert statuses == {200}


async def test_per_ip_limit_answers_429_with_retry_after(make_app: AppFactory) -> None:
    app = await make_app(RATE_LIMIT_PER_IP="5/minute")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        statuses = [(await client.get("/")).status_code for _ in range(5)]
        limited = await client.get("/api/v1/users/me")
        health = await client.get("/health")
    assert statuses == [200] * 5
    assert limited.status_code == 429
    assert limited.json()["error"] == "rate_limited"
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.headers["x-request-id"]
    assert health.status_code == 200

"""A real Celery worker (`sellerdesk worker --pool solo`, a subprocess) on the real Redis broker
(keys under this test's own prefix) and an aiosmtpd sink: the emails of a paid order arrive
exactly once, also when the worker is killed with SIGKILL in the middle of sending one."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from fastapi import FastAPI
from sqlalchemy import func, select

from sellerdesk.models import DomainEvent
from sellerdesk.worker import CeleryDispatcher, create_celery
from tests.conftest import REDIS_URL, AppFactory, Database, make_settings
from tests.orders_factories import ADDRESS, Buyer, make_product, make_user, place_order
from tests.smtp_sink import Sink, smtp_sink, text_of

__all__ = ["smtp_sink"]

pytestmark = pytest.mark.celery

SELLERDESK = str(Path(sys.executable).with_name("sellerdesk"))
# Short enough that a task lost with its worker comes back within seconds in these tests.
DELIVERY = {"CELERY_VISIBILITY_TIMEOUT_SECONDS": 6, "JOB_TIME_LIMIT_SECONDS": 4}
INTENT = "/api/v1/payments/create-payment-intent"


def _redis_reachable() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


class Processes:
    """`sellerdesk worker` / `sellerdesk beat` subprocesses with this test's settings."""

    def __init__(self, env: dict[str, str], folder: Path) -> None:
        self.env, self.folder = env, folder
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        log = (self.folder / f"{args[0]}-{len(self.running)}.log").open("wb")
        process = subprocess.Popen(
            [SELLERDESK, *args],
            env=self.env,
            cwd=self.folder,  # no developer's .env is read
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.running.append(process)
        return process

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted(self.folder.glob("*.log"))
        )

    def stop_all(self) -> None:
        for process in self.running:
            if process.poll() is None:
                process.terminate()
        for process in self.running:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def processes(database: Database, redis_prefix: str, smtp_sink: Sink) -> Iterator[Processes]:
    if not _redis_reachable():
        pytest.skip(f"the Celery tests need Redis at {REDIS_URL}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMTP_", "CELERY_", "REDIS_"))}
    env.update(
        {
            "ENVIRONMENT": "test",
            "SECRET_KEY": "test-secret-key-0123456789abcdef-0123456789abcdef",
            "DATABASE_URL": database.url,
            "CELERY_BROKER_URL": REDIS_URL,
            "REDIS_KEY_PREFIX": redis_prefix,
            "PAYMENT_PROVIDER": "manual",
            "LOG_LEVEL": "INFO",
            "LOG_JSON": "true",
            **{k: str(v) for k, v in {**smtp_sink.settings, **DELIVERY}.items()},
        }
    )
    folder = Path(tempfile.mkdtemp(prefix="sellerdesk-celery-"))
    running = Processes(env, folder)
    yield running
    running.stop_all()
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{redis_prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
async def celery_app(make_app: AppFactory, smtp_sink: Sink) -> FastAPI:
    return await make_app(CELERY_BROKER_URL=REDIS_URL, **smtp_sink.settings, **DELIVERY)


@pytest.fixture
async def client(celery_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=celery_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


async def until(check: Callable[[], Any], within: float, what: str, processes: Processes) -> None:
    """Poll `check` (sync or async) without blocking the event loop."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"{what}: not within {within}s\n{processes.logs()}")


async def pending_events(app: FastAPI) -> int:
    async with app.state.sessionmaker() as session:
        count = await session.scalar(
            select(func.count()).select_from(DomainEvent).where(DomainEvent.status != "done")
        )
    return int(count or 0)


async def buy(client: httpx.AsyncClient, app: FastAPI, buyer: Buyer) -> dict[str, Any]:
    product = await make_product(app, price="23.45", stock=10, name="Fountain pen")
    order = await place_order(client, buyer, product, 2)
    await client.post(INTENT, json={"order_id": order["id"]}, headers=buyer.headers)
    paid = await client.post(
        f"/api/v1/payments/confirm-payment/{order['id']}", headers=buyer.headers
    )
    assert paid.status_code == 200, paid.text
    return order


def test_the_celery_app_is_json_only_acks_late_and_beats_the_schedule() -> None:
    from sellerdesk import jobs

    settings = make_settings("sqlite+aiosqlite://", None, "p", CELERY_BROKER_URL=REDIS_URL)
    conf = create_celery(settings).conf
    assert (conf.task_serializer, conf.accept_content) == ("json", ["json"])
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    options = conf.broker_transport_options
    assert options["visibility_timeout"] == settings.CELERY_VISIBILITY_TIMEOUT_SECONDS <= 300
    assert conf.task_time_limit < options["visibility_timeout"]
    assert options["global_keyprefix"] == "p:celery:"
    assert {name: entry["args"] for name, entry in conf.beat_schedule.items()} == {
        job.name: [job.name] for job in jobs.SCHEDULE
    }


async def test_a_paid_order_sends_one_confirmation_through_the_worker(
    celery_app: FastAPI, client: httpx.AsyncClient, smtp_sink: Sink, processes: Processes
) -> None:
    assert isinstance(celery_app.state.dispatcher, CeleryDispatcher)
    processes.start("worker", "--pool", "solo")
    buyer, other = await make_user(celery_app), await make_user(celery_app)
    scarce = await make_product(celery_app, stock=1)
    await client.put(f"/api/v1/cart/items/{scarce}", json={"quantity": 2}, headers=other.headers)
    refused = await client.post(
        "/api/v1/orders", json={"shipping_address": ADDRESS}, headers=other.headers
    )
    assert refused.status_code == 409

    order = await buy(client, celery_app, buyer)

    await until(lambda: smtp_sink.of_kind("order_confirmation"), 60, "confirmation", processes)
    await until(lambda: smtp_sink.of_kind("payment_receipt"), 30, "receipt", processes)
    await until(lambda: _all_done(celery_app), 30, "every event processed", processes)
    assert smtp_sink.kinds() == ["order_confirmation", "payment_receipt"]
    (confirmation,) = smtp_sink.of_kind("order_confirmation")
    assert confirmation["Subject"] == f"Order #{order['id']} confirmed: 46.90 USD"
    assert "Total: 46.90 USD" in text_of(confirmation)


async def _all_done(app: FastAPI) -> bool:
    return await pending_events(app) == 0


async def test_a_worker_killed_mid_send_is_replaced_and_each_email_arrives_once(
    celery_app: FastAPI, client: httpx.AsyncClient, smtp_sink: Sink, processes: Processes
) -> None:
    smtp_sink.stall_first = 60  # the first message hangs at RCPT TO: the kill comes then
    first = processes.start("worker", "--pool", "solo")
    processes.start("beat", "--schedule-file", str(processes.folder / "beat-schedule"))
    buyer = await make_user(celery_app)
    await buy(client, celery_app, buyer)

    await until(smtp_sink.stalled.is_set, 60, "the first email being sent", processes)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    killed_at = time.monotonic()
    processes.start("worker", "--pool", "threads", "--concurrency", "2")

    await until(
        lambda: len(smtp_sink.kinds()) >= 2, 120, "both emails after the restart", processes
    )
    await until(lambda: _all_done(celery_app), 30, "every event processed", processes)
    elapsed = time.monotonic() - killed_at
    assert elapsed < 300
    await asyncio.sleep(1)  # nothing else trickles in
    assert smtp_sink.kinds() == ["order_confirmation", "payment_receipt"]
    assert all(p.poll() is None for p in processes.running[1:]), processes.logs()

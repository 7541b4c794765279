"""SIGKILL of the Celery worker in the middle of a task, while orders, payments, cancellations and
credit purchases keep coming: after a new worker starts, every outbox event is handled exactly
once (all `done`, each email sent once, by its Message-ID, which is per event).

The broker is a private redis-server; the emails go to an SMTP sink whose first transaction
hangs, so the kill lands while the worker is sending.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections import Counter

import pytest
from sqlalchemy import select

from sellerdesk.models import DomainEvent
from sellerdesk.notifications.emails import HANDLERS
from tests.reliability.harness import (
    Figures,
    Stack,
    Tally,
    buy_credits,
    cancel_order,
    client,
    confirm_payment,
    place_order,
    start_payment,
    until,
)
from tests.smtp_sink import Sink, smtp_sink

__all__ = ["smtp_sink"]

pytestmark = pytest.mark.reliability

BUYERS = 6
# A task lost with its worker is delivered again after the visibility timeout.
DELIVERY = {"CELERY_VISIBILITY_TIMEOUT_SECONDS": "6", "JOB_TIME_LIMIT_SECONDS": "4"}


async def test_sigkill_of_the_worker_mid_task_each_event_handled_once(
    smtp_sink: Sink, figures: Figures
) -> None:
    rng = random.Random(15_004)
    smtp_sink.stall_first = 60  # the first message hangs at RCPT TO: the kill comes then
    smtp = {key: str(value) for key, value in smtp_sink.settings.items()}
    async with Stack.open("worker", **smtp, **DELIVERY) as stack:
        assert stack.redis is not None
        stack.env["CELERY_BROKER_URL"] = stack.redis.url
        server = await stack.serve()
        first = stack.start("worker", "--pool", "solo")
        stack.start("beat", "--schedule-file", str(stack.folder / "beat-schedule"))
        stocked = await stack.stocked_products()
        tally = Tally()
        async with client(server) as http:
            await stack.login_admin(http)
            packs = (await http.get("/api/v1/credits/packs")).json()
            buyers = [await stack.user(http, label="worker") for _ in range(BUYERS)]

            async def shop(headers: dict[str, str]) -> None:
                order = await place_order(tally, http, headers, rng.choice(stocked), 1)
                assert order is not None
                await start_payment(tally, http, headers, order["id"])
                assert await confirm_payment(tally, http, headers, order["id"])
                if rng.random() < 0.4:
                    assert await cancel_order(tally, http, headers, order["id"])  # a refund
                assert await buy_credits(tally, http, headers, rng.choice(packs)["id"])

            half = BUYERS // 2
            await asyncio.gather(*(shop(headers) for _, _, headers in buyers[:half]))
            await until(
                lambda: asyncio.to_thread(smtp_sink.stalled.is_set), 60, "the first email sending"
            )
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
            killed_at = time.monotonic()
            # More work while no worker runs: it waits in the broker.
            await asyncio.gather(*(shop(headers) for _, _, headers in buyers[half:]))
            stack.start("worker", "--pool", "threads", "--concurrency", "2")

            drained = await stack.outbox_drained()
            drained_after_kill = time.monotonic() - killed_at
            await asyncio.sleep(2)  # nothing else trickles in

        async with stack.engine() as engine, engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(
                        DomainEvent.id, DomainEvent.kind, DomainEvent.status, DomainEvent.payload
                    )
                )
            ).all()
        events = [(event_id, kind, status) for event_id, kind, status, _ in rows]
        # A credit purchase's payment has no receipt of its own: `credits_purchased` sends it.
        email_events = {
            event_id
            for event_id, kind, _, payload in rows
            if kind in HANDLERS
            and not (kind == "payment_succeeded" and payload.get("order_id") is None)
        }
        ids = Counter(str(message["Message-ID"]).strip() for message in smtp_sink.messages)
        duplicates = {mid: n for mid, n in ids.items() if n > 1}
        emailed = {int(mid.removeprefix("<event-").split(".")[0]) for mid in ids}
        kinds = Counter(kind for _, kind, _ in events)
        statuses = Counter(status for _, _, status in events)

        figures.tally("requests:", tally)
        figures.add(f"outbox events: {len(events)} ({dict(sorted(kinds.items()))})")
        figures.add(f"event statuses after the restart: {dict(statuses)}")
        figures.add(
            f"emails: {len(smtp_sink.messages)} received, {len(ids)} distinct Message-IDs, "
            f"{len(duplicates)} sent twice; {len(email_events)} events that send one, "
            f"{len(email_events - emailed)} of them without their email"
        )
        figures.add(
            f"recovery: every event done {drained_after_kill:.1f} s after the kill "
            f"({drained:.1f} s after the new worker started)"
        )

        assert statuses == {"done": len(events)}
        assert duplicates == {}
        assert emailed <= email_events
        assert email_events - emailed == set(), sorted(kinds)
        assert tally.count("5") == 0, tally.server_errors

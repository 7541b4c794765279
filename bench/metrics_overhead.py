"""What the Prometheus middleware adds to one request (target: under ~20 µs).

    PYTHONPATH=src python bench/metrics_overhead.py

Drives a small FastAPI app straight through ASGI (no sockets, so the figure is the middleware's
alone), with and without `MetricsMiddleware`, in alternating rounds; reports the best round of
each in CPU time per request (CPU time, not wall time: the machine is shared) and the difference.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, FastAPI

from sellerdesk.kit.metrics import MetricsMiddleware

REQUESTS = 3_000
ROUNDS = 15


def build(with_metrics: bool) -> Any:
    app = FastAPI()
    items = APIRouter(prefix="/items")

    @items.get("/{item_id}")
    async def read_item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    app.include_router(items, prefix="/api/v1")
    if with_metrics:
        app.add_middleware(MetricsMiddleware)
    return app


async def drive(app: Any, count: int) -> float:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    started = time.process_time()
    for n in range(count):
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": f"/api/v1/items/{n % 50}",
            "raw_path": f"/api/v1/items/{n % 50}".encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [(b"host", b"bench")],
            "client": ("127.0.0.1", 5000),
            "server": ("127.0.0.1", 8000),
        }
        await app(scope, receive, send)
    return (time.process_time() - started) / count


async def main() -> None:
    bare, measured = build(False), build(True)
    await drive(bare, 500)  # warm both (route tables, label children)
    await drive(measured, 500)
    best_bare = best_measured = float("inf")
    for _ in range(ROUNDS):
        best_bare = min(best_bare, await drive(bare, REQUESTS))
        best_measured = min(best_measured, await drive(measured, REQUESTS))
    print(f"bare app:          {best_bare * 1e6:7.1f} µs/request")
    print(f"with metrics:      {best_measured * 1e6:7.1f} µs/request")
    print(f"middleware adds:   {(best_measured - best_bare) * 1e6:7.1f} µs/request")


if __name__ == "__main__":
    asyncio.run(main())

"""One OS process of the cross-process quota test (`test_amazon_quota.py`).

Run as `python -m tests.spapi_quota_worker CONFIG_JSON`: builds the SP-API client as the app
would (settings, a Redis-backed pacer), prints `ready`, waits for `go` on stdin, fires its
getCatalogItem calls at once, then prints one JSON line with the outcome of each call.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import structlog
from redis.asyncio import Redis

from sellerdesk.amazon.errors import UpstreamError
from sellerdesk.amazon.quota import Pacer
from sellerdesk.amazon.spapi_client import SpApiClient
from sellerdesk.config import Settings


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def main(config: dict[str, Any]) -> None:
    # stdout carries the protocol with the test; logs go to stderr.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    settings = Settings(_env_file=None, **config["settings"])  # type: ignore[call-arg]
    redis = Redis.from_url(config["redis_url"])
    pacer = Pacer(
        settings.SPAPI_DEFAULT_RATE,
        settings.SPAPI_DEFAULT_BURST,
        redis,
        f"{settings.REDIS_KEY_PREFIX}:spapi:quota",
    )
    client = SpApiClient(settings, pacer)

    async def call(asin: str) -> str:
        try:
            await client.get(
                "NA",
                "getCatalogItem",
                f"/catalog/2022-04-01/items/{asin}",
                {"marketplaceIds": "ATVPDKIKX0DER"},
            )
        except UpstreamError as exc:
            return f"{exc.status_code}"
        return "ok"

    _say("ready")
    await asyncio.to_thread(sys.stdin.readline)
    outcomes = await asyncio.gather(*(call(asin) for asin in config["asins"]))
    _say(json.dumps(outcomes))
    await client.aclose()
    await redis.aclose()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))

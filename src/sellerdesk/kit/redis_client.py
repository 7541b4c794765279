"""The Redis client options every part of the app uses, so a Redis restart heals by itself.

A pooled connection to a Redis that restarted is dead, and redis-py only finds out when it next
uses it. Clients built from a URL make no retry by default, so each stale connection in the pool
failed one request after the restart (with a large pool, for minutes). With one quick retry on
`ConnectionError`, the stale connection is dropped and a fresh one serves the same command;
while Redis is really down, the command fails within about a second. The socket timeouts keep a
Redis that does not answer at all from hanging a request.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

SOCKET_TIMEOUT_SECONDS = 2.0
HEALTH_CHECK_INTERVAL_SECONDS = 30


def redis_options() -> dict[str, Any]:
    """Keyword arguments for `redis.asyncio.Redis` (and the `limits` Redis storage)."""
    return {
        "socket_timeout": SOCKET_TIMEOUT_SECONDS,
        "socket_connect_timeout": SOCKET_TIMEOUT_SECONDS,
        # PING a connection that sat idle this long before using it again.
        "health_check_interval": HEALTH_CHECK_INTERVAL_SECONDS,
        # Two retries after 25 ms and 50 ms: a dead pooled connection is replaced at once.
        "retry": Retry(
            ExponentialBackoff(cap=0.25, base=0.025), 2, supported_errors=(RedisConnectionError,)
        ),
    }


def create_redis(url: str) -> Redis:
    """A Redis client (a lazy pool: nothing connects until the first command)."""
    return Redis.from_url(url, **redis_options())

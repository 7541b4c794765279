"""A small async client of Amazon's Selling Partner API: LWA tokens, retries, pacing.

- The LWA access token (refresh-token grant) is cached until `expires_in - 30 s` and refreshed by
  one caller at a time (an asyncio.Lock), however many requests need it at once.
- 429 and 5xx are retried with exponential backoff and jitter, at most `SPAPI_MAX_RETRIES` times;
  when Amazon tells the operation's rate (`x-amzn-RateLimit-Limit`), calls of that operation are
  spaced to it. A 403 drops the cached token and retries once (the token may have been revoked).
- 404 → None. A timeout → `UpstreamTimeout` (504, not retried: the caller's time is spent);
  anything else that fails → `UpstreamUnavailable` (502).

No secret (refresh token, client secret, access token) is ever logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import platform
import random
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import httpx
import structlog

from sellerdesk import __version__
from sellerdesk.amazon.errors import UpstreamTimeout, UpstreamUnavailable
from sellerdesk.config import Settings

log = structlog.get_logger(__name__)

USER_AGENT = f"sellerdesk/{__version__} (Language=Python/{platform.python_version()})"
TOKEN_MARGIN_SECONDS = 30
_RETRYABLE = {429, 500, 502, 503, 504}


class _Pacer:
    """Spaces calls of one operation to the rate Amazon last reported for it."""

    def __init__(self) -> None:
        self.interval = 0.0
        self._next = 0.0
        self._lock = asyncio.Lock()

    def learn(self, header: str | None) -> None:
        try:
            rate = float(header) if header else 0.0
        except ValueError:
            return
        if rate > 0:
            self.interval = 1.0 / rate

    async def wait(self) -> None:
        if self.interval <= 0:
            return
        async with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


class SpApiClient:
    """One per process (created in the app lifespan, closed with it)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.SPAPI_TIMEOUT_SECONDS),
            headers={"user-agent": USER_AGENT},
        )
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = asyncio.Lock()
        self._pacers: dict[str, _Pacer] = {}

    async def aclose(self) -> None:
        await self._http.aclose()

    async def get(self, operation: str, path: str, params: dict[str, str]) -> Any | None:
        """GET a SP-API resource as JSON (numbers with decimals as Decimal); None on 404."""
        url = self.settings.SPAPI_ENDPOINT.rstrip("/") + path
        pacer = self._pacers.setdefault(operation, _Pacer())
        for token_try in range(2):
            token = await self.access_token()

            async def send(token: str = token) -> httpx.Response:
                await pacer.wait()
                return await self._http.get(
                    url, params=params, headers={"x-amz-access-token": token}
                )

            response = await self._send(operation, send, pacer)
            if response.status_code == 403 and token_try == 0:
                self._drop_token(token)
                continue
            break
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._refused(operation, response)
        return _json(operation, response)

    async def access_token(self) -> str:
        """A valid LWA access token, exchanging the refresh token when the cached one expires."""
        if self._token is not None and time.monotonic() < self._token_expires:
            return self._token
        async with self._token_lock:
            # Whoever waited for the lock finds the token the first caller fetched.
            if self._token is not None and time.monotonic() < self._token_expires:
                return self._token
            form = {
                "grant_type": "refresh_token",
                "refresh_token": self.settings.SPAPI_REFRESH_TOKEN or "",
                "client_id": self.settings.SPAPI_CLIENT_ID or "",
                "client_secret": self.settings.SPAPI_CLIENT_SECRET or "",
            }

            async def send() -> httpx.Response:
                return await self._http.post(self.settings.SPAPI_LWA_URL, data=form)

            response = await self._send("lwa_token", send, None)
            if response.status_code != 200:
                raise self._refused("lwa_token", response)
            body = _json("lwa_token", response)
            token = body.get("access_token") if isinstance(body, dict) else None
            if not isinstance(token, str) or not token:
                raise UpstreamUnavailable("Amazon's token service answered without a token.")
            expires_in = body.get("expires_in", 3600)
            lifetime = float(expires_in) if isinstance(expires_in, int | float | Decimal) else 0
            self._token = token
            self._token_expires = time.monotonic() + max(0.0, lifetime - TOKEN_MARGIN_SECONDS)
            log.info("spapi_token_refreshed", expires_in=lifetime)
            return token

    def _drop_token(self, token: str) -> None:
        if self._token == token:
            self._token = None
            self._token_expires = 0.0

    async def _send(
        self,
        operation: str,
        send: Callable[[], Awaitable[httpx.Response]],
        pacer: _Pacer | None,
    ) -> httpx.Response:
        retries = self.settings.SPAPI_MAX_RETRIES
        for attempt in range(retries + 1):
            try:
                response = await send()
            except httpx.TimeoutException as exc:
                log.warning("spapi_timeout", operation=operation, error=type(exc).__name__)
                raise UpstreamTimeout() from exc
            except httpx.TransportError as exc:
                log.warning("spapi_unreachable", operation=operation, error=type(exc).__name__)
                if attempt == retries:
                    raise UpstreamUnavailable() from exc
                await asyncio.sleep(self._backoff(attempt, None, pacer))
                continue
            if pacer is not None:
                pacer.learn(response.headers.get("x-amzn-RateLimit-Limit"))
            if response.status_code not in _RETRYABLE:
                return response
            if attempt == retries:
                raise self._refused(operation, response)
            delay = self._backoff(attempt, response.headers.get("retry-after"), pacer)
            log.warning(
                "spapi_retry",
                operation=operation,
                status=response.status_code,
                attempt=attempt + 1,
                delay=round(delay, 3),
                request_id=response.headers.get("x-amzn-RequestId"),
            )
            await asyncio.sleep(delay)
        raise UpstreamUnavailable()  # pragma: no cover - the loop always returns or raises

    def _backoff(self, attempt: int, retry_after: str | None, pacer: _Pacer | None) -> float:
        base = self.settings.SPAPI_BACKOFF_SECONDS * (2**attempt)
        # Jitter keeps several processes from retrying in lockstep; not security-relevant.
        delay = min(self.settings.SPAPI_BACKOFF_MAX_SECONDS, base) * random.uniform(0.5, 1.0)  # noqa: S311
        if pacer is not None:
            delay = max(delay, pacer.interval)
        if retry_after:
            with contextlib.suppress(ValueError):
                wanted = min(float(retry_after), self.settings.SPAPI_BACKOFF_MAX_SECONDS)
                delay = max(delay, wanted)
        return float(delay)

    def _refused(self, operation: str, response: httpx.Response) -> UpstreamUnavailable:
        codes: list[str] = []
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            if isinstance(body.get("error"), str):  # LWA's shape
                codes.append(body["error"])
            for error in body.get("errors") or []:
                if isinstance(error, dict) and isinstance(error.get("code"), str):
                    codes.append(error["code"])
        log.warning(
            "spapi_failed",
            operation=operation,
            status=response.status_code,
            codes=codes[:5],
            request_id=response.headers.get("x-amzn-RequestId"),
        )
        if response.status_code == 429:
            return UpstreamUnavailable("Amazon is throttling requests; retry later.")
        return UpstreamUnavailable(
            f"Amazon answered {response.status_code} to {operation}; retry later."
        )


def _json(operation: str, response: httpx.Response) -> Any:
    try:
        # Decimal keeps list prices exact (Amazon sends them as JSON numbers).
        return json.loads(response.content, parse_float=Decimal)
    except ValueError as exc:
        log.warning("spapi_bad_json", operation=operation, status=response.status_code)
        raise UpstreamUnavailable("Amazon answered with something that is not JSON.") from exc

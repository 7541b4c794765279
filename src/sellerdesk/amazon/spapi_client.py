"""A small async client of Amazon's Selling Partner API: regions, LWA tokens, quotas, retries.

- Each selling region (NA, EU, FE) has its host and the seller's refresh token there (see
  `regions.py`); a call names its region and goes to that host with that region's token.
- The LWA access token (refresh-token grant) is cached per region until `expires_in - 30 s` and
  exchanged by one caller at a time (an asyncio.Lock), however many requests need it at once.
- A 403 exchanges the token again only when Amazon says the access token is the problem
  (expired, revoked, malformed, invalid, missing); any other 403 (a missing role, a marketplace
  outside the region) fails at once with Amazon's reason: a new token would not help.
- Every call of an operation first takes quota from the seller's bucket (`quota.Pacer`). 429 and
  5xx are retried with exponential backoff and jitter, at most `SPAPI_MAX_RETRIES` times. All the
  waiting of one call (quota, back-offs) fits in `SPAPI_MAX_WAIT_SECONDS`: quota that stays
  spent → `QuotaExhausted` (503 + Retry-After).
- 404 → None. A timeout → `UpstreamTimeout` (504, not retried: the caller's time is spent);
  anything else that fails → `UpstreamUnavailable` (502) with Amazon's reason.

No secret (refresh token, client secret, access token) is ever logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import platform
import random
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, get_args

import httpx
import structlog

from sellerdesk import __version__
from sellerdesk.amazon.errors import QuotaExhausted, UpstreamTimeout, UpstreamUnavailable
from sellerdesk.amazon.quota import Pacer
from sellerdesk.amazon.regions import REGION_NAMES, Region, RegionSettings, region_settings
from sellerdesk.config import Settings

log = structlog.get_logger(__name__)

USER_AGENT = f"sellerdesk/{__version__} (Language=Python/{platform.python_version()})"
TOKEN_MARGIN_SECONDS = 30
_RETRYABLE = {429, 500, 502, 503, 504}
_MAX_REASON = 300


class _RegionAuth:
    """One region's host, refresh token and cached access token."""

    def __init__(self, config: RegionSettings) -> None:
        self.config = config
        self.token: str | None = None
        self.expires = 0.0
        self.lock = asyncio.Lock()
        # The quota belongs to the seller the refresh token authorises (a short one-way digest:
        # the token itself never leaves the settings).
        digest = hashlib.sha256((config.refresh_token or "").encode()).hexdigest()[:16]
        self.seller = f"{config.region}:{digest}"

    def valid_token(self) -> str | None:
        return self.token if self.token is not None and time.monotonic() < self.expires else None

    def drop(self, token: str) -> None:
        if self.token == token:
            self.token = None
            self.expires = 0.0


class SpApiClient:
    """One per process (created in the app lifespan, closed with it)."""

    def __init__(self, settings: Settings, pacer: Pacer) -> None:
        self.settings = settings
        self.pacer = pacer
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.SPAPI_TIMEOUT_SECONDS),
            headers={"user-agent": USER_AGENT},
        )
        self._regions = {
            region: _RegionAuth(config)
            for region in get_args(Region)
            if (config := region_settings(settings, region)).configured
        }

    async def aclose(self) -> None:
        await self._http.aclose()

    def serves(self, region: Region) -> bool:
        """Whether the settings hold a refresh token for this region."""
        return region in self._regions

    async def get(
        self, region: Region, operation: str, path: str, params: dict[str, str]
    ) -> Any | None:
        """GET a SP-API resource of a region as JSON (decimals as Decimal); None on 404."""
        auth = self._regions[region]
        url = auth.config.endpoint + path
        deadline = time.monotonic() + self.settings.SPAPI_MAX_WAIT_SECONDS
        for token_try in range(2):
            token = await self._access_token(auth, deadline)

            async def send(token: str = token) -> httpx.Response:
                return await self._http.get(
                    url, params=params, headers={"x-amz-access-token": token}
                )

            response = await self._send(operation, send, deadline, auth.seller)
            if response.status_code != 403:
                break
            problem = _token_problem(response)
            if problem is None or token_try == 1:
                raise self._forbidden(operation, auth, response)
            log.info("spapi_token_rejected", region=region, operation=operation, reason=problem)
            auth.drop(token)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._refused(operation, response)
        return _json(operation, response)

    async def _access_token(self, auth: _RegionAuth, deadline: float) -> str:
        """A valid LWA access token for the region, exchanging the refresh token when needed."""
        if (token := auth.valid_token()) is not None:
            return token
        async with auth.lock:
            # Whoever waited for the lock finds the token the first caller fetched.
            if (token := auth.valid_token()) is not None:
                return token
            form = {
                "grant_type": "refresh_token",
                "refresh_token": auth.config.refresh_token or "",
                "client_id": self.settings.SPAPI_CLIENT_ID or "",
                "client_secret": self.settings.SPAPI_CLIENT_SECRET or "",
            }

            async def send() -> httpx.Response:
                return await self._http.post(self.settings.SPAPI_LWA_URL, data=form)

            response = await self._send("lwa_token", send, deadline, None)
            if response.status_code != 200:
                error = _lwa_error(response)
                log.warning(
                    "spapi_token_refused",
                    region=auth.config.region,
                    status=response.status_code,
                    error=error,
                    setting=auth.config.token_setting,
                )
                raise UpstreamUnavailable(
                    f"Amazon's token service refused this service's credentials for the "
                    f"{REGION_NAMES[auth.config.region]} region ({error}); retry later."
                )
            body = _json("lwa_token", response)
            token = body.get("access_token") if isinstance(body, dict) else None
            if not isinstance(token, str) or not token:
                raise UpstreamUnavailable("Amazon's token service answered without a token.")
            expires_in = body.get("expires_in", 3600)
            lifetime = float(expires_in) if isinstance(expires_in, int | float | Decimal) else 0
            auth.token = token
            auth.expires = time.monotonic() + max(0.0, lifetime - TOKEN_MARGIN_SECONDS)
            log.info("spapi_token_refreshed", region=auth.config.region, expires_in=lifetime)
            return token

    async def _send(
        self,
        operation: str,
        send: Callable[[], Awaitable[httpx.Response]],
        deadline: float,
        seller: str | None,
    ) -> httpx.Response:
        """One request with quota and retries; `seller` None = not paced (the token service)."""
        retries = self.settings.SPAPI_MAX_RETRIES
        for attempt in range(retries + 1):
            if seller is not None:
                await self.pacer.wait(seller, operation, deadline - time.monotonic())
            try:
                response = await send()
            except httpx.TimeoutException as exc:
                log.warning("spapi_timeout", operation=operation, error=type(exc).__name__)
                raise UpstreamTimeout() from exc
            except httpx.TransportError as exc:
                log.warning("spapi_unreachable", operation=operation, error=type(exc).__name__)
                delay = self._backoff(attempt, None, operation)
                if attempt == retries or time.monotonic() + delay > deadline:
                    raise UpstreamUnavailable() from exc
                await asyncio.sleep(delay)
                continue
            if seller is not None:
                self.pacer.learn(operation, response.headers.get("x-amzn-RateLimit-Limit"))
            if response.status_code not in _RETRYABLE:
                return response
            delay = self._backoff(attempt, response.headers.get("retry-after"), operation)
            if attempt == retries or time.monotonic() + delay > deadline:
                if response.status_code == 429:
                    log.warning("spapi_throttled", operation=operation, attempts=attempt + 1)
                    raise QuotaExhausted(retry_after=delay)
                raise self._refused(operation, response)
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

    def _backoff(self, attempt: int, retry_after: str | None, operation: str) -> float:
        base = self.settings.SPAPI_BACKOFF_SECONDS * (2**attempt)
        # Jitter keeps several processes from retrying in lockstep; not security-relevant.
        delay = min(self.settings.SPAPI_BACKOFF_MAX_SECONDS, base) * random.uniform(0.5, 1.0)  # noqa: S311
        delay = max(delay, 1.0 / self.pacer.rate(operation))
        if retry_after:
            with contextlib.suppress(ValueError):
                wanted = min(float(retry_after), self.settings.SPAPI_BACKOFF_MAX_SECONDS)
                delay = max(delay, wanted)
        return float(delay)

    def _forbidden(
        self, operation: str, auth: _RegionAuth, response: httpx.Response
    ) -> UpstreamUnavailable:
        code, reason = _first_error(response)
        region = auth.config.region
        log.warning(
            "spapi_forbidden",
            operation=operation,
            region=region,
            code=code,
            reason=reason,
            # For the operator: which settings and which application roles to check.
            hint=(
                f"the marketplace is not served by the host {auth.config.endpoint}"
                if "not valid for region" in reason
                else f"has the seller authorised the application in {REGION_NAMES[region]} "
                f"({auth.config.token_setting}), and does the application have the role "
                f"{operation} needs?"
            ),
            request_id=response.headers.get("x-amzn-RequestId"),
        )
        return UpstreamUnavailable(
            f"Amazon refused {operation} in the {REGION_NAMES[region]} region "
            f"(403 {code}: {reason}); retry later."
        )

    def _refused(self, operation: str, response: httpx.Response) -> UpstreamUnavailable:
        code, reason = _first_error(response)
        log.warning(
            "spapi_failed",
            operation=operation,
            status=response.status_code,
            code=code,
            reason=reason,
            request_id=response.headers.get("x-amzn-RequestId"),
        )
        detail = f" ({code}: {reason})" if code or reason else ""
        return UpstreamUnavailable(
            f"Amazon answered {response.status_code} to {operation}{detail}; retry later."
        )


def _errors(response: httpx.Response) -> list[dict[str, Any]]:
    """The `errors` array of an SP-API error body (empty when there is none)."""
    try:
        body = response.json()
    except ValueError:
        return []
    errors = body.get("errors") if isinstance(body, dict) else None
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def _first_error(response: httpx.Response) -> tuple[str, str]:
    """(code, reason) of the first error: `details` when Amazon gives them, else `message`."""
    for error in _errors(response):
        code, message = error.get("code"), error.get("message")
        details = error.get("details")
        reason = details if isinstance(details, str) and details.strip() else message
        return (
            str(code) if code is not None else "",
            str(reason)[:_MAX_REASON] if reason is not None else "",
        )
    return "", ""


def _token_problem(response: httpx.Response) -> str | None:
    """Amazon's words when a 403 is about the access token itself, else None.

    Amazon's bodies: `{"code": "Unauthorized", "message": "Access to requested resource is
    denied.", "details": "The access token you provided has expired."}` (or "... is revoked,
    malformed or invalid.", "Access token is missing in the request header."). A missing role or
    a foreign marketplace says "Access to requested resource is denied." with other or no details.
    """
    for error in _errors(response):
        for field in ("details", "message"):
            text = error.get(field)
            if isinstance(text, str) and "access token" in text.lower():
                return text[:_MAX_REASON]
    return None


def _lwa_error(response: httpx.Response) -> str:
    """LWA's error code (`invalid_grant`, `invalid_client`, ...), never its description."""
    with contextlib.suppress(ValueError):
        body = response.json()
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return str(body["error"])[:64]
    return f"HTTP {response.status_code}"


def _json(operation: str, response: httpx.Response) -> Any:
    try:
        # Decimal keeps list prices exact (Amazon sends them as JSON numbers).
        return json.loads(response.content, parse_float=Decimal)
    except ValueError as exc:
        log.warning("spapi_bad_json", operation=operation, status=response.status_code)
        raise UpstreamUnavailable("Amazon answered with something that is not JSON.") from exc

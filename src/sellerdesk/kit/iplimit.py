"""The optional per-IP limit for every route (`RATE_LIMIT_PER_IP`; off unless set)."""

from __future__ import annotations

import structlog
from limits import parse
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from sellerdesk.errors import error_body
from sellerdesk.kit.middleware import client_ip
from sellerdesk.kit.ratelimit import Limiter

log = structlog.get_logger(__name__)


class PerIpLimitMiddleware:
    """429 with Retry-After once one client IP passes the limit; fails open if storage is down."""

    def __init__(self, app: ASGIApp, *, limit: str, exempt: tuple[str, ...] = ("/health",)) -> None:
        self.app = app
        self.item = parse(limit)
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt):
            await self.app(scope, receive, send)
            return
        limiter: Limiter = scope["app"].state.limiter
        ip = client_ip(scope)
        try:
            allowed = await limiter.strategy.hit(self.item, "ip", ip)
            retry_after = 0 if allowed else await limiter.retry_after(self.item, "ip", ip)
        except Exception as exc:
            log.warning("ip_limit_unavailable", error=type(exc).__name__)
            allowed = True
        if allowed:
            await self.app(scope, receive, send)
            return
        response = JSONResponse(
            error_body(
                "rate_limited",
                f"Too many requests from this address; retry in {retry_after} s.",
                {"retry_after": retry_after},
            ),
            status_code=429,
            headers={"Retry-After": str(retry_after)},
        )
        await response(scope, receive, send)

"""Prometheus metrics: requests and latency by route template, the DB pool, domain counters.

One process: the default registry; the pool gauges are read from the engine at scrape time.
Several processes (`sellerdesk serve --workers N`, gunicorn): set `PROMETHEUS_MULTIPROC_DIR` to
an empty directory the workers share (prometheus-client's own variable, read when it is first
imported); values then live in files there, `/metrics` sums them over every worker, and the pool
gauges are kept by pool events as live sums over the running processes.

`/metrics` is off (404) unless `METRICS_TOKEN` (a bearer token) or `METRICS_ALLOW_IPS` (addresses
or CIDRs) is set; a scrape passes when either check does.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import time
import weakref
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import fastapi.routing
from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sellerdesk.errors import Forbidden, InvalidToken, NotAuthenticated, NotFound
from sellerdesk.kit.middleware import client_ip
from sellerdesk.kit.openapi import errors

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED = "<unmatched>"  # the route label of requests no route matched (404s, redirects)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

HTTP_REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests by method, route template and status.",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time from the request's arrival to its last response byte, by route template.",
    ["method", "route"],
    buckets=_BUCKETS,
)
CREDITS_CHARGED = Counter(
    "credits_charged_total", "Credits charged by paid data calls that were served."
)
ORDERS_PLACED = Counter("orders_placed_total", "Orders placed at checkout.")
WEBHOOK_EVENTS = Counter(
    "webhook_events_total", "Stripe webhook events processed, by result.", ["result"]
)


def multiprocess_dir() -> str | None:
    """The shared directory of multi-process mode, or None in single-process mode."""
    return os.environ.get(MULTIPROCESS_ENV) or None


# --------------------------------------------------------------------------- middleware


class MetricsMiddleware:
    """Counts and times every HTTP request by method, route template and status (pure ASGI)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._children: dict[tuple[str, int, int], tuple[Any, Any]] = {}
        self._templates: dict[int, str] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            key = (scope["method"], id(route), status)
            children = self._children.get(key)
            if children is None:
                children = self._children[key] = self._labels(scope, route, status)
            children[0].inc()
            children[1].observe(time.perf_counter() - started)

    def _labels(self, scope: Scope, route: object, status: int) -> tuple[Any, Any]:
        # Label values stay bounded: route templates, known methods, status codes.
        method = scope["method"] if scope["method"] in _METHODS else "OTHER"
        template = UNMATCHED if route is None else self._template(scope["app"], route)
        return (
            HTTP_REQUESTS.labels(method, template, str(status)),
            HTTP_LATENCY.labels(method, template),
        )

    def _template(self, app: Any, route: object) -> str:
        """The full path template (`/api/v1/products/{product_id}`), prefixes included."""
        if self._templates is None:
            self._templates = _route_templates(app)
        template = self._templates.get(id(route))
        if template is None:
            template = getattr(route, "path_format", None) or getattr(route, "path", UNMATCHED)
        return str(template)


def _route_templates(app: Any) -> dict[int, str]:
    # FastAPI keeps an included router's routes with their own path (without the include's
    # prefix) and puts that route in scope["route"]; its route contexts know the full template.
    iter_contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    if iter_contexts is None:  # older FastAPI copies routes with their full path
        return {}
    return {
        id(context.original_route): context.path_format
        for context in iter_contexts(app.routes)
        if context.path_format
    }


# --------------------------------------------------------------------------- database pool


class _PoolCollector(Collector):
    """Pool gauges read at scrape time from every engine this process has open."""

    def __init__(self) -> None:
        self.engines: weakref.WeakSet[AsyncEngine] = weakref.WeakSet()

    def collect(self) -> Iterable[GaugeMetricFamily]:
        checked_out = size = overflow = 0
        for engine in list(self.engines):
            pool: Any = engine.sync_engine.pool
            if hasattr(pool, "checkedout"):
                checked_out += pool.checkedout()
                size += pool.size()
                overflow += max(pool.overflow(), 0)
        yield GaugeMetricFamily(
            "db_pool_checked_out", "Database connections in use.", value=checked_out
        )
        yield GaugeMetricFamily("db_pool_size", "Connections the pool keeps open.", value=size)
        yield GaugeMetricFamily(
            "db_pool_overflow", "Connections open beyond the pool size.", value=overflow
        )


class _PoolEvents:
    """Multi-process mode: the same gauges kept by pool events, summed over live processes."""

    def __init__(self) -> None:
        self.checked_out = Gauge(
            "db_pool_checked_out", "Database connections in use.", multiprocess_mode="livesum"
        )
        self.size = Gauge(
            "db_pool_size", "Connections the pool keeps open.", multiprocess_mode="livesum"
        )
        self.overflow = Gauge(
            "db_pool_overflow",
            "Connections open beyond the pool size.",
            multiprocess_mode="livesum",
        )

    def watch(self, engine: AsyncEngine) -> None:
        pool: Any = engine.sync_engine.pool
        if not hasattr(pool, "checkedout"):
            return
        self.size.inc(pool.size())

        @event.listens_for(pool, "checkout")
        def _checkout(*_: Any) -> None:
            self.checked_out.inc()
            self.overflow.set(max(pool.overflow(), 0))

        @event.listens_for(pool, "checkin")
        def _checkin(*_: Any) -> None:
            self.checked_out.dec()
            self.overflow.set(max(pool.overflow(), 0))

    def forget(self, engine: AsyncEngine) -> None:
        pool: Any = engine.sync_engine.pool
        if hasattr(pool, "checkedout"):
            self.size.dec(pool.size())


_pool_collector: _PoolCollector | None = None
_pool_events: _PoolEvents | None = None


def watch_engine(engine: AsyncEngine) -> None:
    """Report this engine's pool in the `db_pool_*` gauges (called when the app starts)."""
    global _pool_collector, _pool_events
    if multiprocess_dir():
        if _pool_events is None:
            _pool_events = _PoolEvents()
        _pool_events.watch(engine)
        return
    if _pool_collector is None:
        _pool_collector = _PoolCollector()
        REGISTRY.register(_pool_collector)
    _pool_collector.engines.add(engine)


def forget_engine(engine: AsyncEngine) -> None:
    """Stop reporting this engine (called when the app stops)."""
    if _pool_events is not None:
        _pool_events.forget(engine)
    if _pool_collector is not None:
        _pool_collector.engines.discard(engine)


def process_exit() -> None:
    """Multi-process mode: drop this process's live gauges (its counters stay counted)."""
    if multiprocess_dir():
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def clear_multiprocess_dir() -> None:
    """Empty the shared directory before the workers start (stale files would be summed)."""
    folder = multiprocess_dir()
    if folder is None:
        return
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()


# --------------------------------------------------------------------------- the endpoint

router = APIRouter(tags=["service"])


# An operator's endpoint with its own token, like /docs kept out of the API's OpenAPI document.
@router.get(
    "/metrics",
    include_in_schema=False,
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}, "description": "Metrics"},
        **errors(401, 403, 404),
    },
)
async def metrics(request: Request) -> Response:
    """Prometheus metrics: METRICS_TOKEN as a bearer token, or an address in METRICS_ALLOW_IPS."""
    settings = request.app.state.settings
    authorize(request, settings.METRICS_TOKEN, tuple(settings.METRICS_ALLOW_IPS))
    return Response(generate_latest(_registry()), media_type=CONTENT_TYPE_LATEST)


def authorize(request: Request, token: str | None, allow_ips: tuple[str, ...]) -> None:
    """Let a scrape through when its address is allowed or it carries the token."""
    if not token and not allow_ips:
        raise NotFound("Metrics are off (set METRICS_TOKEN or METRICS_ALLOW_IPS).")
    if allow_ips and _allowed(client_ip(request.scope), allow_ips):
        return
    if not token:
        raise Forbidden("This address may not read the metrics.")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise NotAuthenticated("Send the metrics token as a bearer token.")
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise InvalidToken("The metrics token is wrong.")


def _allowed(ip: str, allow_ips: tuple[str, ...]) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in _networks(allow_ips))


@lru_cache(maxsize=8)
def _networks(
    allow_ips: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(part, strict=False) for part in allow_ips)


def _registry() -> CollectorRegistry:
    if not multiprocess_dir():
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry

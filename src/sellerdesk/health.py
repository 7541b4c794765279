"""Service routes: `/`, liveness and readiness."""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text

from sellerdesk import __version__

router = APIRouter(tags=["service"])
log = structlog.get_logger(__name__)


class RootInfo(BaseModel):
    message: str
    version: str


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]


@router.get("/", response_model=RootInfo)
async def root() -> RootInfo:
    """Name and version of the service."""
    return RootInfo(message="sellerdesk API: see /docs", version=__version__)


@router.get("/health", response_model=Health)
async def health() -> Health:
    """Liveness: 200 while the process serves."""
    return Health(status="healthy")


@router.get("/health/ready", response_model=Readiness, responses={503: {"model": Readiness}})
async def ready(request: Request) -> Any:
    """Readiness: the database and, when configured, Redis and the broker accept connections."""
    state = request.app.state
    checks: dict[str, str] = {}
    checks["database"] = await _check(_database(state))
    if state.redis is not None:
        checks["redis"] = await _check(state.redis.ping())
    broker = state.settings.broker_url  # only when CELERY_BROKER_URL is set
    if broker:
        checks["broker"] = await _check(_broker(broker))
    ok = all(value == "ok" for value in checks.values())
    body = Readiness(status="ready" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


async def _database(state: Any) -> None:
    async with state.engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


async def _broker(url: str) -> None:
    from kombu import Connection  # type: ignore[attr-defined]

    def connect() -> None:
        with Connection(url, connect_timeout=2) as connection:  # type: ignore[no-untyped-call]
            connection.ensure_connection(max_retries=1)

    await asyncio.to_thread(connect)


async def _check(check: Any) -> str:
    try:
        await asyncio.wait_for(check, timeout=3)
    except Exception as exc:
        log.warning("readiness_check_failed", error=type(exc).__name__)
        return "unavailable"
    return "ok"

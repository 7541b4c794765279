"""The application factory, its lifespan, and the ASGI/Lambda entry points."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from mangum import Mangum

from sellerdesk import __version__, health, jobs
from sellerdesk.amazon.providers import create_source
from sellerdesk.amazon.router import router as amazon_router
from sellerdesk.apikeys.router import router as apikeys_router
from sellerdesk.auth.passwords import Passwords
from sellerdesk.auth.router import router as auth_router
from sellerdesk.auth.service import AuthContext
from sellerdesk.auth.supabase import SupabaseVerifier
from sellerdesk.cart.router import router as cart_router
from sellerdesk.catalog.router import router as catalog_router
from sellerdesk.config import Settings, get_settings
from sellerdesk.credits.router import router as credits_router
from sellerdesk.db import create_engine, create_sessionmaker
from sellerdesk.errors import install_error_handlers
from sellerdesk.inventory.router import router as inventory_router
from sellerdesk.kit.cache import create_cache
from sellerdesk.kit.docs import install_docs
from sellerdesk.kit.iplimit import PerIpLimitMiddleware
from sellerdesk.kit.logging import configure_logging
from sellerdesk.kit.middleware import BodySizeLimitMiddleware, RequestContextMiddleware
from sellerdesk.kit.ratelimit import (
    Limiter,
    LoginThrottle,
    MemoryLoginFailures,
    RedisLoginFailures,
    create_storage,
)
from sellerdesk.kit.redis_client import create_redis
from sellerdesk.orders.router import admin_router as admin_orders_router
from sellerdesk.orders.router import router as orders_router
from sellerdesk.payments import service as payments_service
from sellerdesk.payments.providers import create_provider
from sellerdesk.payments.router import router as payments_router
from sellerdesk.users.router import router as users_router

log = structlog.get_logger(__name__)

API_PREFIX = "/api/v1"


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; resources (engine, Redis, limiters) open in the lifespan."""
    settings = settings or get_settings()
    configure_logging(settings.LOG_LEVEL, json=settings.log_json)
    if settings.SENTRY_DSN:
        import sentry_sdk

        sentry_sdk.init(
            dsn=settings.SENTRY_DSN, environment=settings.ENVIRONMENT, send_default_pii=False
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await _open(app, settings)
        jobs.start(app)
        try:
            yield
        finally:
            await jobs.stop(app)
            await _close(app)

    app = FastAPI(
        title="sellerdesk",
        version=__version__,
        description="A store and a credit-metered Amazon data API in one service.",
        lifespan=lifespan,
        docs_url=None,  # served by `install_docs`, offline
        redoc_url=None,  # ReDoc loads from a CDN: /docs is the one documentation page
    )
    app.state.settings = settings
    install_error_handlers(app)

    api = APIRouter(prefix=API_PREFIX)
    api.include_router(auth_router)
    api.include_router(users_router)
    api.include_router(catalog_router)
    api.include_router(cart_router)
    api.include_router(orders_router)
    api.include_router(admin_orders_router)
    api.include_router(inventory_router)
    api.include_router(amazon_router)
    api.include_router(payments_router)
    api.include_router(credits_router)
    api.include_router(apikeys_router)
    app.include_router(health.router)
    app.include_router(api)
    install_docs(app)

    if settings.BACKEND_CORS_ORIGINS:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.BACKEND_CORS_ORIGINS,
            allow_credentials=True,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=[
                "X-Request-ID",
                "Retry-After",
                "X-RateLimit-Limit",
                "X-RateLimit-Remaining",
                "X-Credits-Charged",
                "X-Credits-Remaining",
            ],
        )
    if settings.RATE_LIMIT_PER_IP:
        app.add_middleware(PerIpLimitMiddleware, limit=settings.RATE_LIMIT_PER_IP)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.MAX_REQUEST_BODY_BYTES)
    app.add_middleware(RequestContextMiddleware, hsts_seconds=settings.HSTS_SECONDS)
    return app


async def _open(app: FastAPI, settings: Settings) -> None:
    engine = create_engine(settings)
    app.state.engine = engine
    app.state.sessionmaker = create_sessionmaker(engine)
    app.state.redis = create_redis(settings.REDIS_URL) if settings.REDIS_URL else None
    app.state.cache = create_cache(app.state.redis, settings.REDIS_KEY_PREFIX)
    app.state.amazon = create_source(settings, app.state.cache)
    storage = create_storage(settings.REDIS_URL, key_prefix=f"{settings.REDIS_KEY_PREFIX}:limits")
    app.state.limiter = Limiter(storage)
    app.state.auth = AuthContext(
        settings=settings,
        passwords=Passwords(settings),
        throttle=LoginThrottle(
            RedisLoginFailures(app.state.redis, settings.REDIS_KEY_PREFIX)
            if app.state.redis is not None
            else MemoryLoginFailures(),
            per_account_address=settings.LOGIN_FAILURE_LIMIT_PER_ACCOUNT_ADDRESS,
            per_address=settings.LOGIN_FAILURE_LIMIT_PER_ADDRESS,
            per_account=settings.LOGIN_FAILURE_LIMIT_PER_ACCOUNT,
        ),
        supabase=SupabaseVerifier(settings) if settings.supabase_enabled else None,
    )
    if settings.LOGIN_FAILURE_LIMIT is not None:
        log.warning("deprecated_setting", name="LOGIN_FAILURE_LIMIT")
    app.state.payments = create_provider(settings)
    payments_service.register_provider(engine, app.state.payments)
    log.info(
        "app_started",
        environment=settings.ENVIRONMENT,
        database=engine.dialect.name,
        redis=bool(settings.REDIS_URL),
    )


async def _close(app: FastAPI) -> None:
    await app.state.amazon.aclose()
    await app.state.payments.close()
    if app.state.redis is not None:
        await app.state.redis.aclose()
    await app.state.engine.dispose()


app = create_app()
handler = Mangum(app, lifespan="auto")
"""AWS Lambda / Vercel entry point."""

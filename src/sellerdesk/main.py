"""The application factory, its lifespan, and the ASGI/Lambda entry points."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import structlog
from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from sellerdesk import __version__, admin_jobs, admin_stats, health, jobs
from sellerdesk.amazon.providers import create_source
from sellerdesk.amazon.router import router as amazon_router
from sellerdesk.apikeys.router import router as apikeys_router
from sellerdesk.auth.passwords import Passwords
from sellerdesk.auth.router import router as auth_router
from sellerdesk.auth.service import AuthContext
from sellerdesk.auth.supabase import SupabaseVerifier
from sellerdesk.cart.router import router as cart_router
from sellerdesk.catalog.cache import NAMESPACE as CATALOG_NAMESPACE
from sellerdesk.catalog.router import router as catalog_router
from sellerdesk.config import Settings, get_settings
from sellerdesk.credits.router import router as credits_router
from sellerdesk.dashboard.router import install as install_dashboard
from sellerdesk.db import create_engine, create_sessionmaker
from sellerdesk.errors import install_error_handlers
from sellerdesk.events import DISPATCHER_KEY, OutboxContext
from sellerdesk.inventory.router import router as inventory_router
from sellerdesk.kit import metrics
from sellerdesk.kit.cache import CachedReadMiddleware, create_cache
from sellerdesk.kit.docs import install_docs
from sellerdesk.kit.iplimit import PerIpLimitMiddleware
from sellerdesk.kit.logging import configure_logging
from sellerdesk.kit.memory import heap_started, tune_malloc
from sellerdesk.kit.middleware import BodySizeLimitMiddleware, RequestContextMiddleware
from sellerdesk.kit.openapi import install_openapi, operation_id
from sellerdesk.kit.ratelimit import (
    Limiter,
    LoginThrottle,
    MemoryLoginFailures,
    RedisLoginFailures,
    create_storage,
)
from sellerdesk.kit.redis_client import create_redis
from sellerdesk.orders.router import admin_router as admin_orders_router
from sellerdesk.orders.router import payments_router as order_payments_router
from sellerdesk.orders.router import router as orders_router
from sellerdesk.outbox import InProcessDispatcher
from sellerdesk.payments import service as payments_service
from sellerdesk.payments.providers import create_provider
from sellerdesk.payments.router import router as payments_router
from sellerdesk.users.router import router as users_router

if TYPE_CHECKING:
    from sellerdesk.worker import CeleryDispatcher

log = structlog.get_logger(__name__)

API_PREFIX = "/api/v1"
SHUTDOWN_DRAIN_SECONDS = 10  # in-flight outbox work finishes (or is left to the sweep)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; resources (engine, Redis, limiters) open in the lifespan."""
    settings = settings or get_settings()
    tune_malloc()  # already done by `sellerdesk serve`; here for other ASGI servers and Lambda
    configure_logging(settings.LOG_LEVEL, json=settings.log_json)
    jobs.register_event_handlers()
    if settings.SENTRY_DSN:
        import sentry_sdk

        sentry_sdk.init(
            dsn=settings.SENTRY_DSN, environment=settings.ENVIRONMENT, send_default_pii=False
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await _open(app, settings)
        heap_started()  # a server process's start-up heap leaves the collector's full passes
        try:
            yield
        finally:
            await _close(app)

    app = FastAPI(
        title="sellerdesk",
        version=__version__,
        description="A store and a credit-metered Amazon data API in one service.",
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
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
    api.include_router(order_payments_router)
    api.include_router(payments_router)
    api.include_router(credits_router)
    api.include_router(apikeys_router)
    api.include_router(admin_jobs.router)
    api.include_router(admin_stats.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(api)
    install_openapi(app)
    install_docs(app)
    install_dashboard(app)  # /dashboard: server-rendered pages, not in the OpenAPI document

    # Innermost: cached public catalog pages skip routing and dependencies, not the other layers.
    app.add_middleware(
        CachedReadMiddleware,
        namespace=CATALOG_NAMESPACE,
        prefixes=(f"{API_PREFIX}/products", f"{API_PREFIX}/categories"),
    )
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
    app.add_middleware(metrics.MetricsMiddleware)
    app.add_middleware(RequestContextMiddleware, hsts_seconds=settings.HSTS_SECONDS)
    return app


def create_serverless_app(settings: Settings | None = None) -> FastAPI:
    """The app for AWS Lambda and Vercel: never the in-process scheduler.

    A function is frozen between invocations, so periodic jobs there would run at random or
    never: they belong to Celery beat on an always-on host (`sellerdesk beat`).
    """
    settings = settings or get_settings()
    turned_off = settings.JOBS_ENABLED
    if turned_off:
        settings = settings.model_copy(update={"JOBS_ENABLED": False})
    app = create_app(settings)  # configures logging: log after it
    if turned_off:
        log.info("serverless_jobs_disabled", reason="a function is frozen between invocations")
    return app


def create_handler(settings: Settings | None = None) -> Callable[..., dict[str, Any]]:
    """The AWS Lambda handler: Mangum over the serverless app (API Gateway v1/v2, ALB events).

    Mangum runs the app's lifespan around every invocation, so each one opens its database and
    Redis connections and closes them before the function is frozen: put a pooler (PgBouncer,
    RDS Proxy) in front of PostgreSQL.
    """
    from mangum import Mangum

    handler: Callable[..., dict[str, Any]] = Mangum(
        create_serverless_app(settings), lifespan="auto"
    )
    return handler


async def _open(app: FastAPI, settings: Settings) -> None:
    engine = create_engine(settings)
    app.state.engine = engine
    app.state.sessionmaker = create_sessionmaker(engine)
    app.state.redis = create_redis(settings.REDIS_URL) if settings.REDIS_URL else None
    app.state.cache = create_cache(app.state.redis, settings.REDIS_KEY_PREFIX)
    app.state.amazon = create_source(settings, app.state.cache, app.state.redis)
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
    _open_jobs(app, settings)
    metrics.watch_engine(engine)
    log.info(
        "app_started",
        environment=settings.ENVIRONMENT,
        database=engine.dialect.name,
        redis=bool(settings.REDIS_URL),
        jobs="celery" if settings.broker_url else "in-process",
    )


def _open_jobs(app: FastAPI, settings: Settings) -> None:
    """The outbox dispatcher (Celery with a broker, else this process) and, without a broker,
    the in-process scheduler of periodic jobs."""
    dispatcher: InProcessDispatcher | CeleryDispatcher
    if settings.broker_url:
        # Celery is imported only when a broker is configured.
        from sellerdesk.worker import CeleryDispatcher, create_celery

        dispatcher = CeleryDispatcher(create_celery(settings))
    else:
        dispatcher = InProcessDispatcher(OutboxContext(app.state.sessionmaker, settings))
    app.state.sessionmaker.configure(info={DISPATCHER_KEY: dispatcher})
    app.state.dispatcher = dispatcher
    app.state.runtime = jobs.Runtime(
        settings=settings,
        engine=app.state.engine,
        sessionmaker=app.state.sessionmaker,
        cache=app.state.cache,
        payments=app.state.payments,
        dispatcher=dispatcher,
    )
    app.state.scheduler = jobs.Scheduler(app.state.runtime)
    if settings.JOBS_ENABLED and not settings.broker_url:
        app.state.scheduler.start()


async def _close(app: FastAPI) -> None:
    """Close every resource, each even if another fails (uvicorn calls this after the last
    in-flight request finished or GRACEFUL_SHUTDOWN_SECONDS ran out)."""
    state = app.state
    await state.scheduler.stop()
    await state.dispatcher.close(SHUTDOWN_DRAIN_SECONDS)
    metrics.forget_engine(state.engine)
    closers: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        ("amazon", state.amazon.aclose),
        ("payments", state.payments.close),
        ("engine", state.engine.dispose),
    ]
    if state.redis is not None:
        closers.append(("redis", state.redis.aclose))
    for name, close in closers:
        try:
            await close()
        except Exception:
            log.exception("close_failed", resource=name)
    metrics.process_exit()
    log.info("app_stopped")


def __getattr__(name: str) -> Any:
    """`app` (uvicorn's `sellerdesk.main:app`) and `handler` (AWS Lambda's
    `sellerdesk.main.handler`) are built on first use, so importing this module builds neither
    and a Lambda cold start builds only the serverless app."""
    if name == "app":
        value: Any = create_app()
    elif name == "handler":
        value = create_handler()
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value

"""Settings from the environment (and an optional `.env`)."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_SECRET_KEY = "dev-secret-key-change-me-in-production-0123456789"  # noqa: S105

Environment = Literal["development", "test", "staging", "production"]


class Settings(BaseSettings):
    """Every setting of the service; names match the environment variables."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=True)

    ENVIRONMENT: Environment = "development"
    PROJECT_NAME: str = "sellerdesk"
    LOG_LEVEL: str = "INFO"
    LOG_JSON: bool | None = None  # None: JSON everywhere but development

    DATABASE_URL: str = "sqlite+aiosqlite:///./sellerdesk.db"
    DATABASE_POOL_SIZE: int = 10
    DATABASE_MAX_OVERFLOW: int = 20
    # PostgreSQL: a database that stops answering without closing connections (a partition)
    # makes requests fail with 503 after these, instead of hanging until TCP gives up.
    DATABASE_CONNECT_TIMEOUT_SECONDS: float = Field(default=10.0, gt=0)
    DATABASE_COMMAND_TIMEOUT_SECONDS: float = Field(default=60.0, gt=0)
    REDIS_URL: str | None = None
    REDIS_KEY_PREFIX: str = "sellerdesk"  # every Redis key starts with it (cache, limits, locks)
    CELERY_BROKER_URL: str | None = None

    SECRET_KEY: str = DEFAULT_SECRET_KEY
    ALGORITHM: Literal["HS256", "HS384", "HS512"] = "HS256"
    ACCESS_TOKEN_EXPIRE_MINUTES: int = Field(default=30, ge=1)
    REFRESH_TOKEN_EXPIRE_DAYS: int = Field(default=14, ge=1)
    JWT_ISSUER: str = "sellerdesk"

    # argon2id cost; defaults are the OWASP minimum (19 MiB, 2 passes, 1 lane).
    PASSWORD_HASH_MEMORY_KIB: int = Field(default=19456, ge=8)
    PASSWORD_HASH_TIME_COST: int = Field(default=2, ge=1)
    PASSWORD_HASH_PARALLELISM: int = Field(default=1, ge=1)

    AUTH_SUPABASE_JWT_SECRET: str | None = None
    AUTH_SUPABASE_JWKS_URL: str | None = None
    AUTH_SUPABASE_ISSUER: str | None = None
    AUTH_SUPABASE_AUDIENCE: str = "authenticated"

    BACKEND_CORS_ORIGINS: Annotated[list[str], NoDecode] = []
    MAX_REQUEST_BODY_BYTES: int = Field(default=10 * 1024 * 1024, ge=1024)
    HSTS_SECONDS: int = Field(default=31_536_000, ge=0)

    RATE_LIMIT_DEFAULT: str = "100/minute"
    RATE_LIMIT_GLOBAL: str = "10000/minute"
    RATE_LIMIT_PER_IP: str | None = None

    CURRENCY: str = "usd"
    ORDER_PAYMENT_TIMEOUT_MINUTES: int = Field(default=30, ge=1)
    CACHE_TTL_SECONDS: int = Field(default=60, ge=1)

    # Orders, idempotency and in-process periodic jobs (issue 5).
    IDEMPOTENCY_LEASE_SECONDS: int = Field(
        default=120, ge=1
    )  # an unfinished claim older is abandoned
    JOBS_ENABLED: bool = (
        True  # the in-process scheduler (order expiry, key purge); tests turn it off
    )
    JOBS_INTERVAL_SECONDS: int = Field(default=15, ge=1)  # how often it looks for due jobs

    PAYMENT_PROVIDER: Literal["manual", "stripe"] | None = None
    STRIPE_SECRET_KEY: str | None = None
    STRIPE_PUBLISHABLE_KEY: str | None = None
    STRIPE_WEBHOOK_SECRET: str | None = None
    STRIPE_API_BASE: str | None = None
    PAYMENT_RECONCILE_AFTER_MINUTES: int = Field(default=10, ge=1)
    # Payments (issue 6): the Stripe SDK's own retries (each retry reuses our idempotency key),
    # its per-request timeout, and the payment method types sent with every new intent.
    STRIPE_MAX_NETWORK_RETRIES: int = Field(default=2, ge=0)
    STRIPE_TIMEOUT_SECONDS: float = Field(default=30.0, gt=0)
    STRIPE_PAYMENT_METHOD_TYPES: Annotated[list[str], NoDecode] = ["card"]
    # Two-phase refunds (issue 11): a refund still `pending` this long after it was recorded
    # (its provider call never answered, or its answer was lost) is settled by the periodic
    # job `settle_pending_refunds`, which asks the provider under the refund's own key.
    REFUND_SETTLE_AFTER_SECONDS: int = Field(default=300, ge=1)

    AMAZON_PROVIDER: Literal["local", "sp-api"] = "local"
    SPAPI_CLIENT_ID: str | None = None
    SPAPI_CLIENT_SECRET: str | None = None
    SPAPI_LWA_URL: str = "https://api.amazon.com/auth/o2/token"
    SPAPI_SELLER_ID: str | None = None
    SPAPI_TIMEOUT_SECONDS: float = Field(default=10.0, gt=0)
    SPAPI_MAX_RETRIES: int = Field(default=4, ge=0)
    AMAZON_CACHE_TTL_SECONDS: int = Field(default=3600, ge=1)
    # Amazon data layer (issue 7, amazon part): pacing of SP-API retries, how long "not found"
    # answers are remembered, which marketplace's FBA inventory resolves FNSKUs, upload cap.
    SPAPI_BACKOFF_SECONDS: float = Field(default=1.0, ge=0)  # first retry wait; doubles each try
    SPAPI_BACKOFF_MAX_SECONDS: float = Field(default=30.0, ge=0)
    # Any code of amazon/regions.py; checked against that table when the sp-api source starts.
    SPAPI_INVENTORY_MARKETPLACE: str = "US"
    AMAZON_NOT_FOUND_TTL_SECONDS: int = Field(default=300, ge=1)
    AMAZON_REPORT_MAX_BYTES: int = Field(default=10 * 1024 * 1024, ge=1024)
    # SP-API regions and quotas (issue 17). A refresh token per selling region (a seller
    # authorises the application once per region); SPAPI_REFRESH_TOKEN and SPAPI_ENDPOINT are the
    # North America ones, kept for compatibility. Endpoints default to Amazon's regional hosts.
    SPAPI_NA_REFRESH_TOKEN: str | None = None
    SPAPI_EU_REFRESH_TOKEN: str | None = None
    SPAPI_FE_REFRESH_TOKEN: str | None = None
    SPAPI_REFRESH_TOKEN: str | None = None  # alias of SPAPI_NA_REFRESH_TOKEN
    SPAPI_NA_ENDPOINT: str | None = None
    SPAPI_EU_ENDPOINT: str | None = None
    SPAPI_FE_ENDPOINT: str | None = None
    SPAPI_ENDPOINT: str | None = None  # alias of SPAPI_NA_ENDPOINT
    # Each (seller, operation) is paced to Amazon's rate (x-amzn-RateLimit-Limit once seen, else
    # these defaults: Catalog Items and FBA Inventory allow 2 requests/s, burst 2), shared across
    # processes through Redis when REDIS_URL is set. A call waits at most SPAPI_MAX_WAIT_SECONDS
    # for quota (retries and 429 back-offs included), then answers 503 with Retry-After.
    SPAPI_DEFAULT_RATE: float = Field(default=2.0, gt=0)
    SPAPI_DEFAULT_BURST: int = Field(default=2, ge=1)
    SPAPI_MAX_WAIT_SECONDS: float = Field(default=2.0, ge=0)
    CREDITS_REPEAT_WINDOW: int = Field(default=86_400, ge=0)  # seconds
    # Crash safety of paid calls (issue 11): a charge whose call recorded no outcome (served or
    # refunded) this long after it was taken is refunded by the sweep.
    CREDITS_SWEEP_AFTER_SECONDS: int = Field(default=300, ge=1)

    SENTRY_DSN: str | None = None

    # The web dashboard (issue 16): how long a browser stays signed in (then it signs in again).
    DASHBOARD_SESSION_HOURS: int = Field(default=12, ge=1, le=24 * 30)

    # Jobs, the outbox, Celery and email (issue 10). CELERY_BROKER_URL (above) turns Celery on;
    # unset, the same jobs run in-process. A task lost with its worker comes back after the
    # visibility timeout, so every time limit and retry countdown stays below it.
    CELERY_VISIBILITY_TIMEOUT_SECONDS: int = Field(default=240, ge=2, le=3600)
    JOB_TIME_LIMIT_SECONDS: int = Field(default=120, ge=1)  # one event's handlers, or one job run
    OUTBOX_SWEEP_AFTER_SECONDS: int = Field(default=60, ge=1)  # undispatched rows re-sent after
    OUTBOX_MAX_ATTEMPTS: int = Field(default=8, ge=1)  # then the event is `failed`
    OUTBOX_RETRY_SECONDS: int = Field(default=30, ge=1)  # first retry wait; doubles, ≤ 1 h
    OUTBOX_RETENTION_DAYS: int = Field(default=14, ge=1)  # done events are purged after
    SMTP_HOST: str | None = None  # unset: emails are rendered and logged, not sent
    SMTP_PORT: int = Field(default=587, ge=1, le=65535)
    SMTP_SECURITY: Literal["auto", "starttls", "tls", "none"] = "auto"
    SMTP_TIMEOUT_SECONDS: float = Field(default=30.0, gt=0)
    EMAIL_USERNAME: str | None = None
    EMAIL_PASSWORD: str | None = None
    EMAIL_FROM: str = "sellerdesk <no-reply@sellerdesk.localhost>"
    # Deploy and scale-out (issue 13): Prometheus metrics at /metrics (off unless a token or an
    # allow-list is set), the grace period of a shutdown, and asyncpg's prepared-statement cache
    # (0 behind PgBouncer in transaction mode, where a connection is not the same server session).
    METRICS_TOKEN: str | None = None
    METRICS_ALLOW_IPS: Annotated[list[str], NoDecode] = []
    GRACEFUL_SHUTDOWN_SECONDS: int = Field(default=25, ge=1)
    DATABASE_STATEMENT_CACHE_SIZE: int = Field(default=100, ge=0)
    # Hardening (issue 12). Failed-login limits, in the `limits` notation: wrong passwords for
    # one account from one client address; from one address for any account; and for one
    # account from everywhere, which refuses only addresses that have failed for that account.
    LOGIN_FAILURE_LIMIT_PER_ACCOUNT_ADDRESS: str = "10/minute"
    LOGIN_FAILURE_LIMIT_PER_ADDRESS: str = "30/minute"
    LOGIN_FAILURE_LIMIT_PER_ACCOUNT: str = "10/minute"
    LOGIN_FAILURE_LIMIT: str | None = None  # deprecated: the default of the three limits above
    # Addresses (comma-separated, or "*") of proxies whose X-Forwarded-For/-Proto are believed.
    FORWARDED_ALLOW_IPS: str = "127.0.0.1"
    API_KEYS_PER_USER: int = Field(default=20, ge=1)  # active (unrevoked) keys per user
    # Link a Supabase identity to an existing account on `user_metadata.email_verified`, which
    # Supabase users can edit themselves; off: only claims users cannot set are believed.
    AUTH_SUPABASE_TRUST_USER_METADATA: bool = False

    @field_validator("BACKEND_CORS_ORIGINS", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip()
            if value.startswith("["):
                import json

                return json.loads(value)
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("STRIPE_PAYMENT_METHOD_TYPES", "METRICS_ALLOW_IPS", mode="before")
    @classmethod
    def _split_comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("SPAPI_INVENTORY_MARKETPLACE")
    @classmethod
    def _upper_marketplace(cls, value: str) -> str:
        code = value.strip().upper()
        return {"GB": "UK"}.get(code, code)

    @field_validator("METRICS_ALLOW_IPS")
    @classmethod
    def _check_metrics_ips(cls, value: list[str]) -> list[str]:
        import ipaddress

        for part in value:
            ipaddress.ip_network(part, strict=False)  # ValueError names the bad entry
        return value

    @field_validator("DATABASE_URL")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        """`postgresql://` / `postgres://` (as hosting providers print them) use asyncpg."""
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(value)
        except ArgumentError as exc:
            raise ValueError("DATABASE_URL is not a database URL") from exc
        if url.drivername in ("postgresql", "postgres"):
            query = dict(url.query)
            if "sslmode" in query:  # libpq's name; asyncpg calls it `ssl`
                query["ssl"] = query.pop("sslmode")
            url = url.set(drivername="postgresql+asyncpg", query=query)
        elif url.drivername == "sqlite":
            url = url.set(drivername="sqlite+aiosqlite")
        else:
            return value
        return url.render_as_string(hide_password=False)

    @field_validator(
        "LOGIN_FAILURE_LIMIT_PER_ACCOUNT_ADDRESS",
        "LOGIN_FAILURE_LIMIT_PER_ADDRESS",
        "LOGIN_FAILURE_LIMIT_PER_ACCOUNT",
        "LOGIN_FAILURE_LIMIT",
    )
    @classmethod
    def _rate_limit_notation(cls, value: str | None) -> str | None:
        if value is not None:
            from limits import parse

            try:
                amount = parse(value).amount
            except ValueError as exc:
                raise ValueError(f"{value!r} is not a limit such as '10/minute'") from exc
            if amount < 1:
                raise ValueError(f"{value!r} allows nothing; use a limit such as '10/minute'")
        return value

    @model_validator(mode="after")
    def _login_failure_limit_alias(self) -> Settings:
        if self.LOGIN_FAILURE_LIMIT is not None:
            for name in (
                "LOGIN_FAILURE_LIMIT_PER_ACCOUNT_ADDRESS",
                "LOGIN_FAILURE_LIMIT_PER_ADDRESS",
                "LOGIN_FAILURE_LIMIT_PER_ACCOUNT",
            ):
                if name not in self.model_fields_set:
                    setattr(self, name, self.LOGIN_FAILURE_LIMIT)
        return self

    @field_validator("CURRENCY")
    @classmethod
    def _lower_currency(cls, value: str) -> str:
        if len(value) != 3 or not value.isalpha():
            raise ValueError("CURRENCY must be an ISO 4217 code such as 'usd'")
        return value.lower()

    @model_validator(mode="after")
    def _time_limits_below_visibility(self) -> Settings:
        if self.JOB_TIME_LIMIT_SECONDS >= self.CELERY_VISIBILITY_TIMEOUT_SECONDS:
            raise ValueError(
                "JOB_TIME_LIMIT_SECONDS must be below CELERY_VISIBILITY_TIMEOUT_SECONDS, or a "
                "task still running would be delivered a second time"
            )
        return self

    @model_validator(mode="after")
    def _refuse_default_secrets(self) -> Settings:
        if self.ENVIRONMENT != "development" and self.SECRET_KEY == DEFAULT_SECRET_KEY:
            raise ValueError(
                f"SECRET_KEY still has its default value; set a real secret when "
                f"ENVIRONMENT={self.ENVIRONMENT}"
            )
        if self.ENVIRONMENT != "development" and len(self.SECRET_KEY) < 32:
            raise ValueError("SECRET_KEY must be at least 32 characters outside development")
        return self

    @model_validator(mode="after")
    def _refuse_conflicting_spapi_aliases(self) -> Settings:
        for alias, name in (
            ("SPAPI_REFRESH_TOKEN", "SPAPI_NA_REFRESH_TOKEN"),
            ("SPAPI_ENDPOINT", "SPAPI_NA_ENDPOINT"),
        ):
            first, second = getattr(self, alias), getattr(self, name)
            if first is not None and second is not None and first != second:
                raise ValueError(f"{alias} is an alias of {name}: set one of them, not both")
        return self

    @property
    def payment_provider(self) -> Literal["manual", "stripe"]:
        """The provider in use: explicit, else `stripe` when a Stripe key is set."""
        if self.PAYMENT_PROVIDER is not None:
            return self.PAYMENT_PROVIDER
        return "stripe" if self.STRIPE_SECRET_KEY else "manual"

    @property
    def broker_url(self) -> str | None:
        """The Celery broker, only when CELERY_BROKER_URL is set; None means in-process jobs
        (never REDIS_URL: a deployment that runs no worker must not queue jobs nobody takes)."""
        return self.CELERY_BROKER_URL or None

    @property
    def supabase_enabled(self) -> bool:
        return bool(self.AUTH_SUPABASE_JWT_SECRET or self.AUTH_SUPABASE_JWKS_URL)

    @property
    def is_sqlite(self) -> bool:
        return self.DATABASE_URL.startswith("sqlite")

    @property
    def log_json(self) -> bool:
        return self.LOG_JSON if self.LOG_JSON is not None else self.ENVIRONMENT != "development"


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()

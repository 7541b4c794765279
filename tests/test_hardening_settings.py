"""Settings of the hardening work: login limits (and their deprecated alias), database URLs."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from sellerdesk.config import Settings
from sellerdesk.db import _loopback_without_tls


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_the_login_limits_have_safe_defaults() -> None:
    s = settings()
    assert s.LOGIN_FAILURE_LIMIT_PER_ACCOUNT_ADDRESS == "10/minute"
    assert s.LOGIN_FAILURE_LIMIT_PER_ADDRESS == "30/minute"
    assert s.LOGIN_FAILURE_LIMIT_PER_ACCOUNT == "10/minute"
    assert s.FORWARDED_ALLOW_IPS == "127.0.0.1"
    assert s.API_KEYS_PER_USER == 20


def test_the_deprecated_login_limit_fills_the_limits_not_set() -> None:
    s = settings(LOGIN_FAILURE_LIMIT="5/hour", LOGIN_FAILURE_LIMIT_PER_ADDRESS="7/minute")
    assert s.LOGIN_FAILURE_LIMIT_PER_ACCOUNT_ADDRESS == "5/hour"
    assert s.LOGIN_FAILURE_LIMIT_PER_ACCOUNT == "5/hour"
    assert s.LOGIN_FAILURE_LIMIT_PER_ADDRESS == "7/minute"


@pytest.mark.parametrize("value", ["lots", "10 per", "", "ten/minute", "0/minute"])
def test_a_limit_that_is_not_in_the_limits_notation_is_refused(value: str) -> None:
    with pytest.raises(ValidationError, match="10/minute"):
        settings(LOGIN_FAILURE_LIMIT_PER_ACCOUNT=value)


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("postgresql://u:p@db:5432/shop", "postgresql+asyncpg://u:p@db:5432/shop"),
        ("postgres://u@db/shop", "postgresql+asyncpg://u@db/shop"),
        ("postgresql://u@db/shop?sslmode=require", "postgresql+asyncpg://u@db/shop?ssl=require"),
        ("sqlite:///./x.db", "sqlite+aiosqlite:///./x.db"),
        ("postgresql+asyncpg://u@db/shop", "postgresql+asyncpg://u@db/shop"),
        ("sqlite+aiosqlite:///./x.db", "sqlite+aiosqlite:///./x.db"),
    ],
)
def test_database_urls_without_an_async_driver_get_one(given: str, used: str) -> None:
    url = settings(DATABASE_URL=given).DATABASE_URL
    assert url == used


def test_a_database_url_that_is_not_a_url_is_refused() -> None:
    with pytest.raises(ValidationError, match="DATABASE_URL"):
        settings(DATABASE_URL="nonsense")


@pytest.mark.parametrize(
    ("url", "args"),
    [
        ("postgresql+asyncpg://u@127.0.0.1/shop", {"ssl": False}),
        ("postgresql+asyncpg://u@localhost:5433/shop", {"ssl": False}),
        ("postgresql+asyncpg://u@[::1]/shop", {"ssl": False}),
        ("postgresql+asyncpg://u@127.0.0.1/shop?ssl=require", {}),
        ("postgresql+asyncpg://u@db.example.com/shop", {}),
        ("postgresql+asyncpg://u@10.0.0.5/shop", {}),
        ("postgresql+asyncpg://u@/shop?host=/run/postgresql", {}),
    ],
)
def test_no_tls_attempt_to_a_database_on_this_machine_unless_asked(
    url: str, args: dict[str, object]
) -> None:
    """TLS over loopback protects nothing and cost ~0.9 ms of CPU per new connection."""
    assert _loopback_without_tls(url) == args

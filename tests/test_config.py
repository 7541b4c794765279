"""Settings: default secrets refused outside development, list parsing; argon2 cost."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import ValidationError

from sellerdesk.auth.passwords import Passwords
from sellerdesk.config import DEFAULT_SECRET_KEY, Settings

STRONG_SECRET = "a-real-secret-for-this-deployment-0123456789"


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ENVIRONMENT", "SECRET_KEY", "BACKEND_CORS_ORIGINS"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("environment", ["staging", "production", "test"])
def test_the_default_secret_key_is_refused_outside_development(environment: str) -> None:
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        settings(ENVIRONMENT=environment)
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        settings(ENVIRONMENT=environment, SECRET_KEY=DEFAULT_SECRET_KEY)


@pytest.mark.parametrize("environment", ["staging", "production", "test"])
def test_a_short_secret_key_is_refused_outside_development(environment: str) -> None:
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        settings(ENVIRONMENT=environment, SECRET_KEY="too-short")


@pytest.mark.parametrize("environment", ["staging", "production", "test"])
def test_a_real_secret_key_is_accepted_everywhere(environment: str) -> None:
    configured = settings(ENVIRONMENT=environment, SECRET_KEY=STRONG_SECRET)
    assert configured.SECRET_KEY == STRONG_SECRET


def test_the_default_secret_key_is_accepted_in_development() -> None:
    configured = settings(ENVIRONMENT="development")
    assert configured.SECRET_KEY == DEFAULT_SECRET_KEY
    assert settings().ENVIRONMENT == "development"


def test_the_secret_key_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    with pytest.raises(ValidationError):
        settings()
    monkeypatch.setenv("SECRET_KEY", STRONG_SECRET)
    assert settings().ENVIRONMENT == "production"


def test_an_unknown_environment_is_refused() -> None:
    with pytest.raises(ValidationError):
        settings(ENVIRONMENT="prod")


def test_production_changes_nothing_but_the_secret_check() -> None:
    production = settings(ENVIRONMENT="production", SECRET_KEY=STRONG_SECRET)
    development = settings(ENVIRONMENT="development", SECRET_KEY=STRONG_SECRET)
    differing = {
        name
        for name in Settings.model_fields
        if getattr(production, name) != getattr(development, name)
    }
    assert differing == {"ENVIRONMENT"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://a.example,https://b.example", ["https://a.example", "https://b.example"]),
        (" https://a.example , https://b.example ,", ["https://a.example", "https://b.example"]),
        (
            '["https://a.example", "http://localhost:3000"]',
            ["https://a.example", "http://localhost:3000"],
        ),
        ("https://only.example", ["https://only.example"]),
        ("", []),
    ],
)
def test_cors_origins_parse_from_a_comma_list_or_a_json_list(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: list[str]
) -> None:
    monkeypatch.setenv("BACKEND_CORS_ORIGINS", raw)
    assert expected == settings().BACKEND_CORS_ORIGINS


def test_cors_origins_accept_a_list_and_a_string_in_code() -> None:
    assert settings(BACKEND_CORS_ORIGINS=["https://a.example"]).BACKEND_CORS_ORIGINS == [
        "https://a.example"
    ]
    assert settings(
        BACKEND_CORS_ORIGINS="https://a.example,https://b.example"
    ).BACKEND_CORS_ORIGINS == [
        "https://a.example",
        "https://b.example",
    ]


def test_malformed_cors_json_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKEND_CORS_ORIGINS", '["https://a.example"')
    with pytest.raises(ValidationError):
        settings()


def test_currency_is_lower_cased_and_checked() -> None:
    assert settings(CURRENCY="EUR").CURRENCY == "eur"
    with pytest.raises(ValidationError):
        settings(CURRENCY="euro")


def test_payment_provider_defaults_to_manual_without_a_stripe_key() -> None:
    assert settings().payment_provider == "manual"
    assert settings(STRIPE_SECRET_KEY="sk_test_x").payment_provider == "stripe"
    assert settings(STRIPE_SECRET_KEY="sk_test_x", PAYMENT_PROVIDER="manual").payment_provider == (
        "manual"
    )


def test_supabase_mode_is_on_when_a_secret_or_jwks_url_is_set() -> None:
    assert settings().supabase_enabled is False
    assert settings(AUTH_SUPABASE_JWT_SECRET="s" * 32).supabase_enabled is True
    assert settings(AUTH_SUPABASE_JWKS_URL="http://127.0.0.1:9/jwks").supabase_enabled is True


# --------------------------------------------------------------------------- argon2


def _argon2_parameters(hashed: str) -> dict[str, int]:
    match = re.fullmatch(r"\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$[^$]+\$[^$]+", hashed)
    assert match, hashed
    m, t, p = (int(group) for group in match.groups())
    return {"m": m, "t": t, "p": p}


async def test_default_password_hashing_is_argon2id_at_the_owasp_minimum() -> None:
    hashed = await Passwords(settings()).hash("a-password-to-hash")
    parameters = _argon2_parameters(hashed)
    assert parameters["m"] >= 19456  # KiB: 19 MiB
    assert parameters["t"] >= 2
    assert parameters["p"] >= 1


async def test_password_hashes_verify_and_are_salted() -> None:
    passwords = Passwords(settings(PASSWORD_HASH_MEMORY_KIB=1024, PASSWORD_HASH_TIME_COST=1))
    first, second = await passwords.hash("same-password"), await passwords.hash("same-password")
    assert first != second
    assert (await passwords.verify("same-password", first))[0] is True
    assert (await passwords.verify("other-password", first))[0] is False
    assert (await passwords.verify("anything", None))[0] is False


async def test_weaker_stored_hashes_are_upgraded_on_login() -> None:
    weak = Passwords(settings(PASSWORD_HASH_MEMORY_KIB=1024, PASSWORD_HASH_TIME_COST=1))
    strong = Passwords(settings(PASSWORD_HASH_MEMORY_KIB=2048, PASSWORD_HASH_TIME_COST=2))
    old = await weak.hash("upgrade-me-please")
    valid, upgraded = await strong.verify("upgrade-me-please", old)
    assert valid is True and upgraded is not None
    assert _argon2_parameters(upgraded) == {"m": 2048, "t": 2, "p": 1}


async def test_bcrypt_hashes_still_verify() -> None:
    from pwdlib.hashers.bcrypt import BcryptHasher

    legacy = BcryptHasher(rounds=4).hash("legacy-password")
    passwords = Passwords(settings(PASSWORD_HASH_MEMORY_KIB=1024, PASSWORD_HASH_TIME_COST=1))
    valid, upgraded = await passwords.verify("legacy-password", legacy)
    assert valid is True
    assert upgraded is not None and upgraded.startswith("$argon2id$")

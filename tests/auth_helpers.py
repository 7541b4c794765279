"""Helpers shared by the auth, JWT, Supabase and users tests."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select

from sellerdesk.models import RefreshToken, User

REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"
ME = "/api/v1/users/me"
USERS = "/api/v1/users"


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is an error of the contract's shape with this status and code."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    assert set(body) <= {"error", "message", "details"}
    return body


def assert_no_secrets(response: httpx.Response) -> None:
    """No field named like a password, and no password or token hash, anywhere in the body."""
    text = response.text
    assert "$argon2" not in text and "$2b$" not in text
    assert "hashed" not in text and "token_hash" not in text

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                assert "password" not in str(key).lower(), key
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    if text:
        walk(response.json())


def client_from(app: FastAPI, ip: str) -> httpx.AsyncClient:
    """A client of the app whose requests come from this client address."""
    transport = httpx.ASGITransport(app=app, client=(ip, 4321))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def count_users(app: FastAPI, **filters: Any) -> int:
    async with app.state.sessionmaker() as session:
        stmt = select(func.count()).select_from(User).filter_by(**filters)
        return int(await session.scalar(stmt) or 0)


async def user_row(app: FastAPI, email: str) -> User | None:
    async with app.state.sessionmaker() as session:
        user: User | None = await session.scalar(select(User).where(User.email == email))
        return user


async def live_refresh_tokens(app: FastAPI, user_id: int) -> int:
    async with app.state.sessionmaker() as session:
        stmt = (
            select(func.count())
            .select_from(RefreshToken)
            .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        )
        return int(await session.scalar(stmt) or 0)

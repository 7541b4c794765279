"""Plain async factories that act through the public API, like a client would."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import update

from sellerdesk.models import IdempotencyKey, User
from sellerdesk.models.base import utcnow

_seq = itertools.count(1)
PASSWORD = "correct-horse-battery"


@dataclass
class Account:
    id: int
    email: str
    password: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


async def register(
    client: httpx.AsyncClient, email: str | None = None, password: str = PASSWORD
) -> Account:
    """Register and log in a new user."""
    email = email or f"user{next(_seq)}@example.com"
    created = await client.post(
        "/api/v1/auth/register", json={"email": email, "password": password}
    )
    assert created.status_code == 201, created.text
    tokens = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    return Account(
        created.json()["id"], email, password, body["access_token"], body["refresh_token"]
    )


async def register_admin(client: httpx.AsyncClient, app: FastAPI) -> Account:
    """A user promoted to superuser directly in the database."""
    account = await register(client, f"admin{next(_seq)}@example.com")
    async with app.state.sessionmaker() as session:
        await session.execute(update(User).where(User.id == account.id).values(is_superuser=True))
        await session.commit()
    return account


async def expire_claim(app: FastAPI, user_id: int, key: str) -> None:
    """Make an Idempotency-Key's claim look older than the lease, as if its first attempt had
    died (or outlived the lease): the next request with the key takes it over."""
    async with app.state.sessionmaker() as session:
        await session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.user_id == user_id, IdempotencyKey.key == key)
            .values(created_at=utcnow() - timedelta(hours=1))
        )
        await session.commit()

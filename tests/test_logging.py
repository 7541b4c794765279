"""No log line ever holds a secret, even with SQL logging on and a query crashing mid-request.

(The whole suite is scanned as well: see `no_secrets_in_logs` in `conftest.py`.)
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select, text

from sellerdesk.db import SessionDep
from sellerdesk.models import ApiKey, RefreshToken, User
from tests.auth_helpers import LOGIN, LOGOUT, ME, REFRESH, bearer
from tests.conftest import AppFactory
from tests.credits_factories import create_key, grant, mount_paid_test_routes
from tests.factories import register, register_admin
from tests.log_scan import SECRET_PATTERNS, SecretScanner

FIRST_PASSWORD = "first-Secret-pw-17"
SECOND_PASSWORD = "second-Secret-pw-42"


@pytest.fixture
def scanner() -> Iterator[SecretScanner]:
    """Every line at DEBUG, SQLAlchemy's statement log on (as `echo=True` would turn it on)."""
    scanner = SecretScanner()
    scanner.keep_lines = True
    root, sql = logging.getLogger(), logging.getLogger("sqlalchemy.engine")
    sql_level = sql.level
    sql.setLevel(logging.INFO)
    root.addHandler(scanner)
    yield scanner
    root.removeHandler(scanner)
    sql.setLevel(sql_level)


async def _query_that_crashes(session: SessionDep) -> None:
    """A bug: a statement with a secret parameter fails; its traceback goes to the log."""
    await session.execute(
        text("INSERT INTO no_such_table (secret) VALUES (:secret)"),
        {"secret": f"$argon2id$v=19$m=65536,t=3,p=4${SECOND_PASSWORD}"},
    )


async def test_a_realistic_run_logs_no_password_token_key_or_hash(
    make_app: AppFactory, scanner: SecretScanner
) -> None:
    app = mount_paid_test_routes(await make_app(LOG_LEVEL="DEBUG"))
    app.add_api_route("/crash", _query_that_crashes, methods=["POST"])
    secrets: list[str] = [FIRST_PASSWORD, SECOND_PASSWORD]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        admin = await register_admin(c, app)
        user = await register(c, "careful@example.com", FIRST_PASSWORD)
        secrets += [admin.access_token, admin.refresh_token, user.access_token, user.refresh_token]
        form = await c.post(LOGIN, data={"username": user.email, "password": FIRST_PASSWORD})
        secrets += [form.json()["access_token"], form.json()["refresh_token"]]
        wrong = await c.post(LOGIN, json={"email": user.email, "password": SECOND_PASSWORD})
        assert wrong.status_code == 401
        rotated = await c.post(REFRESH, json={"refresh_token": form.json()["refresh_token"]})
        assert rotated.status_code == 200
        secrets += [rotated.json()["access_token"], rotated.json()["refresh_token"]]
        reused = await c.post(REFRESH, json={"refresh_token": form.json()["refresh_token"]})
        assert reused.status_code == 401  # reuse: the family is revoked
        key = (await create_key(c, user))["key"]
        secrets.append(key)
        assert (await grant(c, admin, user.id, 5)).status_code == 200
        paid = await c.post(
            "/api/v1/test-paid/lookup", json={"code": "B000000001"}, headers={"X-API-Key": key}
        )
        assert paid.status_code == 200, paid.text
        relog = await c.post(LOGIN, json={"email": user.email, "password": FIRST_PASSWORD})
        session = relog.json()
        secrets += [session["access_token"], session["refresh_token"]]
        changed = await c.patch(
            ME,
            json={"password": SECOND_PASSWORD, "current_password": FIRST_PASSWORD},
            headers=bearer(session["access_token"]),
        )
        assert changed.status_code == 200, changed.text
        fresh = (
            await c.post(LOGIN, json={"email": user.email, "password": SECOND_PASSWORD})
        ).json()
        secrets += [fresh["access_token"], fresh["refresh_token"]]
        out = await c.post(
            LOGOUT,
            json={"refresh_token": fresh["refresh_token"]},
            headers=bearer(fresh["access_token"]),
        )
        assert out.status_code == 204
        crash = await c.post("/crash")
        assert crash.status_code == 500
    async with app.state.sessionmaker() as db:
        secrets += [h for h in await db.scalars(select(User.hashed_password)) if h]
        secrets += list(await db.scalars(select(RefreshToken.token_hash)))
        secrets += list(await db.scalars(select(ApiKey.key_hash)))

    lines = scanner.lines
    # SQL was logged, and the crash's traceback (with its statement) was logged too...
    assert any("INSERT INTO refresh_token" in line for line in lines)
    crashed = [line for line in lines if "no_such_table" in line and "unhandled_error" in line]
    assert crashed, "the crash was not logged"
    # ...and no line holds any secret of this run, nor anything shaped like one.
    for line in lines:
        for secret in secrets:
            assert secret not in line, (secret[:12], line[:300])
        for pattern in SECRET_PATTERNS:
            assert not pattern.search(line), (pattern.pattern, line[:300])

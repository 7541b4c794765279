"""Serverless: the AWS Lambda handler (Mangum) driven with API Gateway v2 (HTTP API) and ALB
events, and the Vercel entry point. Neither runs the in-process scheduler."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from sellerdesk.config import Settings, get_settings
from sellerdesk.main import create_handler
from tests.conftest import Database, make_settings
from tests.live_server import environment

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "correct-horse-battery"
CONTEXT = SimpleNamespace(
    function_name="sellerdesk-api",
    aws_request_id="8f3b2a6e-0000-4000-8000-000000000000",
    get_remaining_time_in_millis=lambda: 30_000,
)

Event = Callable[..., dict[str, Any]]


def http_api_event(
    method: str,
    path: str,
    *,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An API Gateway HTTP API (payload format 2.0) event; bodies arrive base64-encoded."""
    raw_query = "&".join(f"{k}={v}" for k, v in (query or {}).items())
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": raw_query,
        "cookies": [],
        "headers": {
            "accept": "application/json",
            "host": "abc123.execute-api.eu-west-1.amazonaws.com",
            "user-agent": "curl/8.5.0",
            "x-amzn-trace-id": "Root=1-67891233-abcdef012345678912345678",
            "x-forwarded-for": "203.0.113.7",
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https",
            **(headers or {}),
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.eu-west-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "curl/8.5.0",
            },
            "requestId": "JKJaXmPLvHcESHA=",
            "routeKey": "$default",
            "stage": "$default",
            "time": "01/Dec/2026:12:00:00 +0000",
            "timeEpoch": 1796126400000,
        },
        "isBase64Encoded": False,
    }
    if query:
        event["queryStringParameters"] = query
    return with_body(event, body)


def alb_event(
    method: str,
    path: str,
    *,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An Application Load Balancer event (Lambda target group, single-value headers)."""
    event: dict[str, Any] = {
        "requestContext": {
            "elb": {
                "targetGroupArn": "arn:aws:elasticloadbalancing:eu-west-1:123456789012:"
                "targetgroup/sellerdesk/6d0ecf831eec9f09"
            }
        },
        "httpMethod": method,
        "path": path,
        "queryStringParameters": query or {},
        "headers": {
            "accept": "application/json",
            "host": "sellerdesk-alb-123456789.eu-west-1.elb.amazonaws.com",
            "user-agent": "curl/8.5.0",
            "x-amzn-trace-id": "Root=1-67891233-abcdef012345678912345678",
            "x-forwarded-for": "203.0.113.8",
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https",
            **(headers or {}),
        },
        "body": "",
        "isBase64Encoded": False,
    }
    return with_body(event, body)


def with_body(event: dict[str, Any], body: dict[str, Any] | None) -> dict[str, Any]:
    """A JSON body as API Gateway and ALB pass binary-safe bodies: base64-encoded."""
    if body is not None:
        event["headers"]["content-type"] = "application/json"
        event["body"] = base64.b64encode(json.dumps(body).encode()).decode()
        event["isBase64Encoded"] = True
    return event


def decoded(answer: dict[str, Any]) -> Any:
    body = answer.get("body") or ""
    if answer.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    return json.loads(body)


def header(answer: dict[str, Any], name: str) -> str | None:
    headers = {k.lower(): v for k, v in (answer.get("headers") or {}).items()}
    value = headers.get(name.lower())
    if value is None:
        values = {k.lower(): v for k, v in (answer.get("multiValueHeaders") or {}).items()}
        value = (values.get(name.lower()) or [None])[0]
    return value


def invoke_flow(settings: Settings, make_event: Event) -> dict[str, Any]:
    """Cold start, then register, log in (base64 POSTs), a public and an authenticated GET: one
    invocation each, in one thread, like a warm Lambda container."""
    handler: Any = create_handler(settings)
    email = f"lambda-{uuid.uuid4().hex[:8]}@example.com"
    credentials = {"email": email, "password": PASSWORD}
    results: dict[str, Any] = {"jobs_enabled": handler.app.state.settings.JOBS_ENABLED}
    results["register"] = handler(
        make_event("POST", "/api/v1/auth/register", body=credentials), CONTEXT
    )
    results["login"] = handler(make_event("POST", "/api/v1/auth/login", body=credentials), CONTEXT)
    results["products"] = handler(
        make_event("GET", "/api/v1/products", query={"page_size": "5"}), CONTEXT
    )
    token = decoded(results["login"])["access_token"]
    results["me"] = handler(
        make_event("GET", "/api/v1/users/me", headers={"authorization": f"Bearer {token}"}),
        CONTEXT,
    )
    results["anonymous_me"] = handler(make_event("GET", "/api/v1/users/me"), CONTEXT)
    results["email"] = email
    return results


@pytest.fixture
async def lambda_settings(
    database: Database, redis: Redis | None, redis_url: str | None, redis_prefix: str
) -> AsyncIterator[Settings]:
    # JOBS_ENABLED as a deployment might leave it: the serverless app must turn it off anyway.
    yield make_settings(database.url, redis_url, redis_prefix, JOBS_ENABLED=True)
    await database.reset()


@pytest.mark.parametrize("make_event", [http_api_event, alb_event], ids=["http-api-v2", "alb"])
async def test_the_lambda_handler_serves_public_and_authenticated_routes(
    lambda_settings: Settings, make_event: Event
) -> None:
    # Mangum runs its own event loop: give it a thread, as Lambda gives it a process.
    results = await asyncio.to_thread(invoke_flow, lambda_settings, make_event)

    assert results["jobs_enabled"] is False
    assert results["register"]["statusCode"] == 201, decoded(results["register"])
    assert results["login"]["statusCode"] == 200, decoded(results["login"])

    products = results["products"]
    assert products["statusCode"] == 200
    page = decoded(products)
    assert {"items", "total", "page", "page_size"} <= page.keys() and page["page_size"] == 5
    assert header(products, "x-request-id")
    assert header(products, "x-content-type-options") == "nosniff"

    me = results["me"]
    assert me["statusCode"] == 200
    assert decoded(me)["email"] == results["email"]
    assert header(me, "cache-control") == "no-store"

    anonymous = results["anonymous_me"]
    assert anonymous["statusCode"] == 401
    assert decoded(anonymous)["error"] == "not_authenticated"


def test_importing_the_entry_module_builds_nothing_and_loads_no_heavy_sdk(tmp_path: Path) -> None:
    # A fresh interpreter, as a cold start: nothing built or imported until it is used.
    code = (
        "import sys, sellerdesk.main as m\n"
        "heavy = ('stripe', 'sentry_sdk', 'celery', 'kombu', 'mangum')\n"
        "print(sorted(n for n in ('app', 'handler') if n in vars(m)))\n"
        "print(sorted(n for n in heavy if n in sys.modules))\n"
        "handler = m.handler\n"
        "print(sorted(n for n in heavy if n in sys.modules))\n"
        "print(handler.app.state.settings.JOBS_ENABLED, m.handler is handler)\n"
    )
    env = environment(DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/cold.db", JOBS_ENABLED="true")
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    built, before, after, handler = done.stdout.splitlines()
    assert built == "[]" and before == "[]"
    assert after == "['mangum']"  # the handler needs Mangum, still not Stripe, Sentry, Celery
    assert handler == "False True"


# --------------------------------------------------------------------------- Vercel


def load_vercel_entry() -> ModuleType:
    """Import `api/index.py` from its path, the way Vercel's runtime does."""
    spec = importlib.util.spec_from_file_location("vercel_entry", ROOT / "api" / "index.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def vercel_environment(
    monkeypatch: pytest.MonkeyPatch, database: Database, redis_url: str | None, redis_prefix: str
) -> Any:
    values = make_settings(database.url, redis_url, redis_prefix, JOBS_ENABLED=True)
    for name in Settings.model_fields:
        monkeypatch.delenv(name, raising=False)
    for name, value in values.model_dump(mode="json").items():
        if value is not None:
            text = value if isinstance(value, str) else json.dumps(value)
            monkeypatch.setenv(name, ",".join(value) if isinstance(value, list) else text)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
    sys.modules.pop("vercel_entry", None)


async def test_the_vercel_entry_is_an_asgi_app_without_the_scheduler(
    vercel_environment: Any, database: Database
) -> None:
    entry = load_vercel_entry()
    app = entry.app
    assert isinstance(app, FastAPI)
    assert "handler" not in vars(entry)  # Vercel would require an http.server class there
    assert app.state.settings.JOBS_ENABLED is False
    assert database.url == app.state.settings.DATABASE_URL

    # Vercel runs the app under uvicorn with lifespan "auto": start it the same way.
    async with app.router.lifespan_context(app):
        assert not app.state.scheduler.running
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://x.vercel.app") as c:
            assert (await c.get("/api/v1/products")).status_code == 200
            assert (await c.get("/health/ready")).json()["status"] == "ready"
    await database.reset()


def test_vercel_json_sends_every_path_to_the_entry_point() -> None:
    config = json.loads((ROOT / "vercel.json").read_text())
    [function] = config["functions"]
    assert (ROOT / function).is_file()
    destination = "/" + function.removesuffix(".py")
    assert config["rewrites"] == [{"source": "/(.*)", "destination": destination}]

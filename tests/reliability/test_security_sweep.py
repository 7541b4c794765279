"""A security sweep over every `/api/v1` route (OWASP API Security Top 10), the route list taken
from the app itself, so a new route is swept without editing this file.

- API1 (object level authorisation): every route with an id of a user's object (in its path or
  its JSON body) answers another user 404, as if the object did not exist.
- API5 (function level authorisation): every admin route answers a non-admin 403 `forbidden`.
- API3 (excessive data exposure): no response holds a password hash, a refresh token, an API
  key's hash, or a field named like a password or a hash.
- API8 (injection): SQL meta-characters and NUL in every string parameter (path, query, JSON
  body field) never answer 5xx.
- API4 (resource consumption): a body over MAX_REQUEST_BODY_BYTES is 413 and a deeply nested
  JSON body is a 4xx, on every route that takes a body.
- API7 (misconfiguration): every response carries the security headers.

An id parameter this file does not know fails the sweep: say in `OWNED` or `PUBLIC` what it
names.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from sellerdesk.auth.dependencies import get_admin_user
from tests.conftest import AppFactory
from tests.factories import Account, register, register_admin
from tests.orders_factories import ADDRESS, make_product
from tests.reliability.harness import UNLIMITED, Figures

pytestmark = pytest.mark.reliability

API = "/api/v1"
BODY_LIMIT = 64 * 1024
# Ids of a user's own objects: another user must get 404 for them.
OWNED = {"order_id", "purchase_id", "key_id"}
# Ids of things that are not a user's: the catalog, packs, prices; admin routes' own ids.
PUBLIC = {"product_id", "slug", "category_id", "pack_id", "endpoint", "user_id"}
INJECTIONS = (
    "' OR '1'='1",
    '1; DROP TABLE "user"; --',
    '") OR 1=1 --',
    "%' UNION SELECT NULL --",
    "a\x00b",
    "\\",
)
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "content-security-policy": None,
    "x-request-id": None,
}
HASH_PATTERN = re.compile(r"\$argon2(id|i|d)\$|\$2[aby]\$\d\d\$")


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    admin: bool
    operation: dict[str, Any]

    @property
    def params(self) -> list[str]:
        return re.findall(r"{(\w+)}", self.path)

    def url(self, values: dict[str, Any]) -> str:
        return self.path.format(**{name: values.get(name, 1) for name in self.params})

    @property
    def json_body(self) -> dict[str, Any] | None:
        content = self.operation.get("requestBody", {}).get("content", {})
        schema: dict[str, Any] | None = content.get("application/json", {}).get("schema")
        return schema

    @property
    def has_body(self) -> bool:
        return "requestBody" in self.operation


def api_routes(app: FastAPI, document: dict[str, Any]) -> list[Route]:
    """Every /api/v1 route of the app, with its OpenAPI operation and whether it is admin-only."""
    routes = []
    for context in iter_route_contexts(app.routes):
        path = context.path_format or ""
        dependant = getattr(context, "dependant", None)
        if not path.startswith(API) or dependant is None:
            continue
        admin = any(sub.call is get_admin_user for sub in _walk(dependant))
        for method in sorted(context.methods or ()):
            if method == "HEAD":
                continue
            operation = document["paths"].get(path, {}).get(method.lower(), {})
            routes.append(Route(method, path, admin, operation))
    return routes


def _walk(dependant: Any) -> list[Any]:
    found = [dependant]
    for sub in dependant.dependencies:
        found += _walk(sub)
    return found


def example(schema: dict[str, Any], document: dict[str, Any], depth: int = 0) -> Any:
    """A small value the schema accepts (required properties only)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return example(document["components"]["schemas"][name], document, depth)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"]
            return example(options[0], document, depth) if options else None
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        if depth > 4:
            return {}
        properties = schema.get("properties", {})
        return {
            name: example(properties[name], document, depth + 1)
            for name in schema.get("required", [])
            if name in properties
        }
    if kind == "array":
        return [example(schema.get("items", {}), document, depth + 1)][: schema.get("minItems", 0)]
    if kind == "integer":
        return max(1, int(schema.get("minimum", 1)))
    if kind == "number":
        return max(1, schema.get("minimum", 1))
    if kind == "boolean":
        return True
    if schema.get("format") == "email":
        return "someone@example.com"
    return "x" * max(1, int(schema.get("minLength", 1)))


def string_fields(value: Any, schema: dict[str, Any], document: dict[str, Any]) -> list[str]:
    """The top-level properties of a body schema that are strings (whether required or not)."""
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    names = []
    for name, prop in schema.get("properties", {}).items():
        options = prop.get("anyOf", [prop])
        if any(option.get("type") == "string" for option in options):
            names.append(name)
    return names


def id_fields(schema: dict[str, Any], document: dict[str, Any]) -> list[str]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return [name for name in schema.get("properties", {}) if name.endswith("_id")]


@dataclass
class Sweep:
    """Sends every request of the sweep, and checks what every answer must hold."""

    http: httpx.AsyncClient
    secrets: list[str]
    statuses: Counter[str] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    missing_headers: list[str] = field(default_factory=list)
    leaks: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)

    async def send(
        self, what: str, method: str, url: str, headers: dict[str, str], **kwargs: Any
    ) -> httpx.Response:
        answer = await self.http.request(method, url, headers=headers, **kwargs)
        self.statuses[f"{what} {answer.status_code}"] += 1
        label = f"{method} {url} ({what})"
        if answer.status_code >= 500:
            self.server_errors.append(f"{label} -> {answer.status_code} {answer.text[:200]}")
        for name, value in SECURITY_HEADERS.items():
            if name not in answer.headers or (value and answer.headers[name] != value):
                self.missing_headers.append(f"{label}: {name}")
        if "Authorization" in headers and answer.headers.get("cache-control") != "no-store":
            self.missing_headers.append(f"{label}: cache-control no-store")
        text = answer.text
        if HASH_PATTERN.search(text):
            self.leaks.append(f"{label}: a password hash")
        for secret in self.secrets:
            if secret in text:
                self.leaks.append(f"{label}: a secret ({secret[:6]}...)")
        if answer.headers.get("content-type", "").startswith("application/json"):
            for key in _keys(answer.json()):
                if "password" in key.lower() or "hash" in key.lower():
                    self.leaks.append(f"{label}: field {key}")
        return answer


def _keys(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [k for k, v in value.items() for k in [k, *_keys(v)]]
    if isinstance(value, list):
        return [k for item in value for k in _keys(item)]
    return []


@dataclass
class World:
    owner: Account
    other: Account
    admin: Account
    ids: dict[str, Any]
    secrets: list[str]


async def build_world(app: FastAPI, client: httpx.AsyncClient) -> World:
    """An owner with one of each kind of object, another user, an admin."""
    owner, other = await register(client), await register(client)
    admin = await register_admin(client, app)
    product = await make_product(app, stock=10, price="12.50")
    put = await client.put(
        f"{API}/cart/items/{product}", json={"quantity": 1}, headers=owner.headers
    )
    assert put.status_code == 200, put.text
    order = await client.post(
        f"{API}/orders", json={"shipping_address": ADDRESS}, headers=owner.headers
    )
    assert order.status_code == 201, order.text
    packs = (await client.get(f"{API}/credits/packs")).json()
    purchase = await client.post(
        f"{API}/credits/purchase", json={"pack_id": packs[0]["id"]}, headers=owner.headers
    )
    assert purchase.status_code in (200, 201), purchase.text
    key = await client.post(f"{API}/api-keys", json={"name": "sweep"}, headers=owner.headers)
    assert key.status_code == 201, key.text
    raw_key = key.json()["key"]
    ids = {
        "order_id": order.json()["id"],
        "purchase_id": purchase.json()["purchase_id"],
        "key_id": key.json()["id"],
        "product_id": product,
        "pack_id": packs[0]["id"],
        "user_id": owner.id,
        "slug": "no-such-category",
        "endpoint": "asin_lookup",
        "category_id": 1,
    }
    secrets = [
        owner.refresh_token,
        other.refresh_token,
        admin.refresh_token,
        hashlib.sha256(raw_key.encode()).hexdigest(),
        raw_key,
    ]
    return World(owner, other, admin, ids, secrets)


async def test_security_sweep_over_every_api_route(make_app: AppFactory, figures: Figures) -> None:
    app = await make_app(
        **UNLIMITED,
        MAX_REQUEST_BODY_BYTES=BODY_LIMIT,
        STRIPE_WEBHOOK_SECRET="whsec_reliability_sweep",
        LOGIN_FAILURE_LIMIT_PER_ACCOUNT_ADDRESS="100000/minute",
        LOGIN_FAILURE_LIMIT_PER_ADDRESS="100000/minute",
        LOGIN_FAILURE_LIMIT_PER_ACCOUNT="100000/minute",
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        world = await build_world(app, http)
        document = (await http.get("/openapi.json")).json()
        routes = api_routes(app, document)
        sweep = Sweep(http, world.secrets)
        unknown = sorted(
            {f"{r.method} {r.path}: {name}" for r in routes for name in r.params}
            - {
                f"{r.method} {r.path}: {name}"
                for r in routes
                for name in r.params
                if name in OWNED | PUBLIC
            }
        )
        assert unknown == [], "say in OWNED or PUBLIC what these ids name"

        refused: dict[str, list[str]] = {"API1 not 404": [], "API5 not 403": []}
        bola_checked = bfla_checked = 0
        for route in routes:
            body = example(route.json_body, document) if route.json_body else None
            if route.admin:
                answer = await sweep.send(
                    "as a user", route.method, route.url(world.ids), world.other.headers,
                    json=body if route.has_body else None,
                )  # fmt: skip
                bfla_checked += 1
                if answer.status_code != 403 or answer.json().get("error") != "forbidden":
                    refused["API5 not 403"].append(
                        f"{route.method} {route.path}: {answer.status_code}"
                    )
                continue
            owned_path = [name for name in route.params if name in OWNED]
            owned_body = [
                name for name in (id_fields(route.json_body, document) if route.json_body else [])
                if name in OWNED
            ]  # fmt: skip
            if owned_path or owned_body:
                if isinstance(body, dict):
                    body.update({name: world.ids[name] for name in owned_body})
                answer = await sweep.send(
                    "another user's object", route.method, route.url(world.ids),
                    world.other.headers, json=body if route.has_body else None,
                )  # fmt: skip
                bola_checked += 1
                if answer.status_code != 404:
                    refused["API1 not 404"].append(
                        f"{route.method} {route.path}: {answer.status_code} {answer.text[:120]}"
                    )

        # Every GET as the owner and as the admin: what the data exposure scan reads.
        for route in routes:
            if route.method == "GET":
                for account in (world.owner, world.admin):
                    await sweep.send("read", "GET", route.url(world.ids), account.headers)

        injected = await inject(sweep, routes, world, document)
        limits = await oversized_and_nested(sweep, routes, world)

    figures.add(
        f"routes: {len(routes)} under {API} ({sum(r.admin for r in routes)} admin-only), "
        f"taken from the app"
    )
    figures.add(
        f"API1: {bola_checked} routes with another user's object id; "
        f"not 404: {refused['API1 not 404']}"
    )
    figures.add(f"API5: {bfla_checked} admin routes as a user; not 403: {refused['API5 not 403']}")
    figures.add(f"API8: {injected} requests with SQL meta-characters or NUL in a string parameter")
    figures.add(f"API4: {limits}")
    figures.add(
        f"requests: {sum(sweep.statuses.values())}; by kind and status: "
        + ", ".join(f"{k} {n}" for k, n in sorted(sweep.statuses.items()))
    )
    figures.add(
        f"5xx: {len(sweep.server_errors)}; missing security headers: "
        f"{len(sweep.missing_headers)}; leaks: {len(sweep.leaks)}"
    )
    assert refused == {"API1 not 404": [], "API5 not 403": []}
    assert sweep.server_errors == []
    assert sweep.wrong == []
    assert sweep.missing_headers == []
    assert sweep.leaks == []
    assert bola_checked >= 6 and bfla_checked >= 15


async def inject(sweep: Sweep, routes: list[Route], world: World, document: dict[str, Any]) -> int:
    """Each injection string in each string parameter of each route; how many requests."""
    sent = 0
    for route in routes:
        account = world.admin if route.admin else world.owner
        body = example(route.json_body, document) if route.json_body else None
        query = [
            p["name"]
            for p in route.operation.get("parameters", [])
            if p.get("in") == "query"
            and any(
                o.get("type") == "string"
                for o in p.get("schema", {}).get("anyOf", [p.get("schema", {})])
            )
        ]
        fields = string_fields(body, route.json_body, document) if route.json_body else []
        path_strings = [name for name in route.params if name in ("slug", "endpoint")]
        for payload in INJECTIONS:
            for name in query:
                await sweep.send(
                    "injection", route.method, route.url(world.ids), account.headers,
                    params={name: payload}, json=body if route.has_body else None,
                )  # fmt: skip
                sent += 1
            for name in fields:
                await sweep.send(
                    "injection", route.method, route.url(world.ids), account.headers,
                    json={**(body or {}), name: payload},
                )  # fmt: skip
                sent += 1
            for name in path_strings:
                url = route.url({**world.ids, name: payload.replace("\x00", "%00")})
                await sweep.send(
                    "injection", route.method, url, account.headers,
                    json=body if route.has_body else None,
                )  # fmt: skip
                sent += 1
    return sent


async def oversized_and_nested(sweep: Sweep, routes: list[Route], world: World) -> str:
    too_big = nested_refused = 0
    bodies = [r for r in routes if r.has_body]
    deep = "[" * 30_000 + "]" * 30_000  # under the body limit, deeper than any parser likes
    deep_object = '{"a":' * 5_000 + "1" + "}" * 5_000
    for route in bodies:
        account = world.admin if route.admin else world.owner
        headers = {
            **account.headers,
            "Content-Type": "application/json",
            "Idempotency-Key": f"sweep-{route.method}-{route.path}",  # read where it is taken
        }
        answer = await sweep.send(
            "oversized", route.method, route.url(world.ids), headers,
            content=json.dumps({"padding": "x" * (BODY_LIMIT + 1)}),
        )  # fmt: skip
        if answer.status_code != 413:
            sweep.wrong.append(f"oversized {route.method} {route.path}: {answer.status_code}")
        too_big += 1
        for payload in (deep, deep_object):
            answer = await sweep.send(
                "nested", route.method, route.url(world.ids), headers, content=payload
            )
            if not 400 <= answer.status_code < 500:
                sweep.wrong.append(f"nested {route.method} {route.path}: {answer.status_code}")
            nested_refused += 1
    return (
        f"{too_big} routes with a body: over {BODY_LIMIT} bytes -> 413; "
        f"{nested_refused} deeply nested bodies (30 000 arrays, 5 000 objects) -> 4xx"
    )

"""The OpenAPI document and the HTTP edges it describes: ids, security, declared errors, bodies
that cannot be read, OPTIONS, and validation messages written for people."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from sellerdesk.kit.openapi import install_openapi
from tests.auth_helpers import assert_error
from tests.credits_factories import create_key
from tests.factories import register, register_admin

METHODS = {"get", "put", "post", "delete", "patch"}
REPORT = "/api/v1/conversion/inventory-report"


async def _document(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def _operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


# --------------------------------------------------------------------------- operation ids


async def test_operation_ids_are_the_route_function_names_and_unique(
    client: httpx.AsyncClient,
) -> None:
    operations = _operations(await _document(client))
    ids = [operation["operationId"] for operation in operations.values()]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", op_id) and "api_v1" not in op_id for op_id in ids)
    assert operations[("GET", "/api/v1/products")]["operationId"] == "list_products"
    assert operations[("POST", "/api/v1/auth/login")]["operationId"] == "login"
    assert operations[("POST", "/api/v1/product/asin")]["operationId"] == "lookup_asin"


async def test_two_routes_with_one_function_name_are_refused_at_startup(
    make_app: Any,
) -> None:
    app: FastAPI = await make_app()

    async def read_me() -> None:  # clashes with GET /api/v1/users/me
        """A second `read_me`."""

    app.add_api_route("/elsewhere", read_me, methods=["GET"])
    with pytest.raises(RuntimeError, match="duplicate OpenAPI operation ids: read_me"):
        install_openapi(app)


async def test_sort_values_have_readable_enum_names(client: httpx.AsyncClient) -> None:
    operation = _operations(await _document(client))[("GET", "/api/v1/products")]
    sort = next(p for p in operation["parameters"] if p["name"] == "sort")["schema"]
    names = dict(zip(sort["enum"], sort["x-enum-varnames"], strict=True))
    assert names["-price"] == "PRICE_DESC" and names["created_at"] == "CREATED_AT"
    assert sort["x-enumNames"] == sort["x-enum-varnames"]


# --------------------------------------------------------------------------- security


async def test_public_routes_declare_no_security_and_the_others_declare_theirs(
    client: httpx.AsyncClient,
) -> None:
    document = await _document(client)
    schemes = document["components"]["securitySchemes"]
    assert schemes["OAuth2PasswordBearer"]["flows"]["password"]["tokenUrl"] == (
        "/api/v1/auth/login"
    )
    assert schemes["APIKeyHeader"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    operations = _operations(document)
    public = {
        ("GET", "/"),
        ("GET", "/health"),
        ("GET", "/health/ready"),
        ("POST", "/api/v1/auth/register"),
        ("POST", "/api/v1/auth/login"),
        ("POST", "/api/v1/auth/refresh"),
        ("GET", "/api/v1/categories"),
        ("GET", "/api/v1/categories/{slug}"),
        ("GET", "/api/v1/products"),
        ("GET", "/api/v1/products/{product_id}"),
        ("GET", "/api/v1/credits/packs"),
        ("GET", "/api/v1/credits/pricing"),
        ("POST", "/api/v1/payments/webhook"),
    }
    # These read a token when one is sent (admins see inactive products) and refuse a bad one.
    optional_token = {("GET", "/api/v1/products"), ("GET", "/api/v1/products/{product_id}")}
    data_routes = {
        ("POST", "/api/v1/product/asin"),
        ("POST", "/api/v1/conversion/fnsku"),
        ("POST", "/api/v1/conversion/fnsku/batch"),
        ("POST", REPORT),
        ("GET", "/api/v1/credits"),
        ("GET", "/api/v1/credits/transactions"),
        ("GET", "/api/v1/credits/usage"),
    }
    for key, operation in operations.items():
        security = operation.get("security")
        if key in public:
            assert security is None, key
            if key in optional_token or key[1] in {"/api/v1/auth/login", "/api/v1/auth/refresh"}:
                assert "401" in operation["responses"], key  # a bad token or wrong password
            else:
                assert "401" not in operation["responses"], key
        elif key in data_routes:
            assert security == [{"OAuth2PasswordBearer": []}, {"APIKeyHeader": []}], key
        else:
            assert security == [{"OAuth2PasswordBearer": []}], key
        if security:
            assert {"401", "403"} <= set(operation["responses"]), key


# --------------------------------------------------------------------------- declared errors


def _error_statuses(operation: dict[str, Any]) -> set[str]:
    return {
        code
        for code, response in operation["responses"].items()
        if int(code) >= 400
        and response["content"]["application/json"]["schema"]
        == {"$ref": "#/components/schemas/ErrorResponse"}
    }


async def test_the_errors_a_route_can_answer_by_its_build_are_declared_on_it(
    client: httpx.AsyncClient,
) -> None:
    operations = _operations(await _document(client))
    for key, operation in operations.items():
        declared = _error_statuses(operation)
        assert "500" in declared, key
        if operation.get("parameters") or operation.get("requestBody"):
            assert "422" in declared, key
        if "requestBody" in operation:
            assert "413" in declared, key
        if key[1].startswith("/api/v1/"):  # every API route uses the database
            assert "503" in declared, key
        names = {p["name"] for p in operation.get("parameters", []) if p["in"] == "header"}
        if "Idempotency-Key" in names:
            # the same key while the first request runs (409) or with another body (422)
            assert {"409", "422"} <= declared, key
    for paid in ("/api/v1/product/asin", "/api/v1/conversion/fnsku"):
        responses = operations[("POST", paid)]["responses"]
        assert {"402", "404", "409", "429", "502", "503", "504"} <= set(responses)
        assert responses["429"]["headers"]["Retry-After"]["required"] is True
    assert "Idempotency-Key" in {
        p["name"] for p in operations[("POST", "/api/v1/product/asin")]["parameters"]
    }


async def test_the_per_ip_limit_is_declared_only_when_it_is_on(make_app: Any) -> None:
    limited = await make_app(RATE_LIMIT_PER_IP="1000/minute")
    transport = httpx.ASGITransport(app=limited)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        operations = _operations(await _document(c))
    assert "429" in operations[("GET", "/api/v1/categories")]["responses"]
    assert "429" not in operations[("GET", "/health")]["responses"]


async def test_the_default_document_declares_no_per_ip_limit(client: httpx.AsyncClient) -> None:
    operations = _operations(await _document(client))
    assert "429" not in operations[("GET", "/api/v1/categories")]["responses"]


async def test_a_key_still_in_flight_is_a_declared_409(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    from sellerdesk.kit.idempotency import request_hash
    from sellerdesk.models import IdempotencyKey
    from sellerdesk.models.base import utcnow

    account = await register(client)
    body = {"order_id": 1}
    raw = httpx.Request("POST", "http://test/", json=body).content
    path = "/api/v1/payments/create-payment-intent"
    async with app.state.sessionmaker() as session:  # a claim whose request is still running
        session.add(
            IdempotencyKey(
                user_id=account.id,
                key="in-flight",
                request_hash=request_hash("POST", path, raw),
                created_at=utcnow(),
            )
        )
        await session.commit()
    response = await client.post(
        path, json=body, headers={**account.headers, "Idempotency-Key": "in-flight"}
    )
    assert_error(response, 409, "idempotency_conflict")
    operation = _operations(await _document(client))[("POST", path)]
    assert "409" in _error_statuses(operation)


# --------------------------------------------------------------------------- login body


async def test_login_declares_one_json_body_and_still_takes_the_oauth2_form(
    client: httpx.AsyncClient,
) -> None:
    document = await _document(client)
    login = _operations(document)[("POST", "/api/v1/auth/login")]
    content = login["requestBody"]["content"]
    assert content == {
        "application/json": {"schema": {"$ref": "#/components/schemas/LoginRequest"}}
    }
    assert set(document["components"]["schemas"]["LoginRequest"]["required"]) == {
        "email",
        "password",
    }
    account = await register(client)
    form = await client.post(
        "/api/v1/auth/login", data={"username": account.email, "password": account.password}
    )
    assert form.status_code == 200 and form.json()["token_type"] == "bearer"
    as_json = await client.post(
        "/api/v1/auth/login", json={"email": account.email, "password": account.password}
    )
    assert as_json.status_code == 200


# --------------------------------------------------------------------------- unreadable bodies


@pytest.mark.parametrize(
    ("path", "content", "content_type"),
    [
        ("/api/v1/auth/register", b'{"email": "a\xff@example.com"}', "application/json"),
        ("/api/v1/auth/register", b"\xff\xfe{", "application/json"),
        ("/api/v1/auth/register", b"not json at all", "application/json"),
        ("/api/v1/orders", b"{\xc3\x28}", "application/json"),
        ("/api/v1/auth/login", b"\xff\xfe", "application/json"),
        ("/api/v1/auth/login", b"--x\r\nbroken", "multipart/form-data"),
        (REPORT, b"--x\r\nbroken", "multipart/form-data"),
        (
            REPORT,
            b"--x\r\nContent-Disposition: form-data; name=",
            "multipart/form-data; boundary=x",
        ),
    ],
)
async def test_a_body_that_cannot_be_read_is_a_422_in_the_error_shape(
    client: httpx.AsyncClient, path: str, content: bytes, content_type: str
) -> None:
    account = await register(client)
    response = await client.post(
        path, content=content, headers={**account.headers, "Content-Type": content_type}
    )
    body = assert_error(response, 422, "validation_error")
    assert body["message"] and "details" in body


async def test_a_broken_multipart_upload_is_a_422_for_the_admin_import_too(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await register_admin(client, app)
    response = await client.post(
        "/api/v1/products/import",
        content=b"--x\r\nbroken",
        headers={**admin.headers, "Content-Type": "multipart/form-data"},
    )
    assert_error(response, 422, "validation_error")


# --------------------------------------------------------------------------- OPTIONS and 405


async def test_options_lists_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    products = await client.options("/api/v1/products")
    assert products.status_code == 204
    assert products.headers["allow"] == "GET, OPTIONS, POST"
    one = await client.options("/api/v1/products/7")
    assert one.status_code == 204
    assert one.headers["allow"] == "DELETE, GET, OPTIONS, PATCH"
    assert (await client.options("/api/v1/nowhere")).status_code == 404


async def test_a_wrong_method_is_405_with_every_allowed_method(client: httpx.AsyncClient) -> None:
    response = await client.put("/api/v1/cart")
    body = assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "DELETE, GET, OPTIONS"
    assert "PUT" in body["message"]


# --------------------------------------------------------------------------- messages


@pytest.mark.parametrize(
    ("path", "payload", "field", "message"),
    [
        (
            "/api/v1/auth/register",
            {"email": "short@example.com", "password": "short"},
            "password",
            "Should have at least 8 characters",
        ),
        (
            "/api/v1/auth/register",
            {"email": "long@example.com", "password": "x" * 129},
            "password",
            "Should have at most 128 characters",
        ),
        (
            "/api/v1/api-keys",
            {"name": ""},
            "name",
            "Should have at least 1 character",
        ),
        (
            "/api/v1/conversion/fnsku/batch",
            {"fnskus": []},
            "fnskus",
            "Should have at least 1 item",
        ),
        (
            "/api/v1/product/asin",
            {"asin": "B0SHORT"},
            "asin",
            "Not a valid ASIN (B0 + 8 letters/digits, or an ISBN-10)",
        ),
        (
            "/api/v1/orders",
            {"shipping_address": {"name": "A", "line1": "1", "city": "C", "postal_code": "1"}},
            "shipping_address.country",
            "This field is required",
        ),
        (
            "/api/v1/api-keys",
            {"name": "k", "is_admin": True},
            "is_admin",
            "This field is not accepted here",
        ),
    ],
)
async def test_validation_messages_speak_to_people(
    client: httpx.AsyncClient, path: str, payload: dict[str, Any], field: str, message: str
) -> None:
    account = await register(client)
    response = await client.post(path, json=payload, headers=account.headers)
    body = assert_error(response, 422, "validation_error")
    detail = next(d for d in body["details"] if ".".join(map(str, d["loc"][1:])) == field)
    assert detail["msg"] == message
    assert body["message"].startswith(f"Invalid input at {field}: ")
    assert "items after validation" not in response.text
    assert "Value error," not in response.text


async def test_a_body_that_is_not_json_says_so(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/register", content=b"{oops", headers={"Content-Type": "application/json"}
    )
    body = assert_error(response, 422, "validation_error")
    assert body["message"].startswith("Invalid input: Not valid JSON")
    assert body["details"][0]["loc"] == ["body"]


async def test_a_query_parameter_is_named_as_one(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/products", params={"page_size": 0})
    body = assert_error(response, 422, "validation_error")
    assert body["message"].startswith("Invalid input at query parameter page_size: ")


# --------------------------------------------------------------------------- data routes


async def test_the_inventory_report_upload_accepts_an_api_key(client: httpx.AsyncClient) -> None:
    account = await register(client)
    key = await create_key(client, account)
    report = "sku\tfnsku\tasin\tproduct-name\nSKU-1\tX00KEYTEST\tB0KEYTEST1\tBy key\n"
    response = await client.post(
        REPORT,
        files={"file": ("report.tsv", report.encode(), "text/tab-separated-values")},
        headers={"X-API-Key": key["key"]},
    )
    assert response.status_code == 200, response.text
    assert response.json()["created"] == 1
    anonymous = await client.post(
        REPORT, files={"file": ("report.tsv", report.encode(), "text/tab-separated-values")}
    )
    assert_error(anonymous, 401, "not_authenticated")
    wrong = await client.post(
        REPORT,
        files={"file": ("report.tsv", report.encode(), "text/tab-separated-values")},
        headers={"X-API-Key": "sd_not_a_real_key"},
    )
    assert_error(wrong, 401, "invalid_token")


async def test_an_asin_with_spaces_and_lower_case_matches_the_documented_pattern(
    client: httpx.AsyncClient,
) -> None:
    schemas = (await _document(client))["components"]["schemas"]
    pattern = schemas["AsinQuery"]["properties"]["asin"]["pattern"]
    assert re.fullmatch(pattern, " b0abcdefgh ") and re.fullmatch(pattern, "0306406152")
    assert not re.fullmatch(pattern, "B0ABC")
    price = schemas["ProductCreate"]["properties"]["price"]
    assert re.fullmatch(price["pattern"], "12.5") and not re.fullmatch(price["pattern"], "1.234")

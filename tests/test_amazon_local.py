"""The `local` source end to end: catalog products, uploaded inventory reports, isolation."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from sellerdesk.models import AmazonMapping, Product
from tests.conftest import AppFactory
from tests.factories import Account, register

# These tests are about the data; the charge is covered by test_credits_amazon.py.
pytestmark = pytest.mark.usefixtures("free_data_calls")

ASIN = "/api/v1/product/asin"
FNSKU = "/api/v1/conversion/fnsku"
BATCH = "/api/v1/conversion/fnsku/batch"
REPORT = "/api/v1/conversion/inventory-report"

MYI_HEADER = (
    "sku\tfnsku\tasin\tproduct-name\tcondition\tyour-price\tmfn-listing-exists\t"
    "mfn-fulfillable-quantity\tafn-listing-exists\tafn-warehouse-quantity\t"
    "afn-fulfillable-quantity\tafn-unsellable-quantity\tafn-reserved-quantity\t"
    "afn-total-quantity\tper-unit-volume\tafn-inbound-working-quantity\t"
    "afn-inbound-shipped-quantity\tafn-inbound-receiving-quantity\tafn-researching-quantity\t"
    "afn-reserved-future-supply\tafn-future-supply-buyable"
)


def myi_row(sku: str, fnsku: str, asin: str, name: str) -> str:
    return "\t".join([sku, fnsku, asin, name, "New", "19.99", "No", "0", "Yes"] + ["1"] * 12)


async def add_product(app: FastAPI, **values: Any) -> Product:
    fields: dict[str, Any] = {
        "name": "Acme Bottle",
        "price": Decimal("19.90"),
        "currency": "usd",
        "stock_quantity": 3,
        "sku": f"SKU-{values.get('asin', 'X')}",
        "images": ["https://img.example/1.jpg", "https://img.example/2.jpg"],
    }
    fields.update(values)
    async with app.state.sessionmaker() as session:
        product = Product(**fields)
        session.add(product)
        await session.commit()
        return product


async def upload(
    client: httpx.AsyncClient, account: Account, content: bytes | str, name: str = "report.txt"
) -> httpx.Response:
    data = content.encode() if isinstance(content, str) else content
    return await client.post(
        REPORT, headers=account.headers, files={"file": (name, data, "text/plain")}
    )


async def test_catalog_product_with_an_asin_answers_with_its_name_and_images(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    account = await register(client)
    await add_product(app, asin="B0EXAMPLE1", name="Acme Bottle 750 ml")
    response = await client.post(ASIN, headers=account.headers, json={"asin": " b0example1 "})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["asin"] == "B0EXAMPLE1"
    assert body["marketplace"] == "US"
    assert body["title"] == "Acme Bottle 750 ml"
    assert body["images"] == ["https://img.example/1.jpg", "https://img.example/2.jpg"]
    assert body["price"] == "19.90" and body["currency"] == "usd"
    assert body["source"] == "catalog"
    for key in ("brand", "bullet_points", "category", "dimensions", "sales_rank", "fetched_at"):
        assert key in body
    assert body["brand"] is None and body["bullet_points"] == [] and body["dimensions"] is None


async def test_isbn10_asin_of_a_catalog_book_is_found(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    account = await register(client)
    await add_product(app, asin="080442957X", name="A Book")
    response = await client.post(
        ASIN, headers=account.headers, json={"asin": "080442957x", "marketplace": "uk"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["title"] == "A Book"
    assert response.json()["marketplace"] == "UK"


async def test_inactive_catalog_product_is_not_an_answer(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    account = await register(client)
    await add_product(app, asin="B0INACTIVE", is_active=False)
    response = await client.post(ASIN, headers=account.headers, json={"asin": "B0INACTIVE"})
    assert response.status_code == 404


async def test_unknown_asin_is_404_not_found(client: httpx.AsyncClient) -> None:
    account = await register(client)
    response = await client.post(ASIN, headers=account.headers, json={"asin": "B0UNKNOWN1"})
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


async def test_invalid_codes_are_422_validation_error(client: httpx.AsyncClient) -> None:
    account = await register(client)
    bad = [
        (ASIN, {"asin": "0306406153"}),
        (ASIN, {"asin": "B1EXAMPLE1"}),
        (ASIN, {"asin": "B0EXAMPLE1", "marketplace": "XX"}),
        (ASIN, {}),
        (FNSKU, {"fnsku": "X1EXAMPLE1"}),
        (FNSKU, {"fnsku": "X0EX\u0000MPLE"}),
        (BATCH, {"fnskus": []}),
        (BATCH, {"fnskus": ["X00000E5TX"] * 1001}),
    ]
    for path, body in bad:
        response = await client.post(path, headers=account.headers, json=body)
        assert response.status_code == 422, (path, body, response.text)
        assert response.json()["error"] == "validation_error"


async def test_lookups_need_a_signed_in_user(client: httpx.AsyncClient) -> None:
    for path, body in ((ASIN, {"asin": "B0EXAMPLE1"}), (FNSKU, {"fnsku": "X00000E5TX"})):
        response = await client.post(path, json=body)
        assert response.status_code == 401
        assert response.json()["error"] == "not_authenticated"
    response = await client.post(REPORT, files={"file": ("r.csv", b"fnsku,asin\n")})
    assert response.status_code == 401


async def test_uploaded_csv_report_feeds_fnsku_conversion(client: httpx.AsyncClient) -> None:
    account = await register(client)
    csv_text = (
        "sku,fnsku,asin,product-name,condition\n"
        'WB-750,X00EXAMPL1,B0EXAMPLE1,"Acme Bottle, 750 ml",New\n'
        "BOOK-1,0306406152,0306406152,A stickerless book,New\n"
    )
    report = await upload(client, account, csv_text, "report.csv")
    assert report.status_code == 200, report.text
    assert report.json() == {"created": 2, "updated": 0, "skipped": 0, "errors": []}

    found = await client.post(FNSKU, headers=account.headers, json={"fnsku": " x00exampl1"})
    assert found.status_code == 200, found.text
    assert found.json() == {
        "fnsku": "X00EXAMPL1",
        "asin": "B0EXAMPLE1",
        "sku": "WB-750",
        "skus": ["WB-750"],
        "title": "Acme Bottle, 750 ml",
        "source": "inventory_report",
    }
    # The report's ASIN is known to the ASIN lookup too, with the report's title.
    product = await client.post(ASIN, headers=account.headers, json={"asin": "B0EXAMPLE1"})
    assert product.status_code == 200
    assert product.json()["title"] == "Acme Bottle, 750 ml"
    assert product.json()["source"] == "inventory_report"


async def test_amazon_tsv_report_with_all_columns_and_a_quote_in_a_title(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    account = await register(client)
    rows = [
        myi_row(f"SKU-{i}", f"X0TSV0000{i}", f"B0TSV0000{i}", f'Bottle {i}" wide') for i in range(5)
    ]
    report = await upload(client, account, "\ufeff" + MYI_HEADER + "\n" + "\n".join(rows) + "\n")
    assert report.status_code == 200, report.text
    assert report.json()["created"] == 5
    found = await client.post(FNSKU, headers=account.headers, json={"fnsku": "X0TSV00003"})
    assert found.json()["title"] == 'Bottle 3" wide'
    assert found.json()["sku"] == "SKU-3"


async def test_reupload_updates_mappings_and_counts_them(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    account = await register(client)
    first = "sku\tfnsku\tasin\tproduct-name\nA\tX0AAAAAAA1\tB0AAAAAAA1\tOld title\n"
    assert (await upload(client, account, first)).json()["created"] == 1
    second = (
        "sku\tfnsku\tasin\tproduct-name\n"
        "A\tX0AAAAAAA1\tB0AAAAAAA2\tNew title\n"
        "B\tX0BBBBBBB1\tB0BBBBBBB1\tOther\n"
        "B2\tX0BBBBBBB1\tB0BBBBBBB2\tOther, last row wins\n"
    )
    report = await upload(client, account, second)
    assert report.json() == {"created": 1, "updated": 1, "skipped": 0, "errors": []}
    found = await client.post(FNSKU, headers=account.headers, json={"fnsku": "X0AAAAAAA1"})
    assert found.json()["asin"] == "B0AAAAAAA2" and found.json()["title"] == "New title"
    found = await client.post(FNSKU, headers=account.headers, json={"fnsku": "X0BBBBBBB1"})
    assert found.json()["asin"] == "B0BBBBBBB2" and found.json()["sku"] == "B2"
    async with app.state.sessionmaker() as session:
        count = await session.scalar(
            select(func.count()).where(AmazonMapping.user_id == account.id)
        )
    assert count == 2


async def test_bad_rows_are_reported_by_line_and_not_imported(client: httpx.AsyncClient) -> None:
    account = await register(client)
    text = (
        "sku,fnsku,asin,product-name\n"
        "OK,X0GOOD0001,B0GOOD0001,Good\n"
        "BAD1,X1NOTVALID,B0GOOD0002,Bad FNSKU\n"
        "\n"
        "BAD2,X0GOOD0003,0306406153,Bad ISBN check digit\n"
        "BAD3,,B0GOOD0004,No FNSKU\n"
    )
    report = await upload(client, account, text)
    assert report.status_code == 200
    body = report.json()
    assert (body["created"], body["updated"], body["skipped"]) == (1, 0, 3)
    assert [e["row"] for e in body["errors"]] == [3, 5, 6]
    assert "FNSKU" in body["errors"][0]["message"]
    assert "ASIN" in body["errors"][1]["message"]
    bad = await client.post(FNSKU, headers=account.headers, json={"fnsku": "X0GOOD0003"})
    assert bad.status_code == 404


async def test_report_without_the_needed_columns_is_422(client: httpx.AsyncClient) -> None:
    account = await register(client)
    response = await upload(client, account, "sku,product-name\nA,B\n")
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "validation_error"
    assert body["details"]["missing_columns"] == ["fnsku", "asin"]
    empty = await upload(client, account, b"")
    assert empty.status_code == 422
    missing_file = await client.post(REPORT, headers=account.headers, data={"x": "1"})
    assert missing_file.status_code == 422


async def test_report_over_the_size_cap_is_413(make_app: AppFactory) -> None:
    app = await make_app(AMAZON_REPORT_MAX_BYTES=1024)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        account = await register(client)
        big = "fnsku,asin\n" + "X0AAAAAAA1,B0AAAAAAA1\n" * 100
        response = await upload(client, account, big)
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"


async def test_latin1_report_is_read(client: httpx.AsyncClient) -> None:
    account = await register(client)
    text = "sku\tfnsku\tasin\tproduct-name\nS\tX0LATIN001\tB0LATIN001\tCrème brûlée set\n"
    report = await upload(client, account, text.encode("iso-8859-1"))
    assert report.status_code == 200, report.text
    found = await client.post(FNSKU, headers=account.headers, json={"fnsku": "X0LATIN001"})
    assert found.json()["title"] == "Crème brûlée set"


async def test_one_users_mappings_are_invisible_to_another(client: httpx.AsyncClient) -> None:
    alice, bob = await register(client), await register(client)
    await upload(client, alice, "fnsku,asin,product-name\nX0ALICE001,B0ALICE001,Secret\n")
    assert (
        await client.post(FNSKU, headers=alice.headers, json={"fnsku": "X0ALICE001"})
    ).status_code == 200
    assert (
        await client.post(FNSKU, headers=bob.headers, json={"fnsku": "X0ALICE001"})
    ).status_code == 404
    assert (
        await client.post(ASIN, headers=bob.headers, json={"asin": "B0ALICE001"})
    ).status_code == 404
    batch = await client.post(BATCH, headers=bob.headers, json={"fnskus": ["X0ALICE001"]})
    assert batch.json()["results"] == [{"fnsku": "X0ALICE001", "asin": None, "status": "not_found"}]
    # Bob's own report with the same FNSKU does not touch Alice's mapping.
    await upload(client, bob, "fnsku,asin\nX0ALICE001,B0BOB00001\n")
    mine = await client.post(FNSKU, headers=alice.headers, json={"fnsku": "X0ALICE001"})
    assert mine.json()["asin"] == "B0ALICE001"


async def test_batch_answers_each_code_in_order(client: httpx.AsyncClient, app: FastAPI) -> None:
    account = await register(client)
    await upload(client, account, "fnsku,asin\nX0BATCH001,B0BATCH001\n")
    await add_product(app, asin="B0STICKER1", name="Stickerless")
    codes = ["x0batch001", "B0STICKER1", "X0NOTHERE1", "not a code", "X0BATCH001", ""]
    response = await client.post(BATCH, headers=account.headers, json={"fnskus": codes})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "results": [
            {"fnsku": "X0BATCH001", "asin": "B0BATCH001", "status": "found"},
            {"fnsku": "B0STICKER1", "asin": "B0STICKER1", "status": "found"},
            {"fnsku": "X0NOTHERE1", "asin": None, "status": "not_found"},
            {"fnsku": "NOT A CODE", "asin": None, "status": "invalid"},
            {"fnsku": "X0BATCH001", "asin": "B0BATCH001", "status": "found"},
            {"fnsku": "", "asin": None, "status": "invalid"},
        ],
        "charged": 0,
    }


async def test_stickerless_fnsku_of_a_catalog_product_is_its_asin(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    account = await register(client)
    await add_product(app, asin="B0STICKER2", name="Stickerless 2", sku="ST-2")
    found = await client.post(FNSKU, headers=account.headers, json={"fnsku": "b0sticker2"})
    assert found.status_code == 200
    assert found.json() == {
        "fnsku": "B0STICKER2",
        "asin": "B0STICKER2",
        "sku": "ST-2",
        "skus": ["ST-2"],
        "title": "Stickerless 2",
        "source": "catalog",
    }


async def test_large_report_imports_in_chunks(client: httpx.AsyncClient) -> None:
    account = await register(client)
    lines = "".join(f"S{i},X0{i:08d},B0{i:08d},Item {i}\n" for i in range(1200))
    report = await upload(client, account, "sku,fnsku,asin,product-name\n" + lines)
    assert report.status_code == 200, report.text
    assert report.json()["created"] == 1200
    codes = [f"X0{i:08d}" for i in range(0, 1200, 3)]
    batch = await client.post(BATCH, headers=account.headers, json={"fnskus": codes})
    assert all(item["status"] == "found" for item in batch.json()["results"])


async def test_concurrent_overlapping_uploads_of_one_user_all_land(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    account = await register(client)
    codes = [f"X0CONC{i:04d}" for i in range(40)]

    def report(order: list[str], tag: str) -> str:
        return "fnsku,asin,product-name\n" + "".join(f"{c},B0CONC{c[-4:]},{tag}\n" for c in order)

    reports = [report(codes if n % 2 else codes[::-1], f"upload {n}") for n in range(6)]
    responses = await asyncio.gather(*(upload(client, account, r) for r in reports))
    assert [r.status_code for r in responses] == [200] * 6
    assert sum(r.json()["created"] for r in responses) == 40
    assert sum(r.json()["updated"] for r in responses) == 5 * 40
    async with app.state.sessionmaker() as session:
        count = await session.scalar(
            select(func.count()).where(AmazonMapping.user_id == account.id)
        )
    assert count == 40


async def test_openapi_describes_the_amazon_routes(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    for path in (ASIN, FNSKU, BATCH, REPORT):
        assert "post" in paths[path], path
    upload_body = paths[REPORT]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in upload_body
    assert {"404", "422", "502", "504"} <= set(paths[ASIN]["post"]["responses"])
    assert "AsinProduct" in spec["components"]["schemas"]


async def test_windows_csv_with_a_multi_line_title_reports_start_lines(
    client: httpx.AsyncClient,
) -> None:
    account = await register(client)
    text = (
        'sku,fnsku,asin,product-name\r\nA,X0CRLF0001,B0CRLF0001,"Two\r\nlines"\r\n'
        "B,X0CRLF0002,nope,Bad\r\n"
    )
    report = await upload(client, account, text)
    assert report.json()["errors"] == [{"row": 4, "message": "Invalid ASIN 'NOPE'."}]
    found = await client.post(FNSKU, headers=account.headers, json={"fnsku": "X0CRLF0001"})
    assert found.json()["title"] == "Two lines"


async def test_unreadable_report_is_422_and_imports_nothing(client: httpx.AsyncClient) -> None:
    account = await register(client)
    text = (
        "fnsku,asin,product-name\nX0GIANT001,B0GIANT001,ok\nX0GIANT002,B0GIANT002,"
        + "x" * 200_000
        + "\n"
    )
    report = await upload(client, account, text)
    assert report.status_code == 422
    assert report.json()["error"] == "validation_error"
    found = await client.post(FNSKU, headers=account.headers, json={"fnsku": "X0GIANT001"})
    assert found.status_code == 404

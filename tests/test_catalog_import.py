"""CSV import: upsert by sku, all or nothing, row-numbered report, stock movements."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from sellerdesk.models import Product, StockMovement
from tests.catalog_factories import create_category, create_product, csv_upload
from tests.factories import Account, register_admin

API = "/api/v1"
HEADER = "sku,name,description,price,stock_quantity,category_slug"


@pytest.fixture
async def admin(client: httpx.AsyncClient, app: FastAPI) -> Account:
    return await register_admin(client, app)


async def _import(client: httpx.AsyncClient, admin: Account, text: str) -> dict[str, object]:
    response = await client.post(
        f"{API}/products/import", files=csv_upload(text), headers=admin.headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


async def _count(app: FastAPI, model: type[Product] | type[StockMovement]) -> int:
    async with app.state.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_import_creates_and_updates_by_sku_with_stock_movements(
    client: httpx.AsyncClient, app: FastAPI, admin: Account
) -> None:
    await create_category(client, admin, slug="mugs")
    existing = await create_product(client, admin, sku="MUG-1", stock_quantity=2, price="1.00")
    text = (
        f"{HEADER}\n"
        "MUG-1,Big mug,Holds a lot,12.5,10,mugs\n"
        'MUG-2,"Small, cute mug","Line one\nline two",3,0,\n'
        "MUG-3,Travel mug,,7.99,4,mugs\n"
    )
    report = await _import(client, admin, text)
    assert report == {"created": 2, "updated": 1, "errors": []}
    listed = await client.get(f"{API}/products?sort=name&page_size=10")
    by_sku = {p["sku"]: p for p in listed.json()["items"]}
    assert by_sku["MUG-1"]["id"] == existing["id"]
    assert by_sku["MUG-1"]["name"] == "Big mug" and by_sku["MUG-1"]["price"] == "12.50"
    assert by_sku["MUG-1"]["stock_quantity"] == 10
    assert by_sku["MUG-2"]["name"] == "Small, cute mug"
    assert by_sku["MUG-2"]["description"] == "Line one\nline two"
    assert by_sku["MUG-2"]["category_id"] is None and by_sku["MUG-2"]["currency"] == "usd"
    assert by_sku["MUG-3"]["description"] is None
    async with app.state.sessionmaker() as session:
        rows = await session.execute(
            select(StockMovement.product_id, StockMovement.delta, StockMovement.reason).order_by(
                StockMovement.id
            )
        )
        movements = [(pid, delta, reason) for pid, delta, reason in rows.all()]
    assert movements == [
        (existing["id"], 2, "initial"),
        (existing["id"], 8, "import"),
        (by_sku["MUG-3"]["id"], 4, "import"),
    ]
    again = await _import(client, admin, text)
    assert again == {"created": 0, "updated": 3, "errors": []}
    assert await _count(app, StockMovement) == 3  # no stock changed the second time


async def test_tab_delimited_file_with_bom_and_crlf(
    client: httpx.AsyncClient, app: FastAPI, admin: Account
) -> None:
    text = "\ufeffsku\tname\tdescription\tprice\tstock_quantity\tcategory_slug\r\n"
    text += "T-1\tTab, separated\tx\t1.00\t1\t\r\n"
    report = await _import(client, admin, text)
    assert report == {"created": 1, "updated": 0, "errors": []}
    product = (await client.get(f"{API}/products")).json()["items"][0]
    assert product["sku"] == "T-1" and product["name"] == "Tab, separated"


async def test_one_bad_row_in_1000_writes_nothing_and_names_the_row(
    client: httpx.AsyncClient, app: FastAPI, admin: Account
) -> None:
    await create_product(client, admin, sku="KEEP", stock_quantity=1, price="5.00")
    rows = [f"B-{n},Item {n},,{n}.99,{n % 7},\n" for n in range(1000)]
    rows[733] = "B-733,Item 733,,1.234,3,\n"  # three decimal places
    rows[0] = "KEEP,Renamed,,9.00,50,\n"  # would update an existing product
    report = await _import(client, admin, HEADER + "\n" + "".join(rows))
    assert report["created"] == 0 and report["updated"] == 0
    assert report["errors"] == [{"row": 735, "message": report["errors"][0]["message"]}]  # type: ignore[index]
    assert "price" in report["errors"][0]["message"]  # type: ignore[index]
    assert await _count(app, Product) == 1
    assert await _count(app, StockMovement) == 1
    kept = (await client.get(f"{API}/products")).json()["items"][0]
    assert kept["name"] != "Renamed" and kept["stock_quantity"] == 1


async def test_every_bad_row_is_reported_with_its_reason(
    client: httpx.AsyncClient, app: FastAPI, admin: Account
) -> None:
    text = (
        f"{HEADER}\n"
        "OK-1,Fine,,1.00,1,\n"  # row 2
        ",No sku,,1.00,1,\n"  # row 3
        "E-4,,,1.00,1,\n"  # row 4
        "E-5,Bad price,,NaN,1,\n"  # row 5
        "E-6,Negative,,-1,1,\n"  # row 6
        "E-7,Stock,,1.00,-2,\n"  # row 7
        "E-8,Stock,,1.00,1.5,\n"  # row 8
        "E-9,Category,,1.00,1,no-such-category\n"  # row 9
        "OK-1,Duplicate,,1.00,1,\n"  # row 10
        "E-11,Too few fields\n"  # row 11
        "\n"  # row 12: blank, skipped
        "E-13,Nul \x00 here,,1.00,1,\n"  # row 13
    )
    report = await _import(client, admin, text)
    errors = report["errors"]
    assert isinstance(errors, list)
    assert [e["row"] for e in errors] == [3, 4, 5, 6, 7, 8, 9, 10, 11, 13]
    messages = {e["row"]: e["message"] for e in errors}
    assert "sku" in messages[3] and "name" in messages[4] and "price" in messages[5]
    assert "stock_quantity" in messages[7] and "no-such-category" in messages[9]
    assert "row 2" in messages[10] and "fields" in messages[11]
    assert report["created"] == 0 and await _count(app, Product) == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"sku,name,price\nA,b,1\n", "stock_quantity"),
        (b"sku,name,price,stock_quantity,sku\n", "more than once"),
        (b"sku,name,price,stock_quantity\nA,\xff\xfe,1,1\n", "UTF-8"),
    ],
)
async def test_unusable_files_are_reported_and_write_nothing(
    client: httpx.AsyncClient, app: FastAPI, admin: Account, content: bytes, message: str
) -> None:
    response = await client.post(
        f"{API}/products/import",
        files={"file": ("p.csv", content, "text/csv")},
        headers=admin.headers,
    )
    assert response.status_code == 200
    body = response.json()
    assert body["created"] == 0 and body["updated"] == 0
    assert message in body["errors"][0]["message"]
    assert await _count(app, Product) == 0


async def test_import_without_optional_columns_keeps_their_values(
    client: httpx.AsyncClient, app: FastAPI, admin: Account
) -> None:
    category = await create_category(client, admin)
    product = await create_product(
        client, admin, sku="KEEP-1", description="Kept", category_id=category["id"]
    )
    report = await _import(client, admin, "SKU,Name,Price,Stock_Quantity\nKEEP-1,New name,2,0\n")
    assert report == {"created": 0, "updated": 1, "errors": []}
    after = (await client.get(f"{API}/products/{product['id']}")).json()
    assert after["name"] == "New name" and after["description"] == "Kept"
    assert after["category_id"] == category["id"]


async def test_import_needs_a_file_field(client: httpx.AsyncClient, admin: Account) -> None:
    response = await client.post(
        f"{API}/products/import",
        files={"upload": ("p.csv", b"sku\n", "text/csv")},
        headers=admin.headers,
    )
    assert response.status_code == 422 and response.json()["error"] == "validation_error"
    assert (
        await client.post(f"{API}/products/import", files=csv_upload(HEADER))
    ).status_code == 401


async def test_import_of_10000_rows_in_one_request(
    client: httpx.AsyncClient, app: FastAPI, admin: Account
) -> None:
    await create_category(client, admin, slug="bulk")
    rows = "".join(f"BULK-{n:05d},Bulk item {n},Row {n},{n % 500}.{n % 100:02d},{n % 9},bulk\n"
                   for n in range(10_000))  # fmt: skip
    report = await _import(client, admin, HEADER + "\n" + rows)
    assert report == {"created": 10_000, "updated": 0, "errors": []}
    page = (await client.get(f"{API}/products?category=bulk&page_size=1")).json()
    assert page["total"] == 10_000

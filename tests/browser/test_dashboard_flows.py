"""The dashboard in headless Chromium against a real uvicorn: an admin sells and refunds, a
customer buys credits and spends one in the try-it form. Every page is screenshotted."""

from __future__ import annotations

import re
from typing import Any

import httpx
from playwright.async_api import expect

from tests.browser.conftest import ADMIN, Server, Visit
from tests.orders_factories import ADDRESS

PASSWORD = "customer-password-1"

# Every input, select and textarea a person can reach has a name a screen reader reads out.
UNLABELLED = """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
  .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
  .map(el => el.name || el.id)"""


async def sign_in(visit: Visit, email: str, password: str) -> None:
    await visit.open("/dashboard")
    await expect(visit.page).to_have_url(re.compile(r"/dashboard/login\?next="))
    await visit.page.get_by_label("Email").fill(email)
    await visit.page.get_by_label("Password").fill(password)
    await visit.page.get_by_role("button", name="Sign in").click()


async def check_page(visit: Visit, name: str) -> None:
    """One h1, the main landmark, every field labelled, nothing fetched off-site; screenshot."""
    page = visit.page
    await expect(page.locator("h1")).to_have_count(1)
    await expect(page.get_by_role("main")).to_have_count(1)
    assert await page.evaluate(UNLABELLED) == [], name
    assert visit.outside_requests == []
    assert not [e for e in visit.console_errors if "Content Security Policy" in e], (
        visit.console_errors
    )
    await visit.shot(name)


async def api_customer(server: Server, email: str) -> dict[str, str]:
    """Register a customer through the API; their bearer headers."""
    async with httpx.AsyncClient(base_url=server.url) as http:
        body = {"email": email, "password": PASSWORD}
        created = await http.post("/api/v1/auth/register", json=body)
        assert created.status_code == 201, created.text
        tokens = await http.post("/api/v1/auth/login", json=body)
        return {"Authorization": f"Bearer {tokens.json()['access_token']}"}


async def buy_through_the_api(server: Server, headers: dict[str, str], product_id: int) -> int:
    """The customer's side of the sale, as an API client does it: cart, checkout, pay."""
    async with httpx.AsyncClient(base_url=server.url, headers=headers) as http:
        put = await http.put(f"/api/v1/cart/items/{product_id}", json={"quantity": 2})
        assert put.status_code == 200, put.text
        order = await http.post("/api/v1/orders", json={"shipping_address": ADDRESS})
        assert order.status_code == 201, order.text
        order_id: int = order.json()["id"]
        intent = await http.post(
            "/api/v1/payments/create-payment-intent", json={"order_id": order_id}
        )
        assert intent.status_code == 200, intent.text
        paid = await http.post(f"/api/v1/payments/confirm-payment/{order_id}")
        assert paid.json()["order"]["status"] == "paid", paid.text
        return order_id


async def test_admin_creates_a_product_a_customer_buys_it_and_the_admin_refunds_it(
    visit: Visit, server: Server
) -> None:
    page = visit.page
    await visit.open("/dashboard/login")
    await check_page(visit, "01-login")
    await sign_in(visit, *ADMIN)
    await expect(page).to_have_url(f"{server.url}/dashboard/admin")
    await check_page(visit, "02-admin-sales-overview")

    await page.get_by_role("link", name="Products").click()
    await page.get_by_role("link", name="New product").click()
    await check_page(visit, "03-admin-new-product")
    await page.get_by_label("Name", exact=True).fill("Walnut desk lamp")
    await page.get_by_label("SKU").fill("LAMP-WALNUT")
    await page.get_by_label("Price (USD)").fill("37.41")
    await page.get_by_label("Stock", exact=True).fill("3")
    await page.get_by_label("Low-stock threshold").fill("2")
    await page.get_by_role("button", name="Create product").click()
    await expect(page.get_by_role("status")).to_have_text("The product was saved.")
    product_id = int(page.url.split("/products/")[1].split("?")[0])
    await check_page(visit, "04-admin-product")

    customer = await api_customer(server, "browser-buyer@example.com")
    order_id = await buy_through_the_api(server, customer, product_id)

    await page.get_by_role("link", name="Orders").click()
    await page.get_by_label("Status").select_option("paid")
    await page.get_by_role("button", name="Filter").click()
    row = page.locator("#orders tbody tr", has_text=f"#{order_id}")
    await expect(row).to_contain_text("74.82 USD")
    await check_page(visit, "05-admin-orders")
    await row.get_by_role("link", name=f"#{order_id}").click()
    await expect(page.locator("#order-status")).to_have_text("paid")
    await check_page(visit, "06-admin-order-paid")
    await page.get_by_role("button", name="Refund", exact=True).click()
    await expect(page.get_by_role("status")).to_have_text("The refund was made.")
    await expect(page.locator("#order-status")).to_have_text("refunded")
    await expect(page.locator("#payment-status")).to_contain_text("refunded")
    await check_page(visit, "07-admin-order-refunded")

    # The stock that the order took (3 - 2 = 1) is at the threshold: adjust it with htmx.
    await page.get_by_role("link", name="Low stock").click()
    lamp = page.locator("#low-stock tr", has_text="Walnut desk lamp")
    await expect(lamp).to_contain_text("1")
    await check_page(visit, "08-admin-low-stock")
    await lamp.get_by_label("Change of stock for Walnut desk lamp").fill("10")
    await lamp.get_by_role("button", name="Adjust").click()
    await expect(page.locator("#low-stock")).not_to_contain_text("Walnut desk lamp")

    await page.get_by_role("link", name="Sales").click()
    await expect(page.locator("#orders-total")).to_have_text("1")
    await expect(page.locator("#revenue-total")).to_have_text("0.00")  # captured, then refunded
    await page.get_by_role("link", name="Users").click()
    await expect(page.locator("#users")).to_contain_text("browser-buyer@example.com")
    await check_page(visit, "09-admin-users")
    await page.get_by_role("link", name="Ledger").click()
    await check_page(visit, "10-admin-ledger")
    await page.get_by_role("link", name="Events & jobs").click()
    await expect(page.locator("#jobs")).to_contain_text("sweep_outbox")
    await check_page(visit, "11-admin-events-and-jobs")

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("status")).to_have_text("You are signed out.")
    await visit.open("/dashboard/admin")
    await expect(page).to_have_url(re.compile(r"/dashboard/login"))


async def test_a_customer_creates_a_key_buys_credits_and_spends_one_in_the_try_it_form(
    visit: Visit, server: Server
) -> None:
    page = visit.page
    await api_customer(server, "browser-dev@example.com")
    await sign_in(visit, "browser-dev@example.com", PASSWORD)
    await expect(page).to_have_url(f"{server.url}/dashboard/usage")
    await expect(page.locator("#balance")).to_have_text("0")
    await check_page(visit, "20-customer-usage-empty")

    await page.get_by_role("link", name="API keys").click()
    await page.get_by_label("Name", exact=True).fill("laptop")
    await page.get_by_role("button", name="Create key").click()
    key = (await page.locator("#new-key").inner_text()).strip()
    assert key.startswith("sdk_")
    await check_page(visit, "21-customer-new-key")
    async with httpx.AsyncClient(base_url=server.url) as http:
        by_key = await http.get("/api/v1/credits", headers={"X-API-Key": key})
        assert by_key.status_code == 200
    await page.get_by_role("link", name="API keys").click()
    await expect(page.get_by_text(key)).to_have_count(0)  # shown once

    await page.get_by_role("link", name="Buy credits").click()
    await check_page(visit, "22-customer-packs")
    await page.get_by_role("button", name=re.compile(r"^Buy ")).first.click()
    await check_page(visit, "23-customer-purchase")
    await page.get_by_role("button", name=re.compile(r"^Pay ")).click()
    await expect(page.get_by_role("status")).to_have_text(
        "Payment received: the credits are on your balance."
    )
    bought = int(await page.locator("#balance").inner_text())
    assert bought > 0

    await page.get_by_role("link", name="Inventory report").click()
    report = "sku\tfnsku\tasin\tproduct-name\nLAMP-1\tX00LAMP001\tB00LAMP001\tDesk lamp\n"
    await page.get_by_label("Report file").set_input_files(
        files=[
            {
                "name": "report.tsv",
                "mimeType": "text/tab-separated-values",
                "buffer": report.encode(),
            }
        ]
    )
    await page.get_by_role("button", name="Upload").click()
    await expect(page.locator("#report-created")).to_have_text("1")
    await check_page(visit, "24-customer-inventory-report")

    await page.get_by_role("link", name="Try it").click()
    await page.get_by_label("FNSKU conversion").check()
    await page.get_by_label("ASIN or FNSKU").fill("x00lamp001")
    await page.get_by_role("button", name="Run").click()  # htmx swaps the result and balance
    result = page.locator("#tryit")
    await expect(result).to_contain_text("B00LAMP001")
    await expect(page.locator("#charged")).to_have_text("1")
    await expect(page.locator("#balance")).to_have_text(str(bought - 1))
    await check_page(visit, "25-customer-try-it")
    await page.get_by_role("button", name="Run").click()  # the same lookup again: free
    await expect(page.locator("#charged")).to_have_text("0")
    await expect(page.locator("#balance")).to_have_text(str(bought - 1))

    await page.get_by_role("link", name="Usage").click()
    await expect(page.locator("#balance")).to_have_text(str(bought - 1))
    await expect(page.locator("table").last).to_contain_text("FNSKU conversion")
    await check_page(visit, "26-customer-usage")
    await page.get_by_role("link", name="Transactions").click()
    await expect(page.locator("tbody tr").first).to_contain_text("charge")
    await check_page(visit, "27-customer-transactions")

    await visit.open("/dashboard/admin")  # not an admin
    assert (await page.locator("h1").inner_text()) == "Not allowed"


async def test_the_pages_fit_a_phone_screen(visit: Visit, server: Server) -> None:
    await visit.page.set_viewport_size({"width": 375, "height": 740})
    await sign_in(visit, *ADMIN)
    for path, name in (
        ("/dashboard/admin", "30-phone-sales"),
        ("/dashboard/try", "31-phone-try-it"),
    ):
        await visit.open(path)
        overflow: Any = await visit.page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, (path, overflow)
        await check_page(visit, name)

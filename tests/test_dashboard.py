"""The dashboard over HTTP: sessions, CSRF, roles, headers, and that its forms act through the
same services as the API (the browser tests in tests/browser drive it in Chromium)."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update

from sellerdesk.models import BrowserSession, User
from tests.factories import PASSWORD, Account, register, register_admin
from tests.orders_factories import ADDRESS
from tests.stripe_fixtures import localstripe

__all__ = ["localstripe"]  # the session fixture, imported for pytest

LOGIN = "/dashboard/login"
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(page: httpx.Response) -> str:
    found = TOKEN.search(page.text)
    assert found is not None, page.text[:500]
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, account: Account, password: str = PASSWORD) -> str:
    """Sign in through the form; the CSRF token of the new session."""
    form = await client.get(LOGIN)
    answer = await client.post(
        LOGIN,
        data={"email": account.email, "password": password, "csrf_token": csrf_of(form)},
    )
    assert answer.status_code == 303, answer.text
    page = await client.get("/dashboard/keys")
    assert page.status_code == 200
    return csrf_of(page)


@pytest.fixture
async def browser(app: FastAPI) -> Any:
    """A second client with its own cookie jar, like another browser."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as c:
        yield c


async def test_signed_out_visitors_are_sent_to_the_sign_in_form(client: httpx.AsyncClient) -> None:
    home = await client.get("/dashboard")
    assert home.status_code == 303
    assert home.headers["location"] == "/dashboard/login?next=/dashboard"
    deep = await client.get("/dashboard/admin/orders?status=paid")
    assert deep.headers["location"].startswith("/dashboard/login?next=/dashboard/admin/orders")
    form = await client.get(LOGIN)
    assert form.status_code == 200
    assert 'name="email"' in form.text and 'type="password"' in form.text
    assert 'name="csrf_token"' in form.text


async def test_signing_in_sets_an_httponly_samesite_cookie_stored_hashed(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await register(client)
    form = await client.get(LOGIN)
    answer = await client.post(
        LOGIN,
        data={
            "email": user.email.upper(),
            "password": PASSWORD,
            "csrf_token": csrf_of(form),
            "next": "/dashboard/keys",
        },
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/dashboard/keys"
    cookie = next(c for c in answer.headers.get_list("set-cookie") if "sellerdesk_session=" in c)
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/dashboard" in cookie
    assert "Secure" not in cookie  # plain HTTP here; Secure on HTTPS (next test)
    token = cookie.split(";")[0].split("=", 1)[1]
    async with app.state.sessionmaker() as session:
        hashes = list(await session.scalars(select(BrowserSession.token_hash)))
    assert len(hashes) == 1 and token not in hashes[0] and len(hashes[0]) == 64
    assert (await client.get("/dashboard")).headers["location"] == "/dashboard/usage"


async def test_the_cookie_is_secure_behind_https(client: httpx.AsyncClient) -> None:
    user = await register(client)
    headers = {"X-Forwarded-Proto": "https"}
    form = await client.get(LOGIN, headers=headers)
    assert "Secure" in form.headers["set-cookie"]
    answer = await client.post(
        LOGIN,
        data={"email": user.email, "password": PASSWORD, "csrf_token": csrf_of(form)},
        headers=headers,
    )
    assert "Secure" in answer.headers["set-cookie"]


async def test_wrong_password_is_the_apis_answer_and_counts_toward_the_throttle(
    make_app: Any,
) -> None:
    app = await make_app(LOGIN_FAILURE_LIMIT="2/minute")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        user = await register(client)
        statuses = []
        for _ in range(3):
            form = await client.get(LOGIN)
            answer = await client.post(
                LOGIN,
                data={
                    "email": user.email,
                    "password": "wrong-password",
                    "csrf_token": csrf_of(form),
                },
            )
            statuses.append(answer.status_code)
        assert statuses == [401, 401, 429]
        assert "Incorrect email or password." in answer.text or "Too many" in answer.text
        api = await client.post(
            "/api/v1/auth/login", json={"email": user.email, "password": PASSWORD}
        )
        assert api.status_code == 429  # the same throttle


async def test_sign_in_refuses_a_form_without_its_token_and_never_redirects_off_site(
    client: httpx.AsyncClient,
) -> None:
    user = await register(client)
    forged = await client.post(LOGIN, data={"email": user.email, "password": PASSWORD})
    assert forged.status_code == 403 and "sellerdesk_session" not in forged.headers.get(
        "set-cookie", ""
    )
    form = await client.get(LOGIN)
    answer = await client.post(
        LOGIN,
        data={
            "email": user.email,
            "password": PASSWORD,
            "csrf_token": csrf_of(form),
            "next": "https://evil.example/steal",
        },
    )
    assert answer.headers["location"] == "/dashboard"


async def test_inactive_accounts_cannot_sign_in_and_deactivation_ends_sessions(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await register(client)
    await sign_in(client, user)
    async with app.state.sessionmaker() as session:
        await session.execute(update(User).where(User.id == user.id).values(is_active=False))
        await session.commit()
    assert (await client.get("/dashboard/keys")).status_code == 303
    form = await client.get(LOGIN)
    answer = await client.post(
        LOGIN, data={"email": user.email, "password": PASSWORD, "csrf_token": csrf_of(form)}
    )
    assert answer.status_code == 403


async def test_a_password_change_through_the_api_ends_dashboard_sessions(
    client: httpx.AsyncClient, browser: httpx.AsyncClient
) -> None:
    user = await register(client)
    await sign_in(browser, user)
    changed = await client.patch(
        "/api/v1/users/me",
        headers=user.headers,
        json={"password": "another-password-1", "current_password": PASSWORD},
    )
    assert changed.status_code == 200, changed.text
    assert (await browser.get("/dashboard/keys")).status_code == 303
    await sign_in(browser, user, password="another-password-1")
    assert (await browser.get("/dashboard/keys")).status_code == 200


async def test_every_post_needs_the_sessions_csrf_token(
    client: httpx.AsyncClient, browser: httpx.AsyncClient, app: FastAPI
) -> None:
    alice = await register(client)
    csrf = await sign_in(client, alice)
    bob = await register(browser)
    bobs_csrf = await sign_in(browser, bob)
    assert csrf != bobs_csrf

    for data in (
        {"name": "k"},
        {"name": "k", "csrf_token": "forged"},
        {"name": "k", "csrf_token": bobs_csrf},
    ):
        refused = await client.post("/dashboard/keys", data=data)
        assert refused.status_code == 403
        assert "text/html" in refused.headers["content-type"]
    assert (await client.get("/api/v1/api-keys", headers=alice.headers)).json()["total"] == 0
    made = await client.post("/dashboard/keys", data={"name": "k", "csrf_token": csrf})
    assert made.status_code == 200
    assert (await client.get("/api/v1/api-keys", headers=alice.headers)).json()["total"] == 1


async def test_logout_ends_the_session_everywhere(client: httpx.AsyncClient, app: FastAPI) -> None:
    user = await register(client)
    csrf = await sign_in(client, user)
    stolen = client.cookies.get("sellerdesk_session")
    out = await client.post("/dashboard/logout", data={"csrf_token": csrf})
    assert out.status_code == 303 and out.headers["location"] == "/dashboard/login?done=signed_out"
    assert (
        'sellerdesk_session=""' in out.headers["set-cookie"]
        or "Max-Age=0" in out.headers["set-cookie"]
    )
    async with app.state.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(BrowserSession)) == 0
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://test",
        cookies={"sellerdesk_session": stolen or ""},
    ) as replay:
        assert (await replay.get("/dashboard/keys")).status_code == 303


async def test_admin_pages_are_403_to_customers_and_open_to_admins(
    client: httpx.AsyncClient, browser: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await register(client)
    await sign_in(client, user)
    pages = [
        "/dashboard/admin",
        "/dashboard/admin/orders",
        "/dashboard/admin/products",
        "/dashboard/admin/products/new",
        "/dashboard/admin/low-stock",
        "/dashboard/admin/users",
        "/dashboard/admin/ledger",
        "/dashboard/admin/events",
    ]
    for path in pages:
        refused = await client.get(path)
        assert refused.status_code == 403, path
        assert "administrators" in refused.text
    admin = await register_admin(browser, app)
    await sign_in(browser, admin)
    for path in pages:
        assert (await browser.get(path)).status_code == 200, path


async def test_pages_carry_a_strict_csp_and_no_store(client: httpx.AsyncClient) -> None:
    user = await register(client)
    await sign_in(client, user)
    for path in ("/dashboard/usage", "/dashboard/try", LOGIN):
        page = await client.get(path)
        csp = page.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert page.headers["cache-control"] == "no-store"
        assert "http://" not in page.text and "https://" not in page.text  # nothing external
    script = await client.get("/dashboard/static/vendor/htmx.min.js")
    assert script.status_code == 200 and "htmx" in script.text[:2000]


async def test_unknown_pages_and_bad_ids_are_html_pages_and_the_api_stays_json(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await register_admin(client, app)
    await sign_in(client, admin)
    missing = await client.get("/dashboard/admin/orders/999999")
    assert missing.status_code == 404 and "text/html" in missing.headers["content-type"]
    bad = await client.get("/dashboard/admin/orders/0")
    assert bad.status_code in (404, 422) and "text/html" in bad.headers["content-type"]
    nowhere = await client.get("/dashboard/nowhere")
    assert nowhere.status_code == 404 and "text/html" in nowhere.headers["content-type"]
    api = await client.get("/api/v1/orders/0", headers=admin.headers)
    assert api.headers["content-type"] == "application/json"


async def test_a_new_api_key_is_shown_once_and_works_then_revoked(
    client: httpx.AsyncClient,
) -> None:
    user = await register(client)
    csrf = await sign_in(client, user)
    made = await client.post("/dashboard/keys", data={"name": "laptop", "csrf_token": csrf})
    key = re.search(r'id="new-key">([^<]+)<', made.text)
    assert key is not None
    assert (
        await client.get("/api/v1/credits", headers={"X-API-Key": key.group(1)})
    ).status_code == 200
    listing = await client.get("/dashboard/keys")
    assert key.group(1) not in listing.text and "laptop" in listing.text
    key_id = (await client.get("/api/v1/api-keys", headers=user.headers)).json()["items"][0]["id"]
    revoked = await client.post(f"/dashboard/keys/{key_id}/revoke", data={"csrf_token": csrf})
    assert revoked.status_code == 303
    assert (
        await client.get("/api/v1/credits", headers={"X-API-Key": key.group(1)})
    ).status_code == 401


async def test_buying_credits_with_the_manual_gateway_and_a_lookup_in_the_try_it_form(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await register_admin(client, app)
    product = await client.post(
        "/api/v1/products",
        json={"name": "Lamp", "price": "19.99", "sku": "LAMP-1", "asin": "B0LAMP0001"},
        headers=admin.headers,
    )
    assert product.status_code == 201
    user = await register(client)
    csrf = await sign_in(client, user)
    pack = (await client.get("/api/v1/credits/packs")).json()[0]
    started = await client.post(
        "/dashboard/credits/buy", data={"pack_id": pack["id"], "csrf_token": csrf}
    )
    assert started.status_code == 303
    purchase_page = started.headers["location"]
    page = await client.get(purchase_page)
    assert f"{pack['price']} USD" in page.text
    paid = await client.post(f"{purchase_page}/confirm", data={"csrf_token": csrf})
    assert paid.status_code == 303 and paid.headers["location"].endswith("done=purchased")
    assert (await client.get("/api/v1/credits", headers=user.headers)).json()["balance"] == pack[
        "credits"
    ]

    lookup = await client.post(
        "/dashboard/try", data={"kind": "asin", "code": "b0lamp0001", "csrf_token": csrf}
    )
    assert lookup.status_code == 200
    assert "Lamp" in lookup.text and 'id="charged">1<' in lookup.text
    assert f'id="balance">{pack["credits"] - 1}<' in lookup.text
    usage = (await client.get("/api/v1/credits/usage", headers=user.headers)).json()["items"]
    assert [(i["endpoint"], i["calls"], i["credits"]) for i in usage] == [("asin_lookup", 1, 1)]
    unknown = await client.post(
        "/dashboard/try", data={"kind": "fnsku", "code": "X0NOTKNOWN", "csrf_token": csrf}
    )
    assert unknown.status_code == 404 and 'id="charged">0<' in unknown.text
    invalid = await client.post(
        "/dashboard/try", data={"kind": "asin", "code": "nope", "csrf_token": csrf}
    )
    assert invalid.status_code == 422
    assert (await client.get("/api/v1/credits", headers=user.headers)).json()["balance"] == pack[
        "credits"
    ] - 1


async def test_an_empty_balance_is_a_402_in_the_try_it_form(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await register_admin(client, app)
    await client.post(
        "/api/v1/products",
        json={"name": "Desk", "price": "99.00", "sku": "DESK-1", "asin": "B0DESK0001"},
        headers=admin.headers,
    )
    user = await register(client)
    csrf = await sign_in(client, user)
    answer = await client.post(
        "/dashboard/try", data={"kind": "asin", "code": "B0DESK0001", "csrf_token": csrf}
    )
    assert answer.status_code == 402 and "needs 1 credits" in answer.text


async def test_admin_ships_and_refunds_an_order_through_the_order_page(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await register_admin(client, app)
    created = await client.post(
        "/api/v1/products",
        json={"name": "Chair", "price": "37.41", "sku": "CHAIR-1", "stock_quantity": 5},
        headers=admin.headers,
    )
    buyer = await register(client)
    await client.put(
        f"/api/v1/cart/items/{created.json()['id']}", json={"quantity": 2}, headers=buyer.headers
    )
    order = (
        await client.post(
            "/api/v1/orders", json={"shipping_address": ADDRESS}, headers=buyer.headers
        )
    ).json()
    await client.post(
        "/api/v1/payments/create-payment-intent",
        json={"order_id": order["id"]},
        headers=buyer.headers,
    )
    await client.post(f"/api/v1/payments/confirm-payment/{order['id']}", headers=buyer.headers)

    csrf = await sign_in(client, admin)
    listing = await client.get("/dashboard/admin/orders", params={"status": "paid"})
    assert f"#{order['id']}" in listing.text and "74.82" in listing.text
    base = f"/dashboard/admin/orders/{order['id']}"
    shipped = await client.post(
        f"{base}/move",
        data={
            "status": "shipped",
            "carrier": "DHL",
            "tracking_number": "JD0001",
            "csrf_token": csrf,
        },
    )
    assert shipped.status_code == 303
    page = await client.get(base)
    key = re.search(r'name="refund_key" value="([^"]+)"', page.text)
    assert key is not None
    form = {"amount": "10.00", "csrf_token": csrf, "refund_key": key.group(1)}
    refund = await client.post(f"{base}/refund", data=form)
    assert refund.status_code == 303
    again = await client.post(f"{base}/refund", data=form)  # a double submit of that form
    assert again.status_code == 303
    over = await client.post(f"{base}/refund", data={"amount": "500.00", "csrf_token": csrf})
    assert over.status_code == 409 and "exceeds" in over.text
    api = (await client.get(f"/api/v1/admin/orders/{order['id']}", headers=admin.headers)).json()
    assert (api["status"], api["payment_status"], api["carrier"]) == (
        "shipped",
        "partially_refunded",
        "DHL",
    )
    page = await client.get(base)
    assert "partially_refunded" in page.text and "JD0001" in page.text
    overview = await client.get("/dashboard/admin")
    assert 'id="revenue-total">64.82<' in overview.text and "Chair" in overview.text
    assert "<svg" in overview.text and "<desc" in overview.text


# --------------------------------------------------------------------------- Stripe Checkout


async def test_a_completed_checkout_session_credits_the_purchase_it_was_opened_for(
    make_app: Any,
) -> None:
    """Checkout makes its own intent: `client_reference_id` (our purpose) ties it to our
    payment, once. (localstripe has no Checkout: the session is written as Stripe sends it.)"""
    from sellerdesk.models import CreditPurchase, Payment
    from tests.stripe_fixtures import WEBHOOK_SECRET, event, signed

    app = await make_app(STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        user = await register(client)
        pack = (await client.get("/api/v1/credits/packs")).json()[0]
        async with app.state.sessionmaker() as session:
            purchase = CreditPurchase(
                user_id=user.id, pack_id=pack["id"], credits=pack["credits"], status="pending"
            )
            session.add(purchase)
            await session.flush()
            payment = Payment(
                purpose=f"credit_purchase:{purchase.id}",
                provider="stripe",
                user_id=user.id,
                amount=pack["price"],
                currency="usd",
                status="pending",
            )
            session.add(payment)
            await session.flush()
            purchase.payment_id = payment.id
            await session.commit()
        completed = {
            "id": "cs_test_checkout",
            "object": "checkout.session",
            "client_reference_id": f"credit_purchase:{purchase.id}",
            "payment_intent": "pi_from_checkout",
            "payment_status": "paid",
            "amount_total": int(Decimal(pack["price"]) * 100),
            "currency": "usd",
        }
        for _ in range(2):
            payload, headers = signed(event("checkout.session.completed", completed))
            answer = await client.post("/api/v1/payments/webhook", content=payload, headers=headers)
            assert answer.status_code == 200, answer.text
        assert (await client.get("/api/v1/credits", headers=user.headers)).json()[
            "balance"
        ] == pack["credits"]
        async with app.state.sessionmaker() as session:
            stored = await session.get(Payment, payment.id)
            assert stored is not None
            assert (stored.intent_id, stored.status) == ("pi_from_checkout", "succeeded")


async def test_buying_credits_with_stripe_goes_to_hosted_checkout_and_lands_once_paid(
    make_app: Any, localstripe: str
) -> None:
    """The buy button opens a Checkout Session for exactly the pack (price, currency, our
    purpose as `client_reference_id`) and sends the buyer to its page; the credits land when
    Stripe reports the session paid, once, and not before."""
    import stripe

    from tests.stripe_fixtures import event, signed, stripe_client, stripe_settings

    settings = stripe_settings(localstripe)
    app = await make_app(**settings)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        buyer = await register(client)
        csrf = await sign_in(client, buyer)
        pack = (await client.get("/api/v1/credits/packs")).json()[0]

        answer = await client.post(
            "/dashboard/credits/buy", data={"pack_id": str(pack["id"]), "csrf_token": csrf}
        )

        assert answer.status_code == 303, answer.text
        page = answer.headers["location"]
        assert page.startswith("https://checkout.stripe.com/c/pay/cs_test_")
        stripe_auth = {"Authorization": f"Bearer {settings['STRIPE_SECRET_KEY']}"}
        async with httpx.AsyncClient(base_url=localstripe, headers=stripe_auth) as api:
            opened = (await api.get(f"/v1/checkout/sessions/{page.rsplit('/', 1)[1]}")).json()
        purpose = opened["client_reference_id"]
        assert purpose.startswith("credit_purchase:")
        assert (opened["amount_total"], opened["currency"], opened["mode"]) == (
            int(Decimal(pack["price"]) * 100),
            pack["currency"],
            "payment",
        )
        assert opened["success_url"] == "http://test/dashboard/credits?done=purchased"
        balance = "/api/v1/credits"
        assert (await client.get(balance, headers=buyer.headers)).json()["balance"] == 0

        # The buyer pays on Stripe's page: Checkout makes and confirms its own intent.
        http = stripe.HTTPXClient()
        sdk = stripe_client(localstripe, http)
        intent = await sdk.v1.payment_intents.create_async(
            {"amount": opened["amount_total"], "currency": opened["currency"]}
        )
        await sdk.v1.payment_intents.update_async(intent.id, {"payment_method": "pm_card_visa"})
        await sdk.v1.payment_intents.confirm_async(intent.id)
        await http.close_async()  # type: ignore[no-untyped-call]
        completed = {**opened, "payment_intent": intent.id, "payment_status": "paid"}
        for _ in range(2):  # Stripe delivers at least once
            payload, headers = signed(event("checkout.session.completed", completed))
            delivered = await client.post(
                "/api/v1/payments/webhook", content=payload, headers=headers
            )
            assert delivered.status_code == 200, delivered.text

        after = (await client.get(balance, headers=buyer.headers)).json()["balance"]
        assert after == pack["credits"]
        credits_page = await client.get("/dashboard/credits")
        assert f">{pack['credits']}<" in credits_page.text


async def test_with_stripe_the_pages_allow_posting_to_stripe_checkout_only(
    make_app: Any,
) -> None:
    app = await make_app(PAYMENT_PROVIDER="stripe", STRIPE_SECRET_KEY="sk_test_dashboard")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        page = await client.get(LOGIN)
        assert (
            "form-action 'self' https://checkout.stripe.com;"
            in page.headers["content-security-policy"]
        )


async def test_product_forms_create_edit_and_show_refusals_with_what_was_typed(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await register_admin(client, app)
    csrf = await sign_in(client, admin)
    fields = {
        "name": "Mug",
        "sku": "MUG-1",
        "price": "8.5",
        "stock_quantity": "4",
        "csrf_token": csrf,
    }
    made = await client.post("/dashboard/admin/products/new", data={**fields, "is_active": "on"})
    assert made.status_code == 303
    product_url = made.headers["location"].split("?")[0]
    again = await client.post("/dashboard/admin/products/new", data=fields)
    assert (
        again.status_code == 409 and "already taken" in again.text and 'value="Mug"' in again.text
    )
    bad = await client.post(product_url, data={**fields, "price": "cheap"})
    assert bad.status_code == 422 and 'value="cheap"' in bad.text
    edited = await client.post(product_url, data={**fields, "price": "9.25", "is_active": "on"})
    assert edited.status_code == 303
    product_id = int(product_url.rsplit("/", 1)[1])
    api = (await client.get(f"/api/v1/products/{product_id}", headers=admin.headers)).json()
    assert (api["price"], api["stock_quantity"], api["is_active"]) == ("9.25", 4, True)

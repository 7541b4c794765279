"""A client generated from `/openapi.json` by openapi-python-client works with no hand edits.

The client is generated into a temporary folder from the running service's document, imported,
and drives the whole journey against a real `sellerdesk serve`: register → login → browse →
cart → checkout → pay (manual gateway: intent, then confirm) → buy credits (purchase, then
confirm) → create an API key → ASIN lookup with that key.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.live import BIN, LiveServer, start_live_server

PACKAGE = "sellerdesk_generated_client"


@pytest.fixture(scope="module")
def live() -> Iterator[LiveServer]:
    with start_live_server("client") as server:
        yield server


@pytest.fixture(scope="module")
def client_package(live: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    folder = tmp_path_factory.mktemp("generated")
    document = folder / "openapi.json"
    document.write_bytes(httpx.get(f"{live.url}/openapi.json").content)
    result = subprocess.run(
        [
            str(BIN / "openapi-python-client"),
            "generate",
            "--path",
            str(document),
            "--output-path",
            str(folder / PACKAGE),
            "--meta",
            "none",
            "--fail-on-warning",
        ],
        cwd=folder,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(folder))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def _module(package: ModuleType, name: str) -> Any:
    return importlib.import_module(f"{package.__name__}.{name}")


def test_every_generated_module_imports(client_package: ModuleType) -> None:
    root = Path(client_package.__file__ or "").parent
    modules = sorted(
        ".".join(path.relative_to(root).with_suffix("").parts)
        for path in root.rglob("*.py")
        if path.name != "__init__.py"
    )
    assert "api.auth.login" in modules and "api.catalog.list_products" in modules
    for name in modules:
        _module(client_package, name)


def test_the_whole_journey_runs_through_the_generated_client(
    live: LiveServer, client_package: ModuleType
) -> None:
    api = _module(client_package, "api")
    models = _module(client_package, "models")
    client_module = _module(client_package, "client")
    anonymous = client_module.Client(base_url=live.url, raise_on_unexpected_status=True)

    # register → login
    email = f"client-{uuid.uuid4().hex[:8]}@example.com"
    user = _module(api, "auth.register").sync(
        client=anonymous, body=models.UserCreate(email=email, password="a long password")
    )
    assert isinstance(user, models.UserPublic) and user.email == email
    tokens = _module(api, "auth.login").sync(
        client=anonymous, body=models.LoginRequest(email=email, password="a long password")
    )
    assert isinstance(tokens, models.TokenPair)
    me = client_module.AuthenticatedClient(
        base_url=live.url, token=tokens.access_token, raise_on_unexpected_status=True
    )

    # browse: the cheapest products first, readable sort names
    page = _module(api, "catalog.list_products").sync(
        client=anonymous, sort=models.ListProductsSort.PRICE, in_stock=True, page_size=10
    )
    assert isinstance(page, models.PageProductPublic) and page.items
    prices = [float(product.price) for product in page.items]
    assert prices == sorted(prices)
    product = page.items[0]

    # cart → checkout
    cart = _module(api, "cart.set_cart_item").sync(
        client=me, product_id=product.id, body=models.CartItemSet(quantity=2)
    )
    assert isinstance(cart, models.CartPublic) and cart.items[0].quantity == 2
    address = models.Address(
        name="Ada Client", line1="1 Main St", city="Springfield", postal_code="12345", country="US"
    )
    order = _module(api, "orders.checkout").sync(
        client=me, body=models.CheckoutIn(shipping_address=address)
    )
    assert isinstance(order, models.OrderPublic)
    assert order.status == models.OrderPublicStatus.PENDING

    # pay with the manual gateway: the intent, then the confirmation
    intent = _module(api, "payments.create_payment_intent").sync(
        client=me, body=models.PaymentIntentCreate(order_id=order.id)
    )
    assert isinstance(intent, models.PaymentIntentPublic) and intent.client_secret
    paid = _module(api, "payments.confirm_payment").sync(client=me, order_id=order.id)
    assert isinstance(paid, models.PaymentConfirmed)
    assert paid.order.status == models.OrderPublicStatus.PAID

    # buy credits: a pack, then the manual gateway's confirmation
    packs = _module(api, "credits_.list_packs").sync(client=anonymous)
    assert isinstance(packs, list) and packs
    pack = packs[0]
    started = _module(api, "credits_.purchase_credits").sync(
        client=me, body=models.PurchaseCreate(pack_id=pack.id)
    )
    assert isinstance(started, models.PurchaseStarted)
    confirmed = _module(api, "credits_.confirm_purchase").sync(
        client=me, purchase_id=started.purchase_id
    )
    assert isinstance(confirmed, models.PurchaseConfirmed)
    assert confirmed.balance == pack.credits_  # `credits` is a builtin

    # an API key, then an ASIN lookup with it (a catalog product that has an ASIN)
    key = _module(api, "api_keys.create_api_key").sync(
        client=me, body=models.ApiKeyCreate(name="generated client")
    )
    assert isinstance(key, models.ApiKeyCreated) and key.key.startswith(key.prefix)
    with_asin = _module(api, "catalog.list_products").sync(client=anonymous, q="DEMO-00001")
    asin = with_asin.items[0].asin
    assert isinstance(asin, str)
    by_key = client_module.AuthenticatedClient(
        base_url=live.url,
        token=key.key,
        prefix="",
        auth_header_name="X-API-Key",
        raise_on_unexpected_status=True,
    )
    lookup = _module(api, "amazon.lookup_asin").sync_detailed(
        client=by_key, body=models.AsinQuery(asin=f" {asin.lower()} ")
    )
    assert lookup.status_code == 200
    assert isinstance(lookup.parsed, models.AsinProduct) and lookup.parsed.asin == asin
    assert lookup.headers["X-Credits-Charged"] == "1"
    balance = _module(api, "credits_.read_balance").sync(client=by_key)
    assert isinstance(balance, models.CreditBalance) and balance.balance == pack.credits_ - 1

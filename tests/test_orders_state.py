"""The order state machine and the hooks the payments domain calls."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest
from fastapi import FastAPI

from sellerdesk.errors import NotFound
from sellerdesk.orders import service, state
from tests.orders_factories import make_product, make_user, movements_of, place_order, stock_of


def test_the_state_machine_allows_exactly_the_contract_moves() -> None:
    allowed = {(a, b) for a, targets in state.TRANSITIONS.items() for b in targets}
    assert allowed == {
        ("pending", "paid"),
        ("pending", "cancelled"),
        ("paid", "shipped"),
        ("paid", "cancelled"),
        ("paid", "refunded"),
        ("shipped", "delivered"),
        ("shipped", "refunded"),
        ("delivered", "refunded"),
    }
    assert state.sources("refunded") == ("delivered", "paid", "shipped")
    assert not state.can_move("cancelled", "pending")


async def _order(app: FastAPI, client: httpx.AsyncClient, quantity: int = 2) -> tuple[int, int]:
    buyer = await make_user(app)
    product = await make_product(app, stock=10)
    order = await place_order(client, buyer, product, quantity)
    return order["id"], product


async def _apply(
    app: FastAPI, hook: str, order_id: int, *args: object, **kwargs: object
) -> dict[str, str]:
    async with app.state.sessionmaker() as session:
        order = await getattr(service, hook)(session, order_id, *args, **kwargs)
        await session.commit()
        return {"status": order.status, "payment_status": order.payment_status}


async def test_payment_succeeded_moves_pending_to_paid_once(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    order_id, _ = await _order(app, client)
    paid = {"status": "paid", "payment_status": "succeeded"}
    assert await _apply(app, "apply_payment_succeeded", order_id) == paid
    assert await _apply(app, "apply_payment_succeeded", order_id) == paid


async def test_payment_failed_keeps_the_order_pending_and_a_later_success_pays_it(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    order_id, _ = await _order(app, client)
    assert await _apply(app, "apply_payment_failed", order_id) == {
        "status": "pending",
        "payment_status": "failed",
    }
    assert (await _apply(app, "apply_payment_succeeded", order_id))["status"] == "paid"
    # A late failure event never undoes a payment.
    assert await _apply(app, "apply_payment_failed", order_id) == {
        "status": "paid",
        "payment_status": "succeeded",
    }


async def test_payment_on_a_cancelled_order_leaves_it_cancelled_for_a_refund(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    buyer = await make_user(app)
    product = await make_product(app)
    order = await place_order(client, buyer, product)
    cancel = await client.post(f"/api/v1/orders/{order['id']}/cancel", headers=buyer.headers)
    assert cancel.status_code == 200
    assert await _apply(app, "apply_payment_succeeded", order["id"]) == {
        "status": "cancelled",
        "payment_status": "succeeded",
    }
    assert await _apply(app, "apply_refund", order["id"], Decimal("10.00"), Decimal("10.00")) == {
        "status": "cancelled",
        "payment_status": "refunded",
    }


async def test_partial_then_full_refund(app: FastAPI, client: httpx.AsyncClient) -> None:
    order_id, _ = await _order(app, client)
    await _apply(app, "apply_payment_succeeded", order_id)
    assert await _apply(app, "apply_refund", order_id, Decimal("5.00"), Decimal("20.00")) == {
        "status": "paid",
        "payment_status": "partially_refunded",
    }
    full = {"status": "refunded", "payment_status": "refunded"}
    assert await _apply(app, "apply_refund", order_id, Decimal("20.00"), Decimal("20.00")) == full
    # Repeats and a late partial event change nothing.
    assert await _apply(app, "apply_refund", order_id, Decimal("20.00"), Decimal("20.00")) == full
    assert await _apply(app, "apply_refund", order_id, Decimal("5.00"), Decimal("20.00")) == full


@pytest.mark.parametrize("moved_to", ["shipped", "delivered"])
async def test_full_refund_of_a_shipped_or_delivered_order(
    app: FastAPI, client: httpx.AsyncClient, moved_to: str
) -> None:
    order_id, product = await _order(app, client)
    await _apply(app, "apply_payment_succeeded", order_id)
    admin = await make_user(app, admin=True)
    for target in ("shipped", "delivered")[: 1 if moved_to == "shipped" else 2]:
        response = await client.patch(
            f"/api/v1/admin/orders/{order_id}", json={"status": target}, headers=admin.headers
        )
        assert response.status_code == 200, response.text
    result = await _apply(app, "apply_refund", order_id, Decimal("20.00"), Decimal("20.00"))
    assert result == {"status": "refunded", "payment_status": "refunded"}
    assert await stock_of(app, product) == 8  # shipped goods are not back on the shelf


async def test_full_refund_with_cancel_returns_the_stock(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    order_id, product = await _order(app, client, quantity=3)
    await _apply(app, "apply_payment_succeeded", order_id)
    assert await stock_of(app, product) == 7
    result = await _apply(
        app, "apply_refund", order_id, Decimal("30.00"), Decimal("30.00"), cancel=True
    )
    assert result == {"status": "cancelled", "payment_status": "refunded"}
    assert await stock_of(app, product) == 10
    assert await movements_of(app, product, "cancel") == 1
    await _apply(app, "apply_refund", order_id, Decimal("30.00"), Decimal("30.00"), cancel=True)
    assert await stock_of(app, product) == 10  # a repeat returns nothing twice


async def test_get_order_for_payment_hides_other_users_orders(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    order_id, _ = await _order(app, client)
    other = await make_user(app)
    async with app.state.sessionmaker() as session:
        assert (await service.get_order(session, order_id, None)).id == order_id
        with pytest.raises(NotFound):
            await service.get_order(session, order_id, other.id)

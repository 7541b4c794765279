"""Cart routes: the caller's own cart."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from sellerdesk.auth.dependencies import CurrentUser
from sellerdesk.cart import service
from sellerdesk.cart.schemas import CartItemSet, CartPublic
from sellerdesk.db import SessionDep
from sellerdesk.kit.openapi import errors
from sellerdesk.kit.types import IdPath

router = APIRouter(prefix="/cart", tags=["cart"])


def _currency(request: Request) -> str:
    currency: str = request.app.state.settings.CURRENCY
    return currency


@router.get("", response_model=CartPublic, responses=errors(401))
async def read_cart(request: Request, session: SessionDep, user: CurrentUser) -> CartPublic:
    """The caller's cart with live prices."""
    return await service.get_cart(session, user, _currency(request))


@router.put("/items/{product_id}", response_model=CartPublic, responses=errors(401, 404, 422))
async def set_cart_item(
    product_id: IdPath, body: CartItemSet, request: Request, session: SessionDep, user: CurrentUser
) -> CartPublic:
    """Set how many of a product the cart holds (1..999); returns the cart."""
    return await service.set_item(session, user, product_id, body.quantity, _currency(request))


@router.delete("/items/{product_id}", status_code=204, responses=errors(401, 422))
async def remove_cart_item(product_id: IdPath, session: SessionDep, user: CurrentUser) -> Response:
    """Remove a product from the cart."""
    await service.remove_item(session, user, product_id)
    return Response(status_code=204)


@router.delete("", status_code=204, responses=errors(401))
async def clear_cart(session: SessionDep, user: CurrentUser) -> Response:
    """Empty the cart."""
    await service.clear(session, user)
    return Response(status_code=204)

"""Admin pages of the store: orders and their state moves and refunds, products (list, edit,
CSV import) and the low-stock list with adjustments, all through the domains' services."""

from __future__ import annotations

import secrets
from typing import Annotated, Any, get_args

from fastapi import APIRouter, Query, Request, Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData, UploadFile

from sellerdesk.catalog import importer
from sellerdesk.catalog import service as catalog_service
from sellerdesk.catalog.schemas import ProductCreate, ProductFilters, ProductUpdate
from sellerdesk.dashboard.account import PAGE_SIZE, PageNumber, first_error
from sellerdesk.dashboard.rendering import redirect, render
from sellerdesk.dashboard.security import AdminDep, FormDep, Viewer, undo
from sellerdesk.db import SessionDep
from sellerdesk.errors import AppError, ValidationFailed
from sellerdesk.inventory import service as inventory_service
from sellerdesk.inventory.schemas import StockAdjust
from sellerdesk.kit.cache import Cache, CacheDep
from sellerdesk.kit.pagination import PageParams
from sellerdesk.kit.types import IdPath
from sellerdesk.orders import service as orders_service
from sellerdesk.orders.schemas import OrderStatusUpdate, RefundCreate
from sellerdesk.orders.state import OrderStatus

router = APIRouter(prefix="/admin")

ORDER_STATUSES: tuple[str, ...] = get_args(OrderStatus)
PRODUCT_FIELDS = ("name", "sku", "price", "stock_quantity", "low_stock_threshold", "description")


# --------------------------------------------------------------------------- orders


@router.get("/orders")
async def orders(
    request: Request,
    session: SessionDep,
    viewer: AdminDep,
    page: PageNumber = 1,
    status: OrderStatus | None = None,
) -> Response:
    """Every order, newest first, optionally of one status."""
    params = PageParams(page, PAGE_SIZE)
    rows, total = await orders_service.list_all(session, params, status)
    return render(
        request,
        "admin/orders.html",
        viewer=viewer,
        title="Orders",
        orders=rows,
        total=total,
        page=page,
        page_size=PAGE_SIZE,
        status=status or "",
        statuses=ORDER_STATUSES,
    )


async def _order_page(
    request: Request,
    session: AsyncSession,
    viewer: Viewer,
    order_id: int,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    order = await orders_service.get_visible(session, viewer.user, order_id)
    return render(
        request,
        "admin/order.html",
        viewer=viewer,
        title=f"Order #{order.id}",
        order=order,
        # One key per rendered refund form: a double submit refunds once (as an Idempotency-Key).
        refund_key=secrets.token_urlsafe(16),
        error=error,
        status_code=status_code,
    )


@router.get("/orders/{order_id}")
async def order(
    order_id: IdPath, request: Request, session: SessionDep, viewer: AdminDep
) -> Response:
    """One order with its lines, addresses, payment and the moves it can make."""
    return await _order_page(request, session, viewer, order_id)


@router.post("/orders/{order_id}/move")
async def move_order(
    order_id: IdPath,
    request: Request,
    session: SessionDep,
    cache: CacheDep,
    viewer: AdminDep,
    form: FormDep,
) -> Response:
    """Ship (with carrier and tracking number), deliver or cancel (`PATCH /admin/orders/{id}`)."""
    try:
        move = OrderStatusUpdate.model_validate(
            {
                "status": form.get("status"),
                "carrier": form.get("carrier") or None,
                "tracking_number": form.get("tracking_number") or None,
            }
        )
    except ValidationError as exc:
        return await _order_page(
            request, session, viewer, order_id, error=first_error(exc), status_code=422
        )
    await orders_service.admin_move(
        session,
        cache,
        viewer.user,
        order_id,
        move.status,
        carrier=move.carrier,
        tracking_number=move.tracking_number,
    )
    return redirect(f"/dashboard/admin/orders/{order_id}", done=move.status)


@router.post("/orders/{order_id}/refund")
async def refund_order(
    order_id: IdPath, request: Request, session: SessionDep, viewer: AdminDep, form: FormDep
) -> Response:
    """Refund in full (no amount) or in part (`POST /payments/refund`)."""
    try:
        body = RefundCreate.model_validate(
            {"order_id": order_id, "amount": form.get("amount") or None}
        )
    except ValidationError as exc:
        return await _order_page(
            request, session, viewer, order_id, error=first_error(exc), status_code=422
        )
    key = str(form.get("refund_key") or "") or None
    await orders_service.refund(
        session, viewer.user, order_id, body.amount, idempotency_key=key and key[:100]
    )
    return redirect(f"/dashboard/admin/orders/{order_id}", done="refunded")


# --------------------------------------------------------------------------- products


@router.get("/products")
async def products(
    request: Request,
    session: SessionDep,
    viewer: AdminDep,
    page: PageNumber = 1,
    q: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    """Products, active or not, newest first; search by name, description or sku."""
    filters = ProductFilters(q=q.strip() or None, include_inactive=True)
    rows, total = await catalog_service.list_products(session, filters, PageParams(page, PAGE_SIZE))
    return render(
        request,
        "admin/products.html",
        viewer=viewer,
        title="Products",
        products=rows,
        total=total,
        page=page,
        page_size=PAGE_SIZE,
        q=q,
        report=None,
    )


def _product_values(form: FormData, *, creating: bool) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in PRODUCT_FIELDS:
        raw = form.get(name)
        text = raw.strip() if isinstance(raw, str) else ""
        if text or (name == "description" and not creating):
            values[name] = text or None
    for name in ("asin", "category_id"):
        raw = form.get(name)
        if isinstance(raw, str):
            values[name] = raw.strip() or None
    values["is_active"] = form.get("is_active") == "on"
    return values


def _product_form(
    request: Request,
    viewer: Viewer,
    *,
    product: Any,
    values: dict[str, Any],
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "admin/product_form.html",
        viewer=viewer,
        title=f"Edit {product.name}" if product else "New product",
        product=product,
        values=values,
        error=error,
        status_code=status_code,
    )


@router.get("/products/new")
async def new_product(request: Request, viewer: AdminDep) -> Response:
    """The form for a new product."""
    return _product_form(
        request, viewer, product=None, values={"is_active": True, "low_stock_threshold": 5}
    )


@router.post("/products/new")
async def create_product(
    request: Request, session: SessionDep, cache: CacheDep, viewer: AdminDep, form: FormDep
) -> Response:
    """`POST /products` from the form."""
    return await _save_product(request, session, cache, viewer, form, None)


@router.get("/products/{product_id}")
async def edit_product(
    product_id: IdPath, request: Request, session: SessionDep, viewer: AdminDep
) -> Response:
    """The form for one product."""
    product = await catalog_service.get_product(session, product_id, admin=True)
    values = {
        name: getattr(product, name)
        for name in (*PRODUCT_FIELDS, "asin", "category_id", "is_active")
    }
    return _product_form(request, viewer, product=product, values=values)


@router.post("/products/{product_id}")
async def update_product(
    product_id: IdPath,
    request: Request,
    session: SessionDep,
    cache: CacheDep,
    viewer: AdminDep,
    form: FormDep,
) -> Response:
    """`PATCH /products/{id}` from the form."""
    return await _save_product(request, session, cache, viewer, form, product_id)


async def _save_product(
    request: Request,
    session: AsyncSession,
    cache: Cache,
    viewer: Viewer,
    form: FormData,
    product_id: int | None,
) -> Response:
    """Create (no id) or change a product through the catalog service; on a refusal the form
    comes back with the error and what was typed."""
    product = None
    if product_id is not None:
        product = await catalog_service.get_product(session, product_id, admin=True)
    values = _product_values(form, creating=product is None)
    try:
        if product_id is None:
            currency = request.app.state.settings.CURRENCY
            body = ProductCreate.model_validate(values)
            saved = await catalog_service.create_product(
                session, cache, currency, body, viewer.user.id
            )
        else:
            changes = ProductUpdate.model_validate(values)
            saved = await catalog_service.update_product(
                session, cache, product_id, changes, viewer.user.id
            )
    except ValidationError as exc:
        error, status = first_error(exc), 422
    except AppError as exc:
        await undo(session, viewer)
        if product_id is not None:
            product = await catalog_service.get_product(session, product_id, admin=True)
        error, status = exc.message, exc.status_code
    else:
        return redirect(f"/dashboard/admin/products/{saved.id}", done="product_saved")
    return _product_form(
        request, viewer, product=product, values=values, error=error, status_code=status
    )


@router.post("/products-import")
async def import_products(
    request: Request, session: SessionDep, cache: CacheDep, viewer: AdminDep, form: FormDep
) -> Response:
    """`POST /products/import`: upsert by sku from a CSV; any bad row and nothing is written."""
    upload = form.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        raise ValidationFailed("Choose a CSV file to import.")
    report = await importer.import_products(
        session, cache, request.app.state.settings.CURRENCY, upload.file, viewer.user.id
    )
    if report.errors:
        await undo(session, viewer)
    rows, total = await catalog_service.list_products(
        session, ProductFilters(include_inactive=True), PageParams(1, PAGE_SIZE)
    )
    return render(
        request,
        "admin/products.html",
        viewer=viewer,
        title="Products",
        status_code=422 if report.errors else 200,
        products=rows,
        total=total,
        page=1,
        page_size=PAGE_SIZE,
        q="",
        report=report,
    )


# --------------------------------------------------------------------------- stock


@router.get("/low-stock")
async def low_stock(
    request: Request, session: SessionDep, viewer: AdminDep, page: PageNumber = 1
) -> Response:
    """Active products at or below their threshold, emptiest first, each with an adjust form."""
    rows, total = await inventory_service.low_stock(session, PageParams(page, PAGE_SIZE))
    return render(
        request,
        "admin/low_stock.html",
        viewer=viewer,
        title="Low stock",
        products=rows,
        total=total,
        page=page,
        page_size=PAGE_SIZE,
    )


@router.post("/low-stock/{product_id}/adjust")
async def adjust_stock(
    product_id: IdPath, session: SessionDep, cache: CacheDep, viewer: AdminDep, form: FormDep
) -> Response:
    """`POST /admin/inventory/{id}/adjust`: add or remove stock, with a reason."""
    try:
        body = StockAdjust.model_validate(
            {
                "delta": form.get("delta"),
                "reason": form.get("reason") or "adjusted in the dashboard",
            }
        )
    except ValidationError as exc:
        raise ValidationFailed(first_error(exc)) from exc
    await inventory_service.adjust(session, cache, viewer.user, product_id, body.delta, body.reason)
    return redirect("/dashboard/admin/low-stock", done="stock_adjusted")

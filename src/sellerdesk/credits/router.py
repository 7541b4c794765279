"""Credit routes: balance, ledger, packs, pricing, and the admin's grants, packs and prices."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request

from sellerdesk.apikeys.dependencies import Payer
from sellerdesk.auth.dependencies import AdminUser, CurrentUser
from sellerdesk.credits import alerts, pricing, purchases, service
from sellerdesk.credits.pricing import PriceBook, price_book
from sellerdesk.credits.schemas import (
    CreditAlertSettings,
    CreditAlertUpdate,
    CreditBalance,
    GrantCreate,
    GrantResult,
    LedgerEntry,
    PackAdmin,
    PackCreate,
    PackPublic,
    PackUpdate,
    PricePublic,
    PriceUpdate,
    PurchaseConfirmed,
    PurchaseCreate,
    PurchasePublic,
    PurchaseStarted,
    UsageDay,
    UsageReport,
)
from sellerdesk.db import SessionDep
from sellerdesk.kit.dates import DayRangeDep
from sellerdesk.kit.idempotency import client_key, idempotent
from sellerdesk.kit.openapi import errors
from sellerdesk.kit.pagination import Page, PageDep
from sellerdesk.kit.types import IdPath

public = APIRouter(prefix="/credits", tags=["credits"])
admin = APIRouter(prefix="/admin/credits", tags=["credits", "admin"])

PriceBookDep = Annotated[PriceBook, Depends(price_book)]
EndpointPath = Annotated[str, Path(pattern=r"^[a-z0-9_]{1,100}$")]


@public.get("", response_model=CreditBalance, responses=errors(401, 403))
async def read_balance(session: SessionDep, payer: Payer) -> CreditBalance:
    """The caller's balance and lifetime totals."""
    return CreditBalance.model_validate(await service.balance_of(session, payer.user_id))


@public.get("/transactions", response_model=Page[LedgerEntry], responses=errors(401, 403, 422))
async def list_transactions(
    session: SessionDep, payer: Payer, params: PageDep
) -> Page[LedgerEntry]:
    """The caller's ledger, newest first."""
    rows, total = await service.transactions(session, payer.user_id, params)
    return Page.of([LedgerEntry.model_validate(r) for r in rows], total, params)


@public.get("/usage", response_model=UsageReport, responses=errors(401, 403, 422))
async def read_usage(session: SessionDep, payer: Payer, days: DayRangeDep) -> UsageReport:
    """The caller's paid calls and net credits per UTC day and endpoint (default: 30 days)."""
    rows = await service.usage(session, payer.user_id, days)
    return UsageReport(
        first=days.first,
        last=days.last,
        items=[
            UsageDay(date=r.day, endpoint=r.endpoint, calls=r.calls, credits=r.credits)
            for r in rows
        ],
    )


def _alert_settings(settings: alerts.AlertSettings) -> CreditAlertSettings:
    return CreditAlertSettings(
        enabled=settings.enabled,
        threshold=settings.threshold,
        default_threshold=settings.default_threshold,
        effective_threshold=settings.effective_threshold,
    )


@public.get("/alerts", response_model=CreditAlertSettings, responses=errors(401, 403))
async def read_alerts(session: SessionDep, user: CurrentUser) -> CreditAlertSettings:
    """The caller's low-balance warning settings."""
    return _alert_settings(await alerts.settings_of(session, user.id))


@public.put("/alerts", response_model=CreditAlertSettings, responses=errors(401, 403, 422))
async def update_alerts(
    body: CreditAlertUpdate, session: SessionDep, user: CurrentUser
) -> CreditAlertSettings:
    """Set the caller's low-balance warning (on/off, and a threshold or the default)."""
    updated = await alerts.update(session, user.id, enabled=body.enabled, threshold=body.threshold)
    return _alert_settings(updated)


@public.get("/packs", response_model=list[PackPublic], responses=errors(500))
async def list_packs(session: SessionDep) -> list[PackPublic]:
    """Credit packs on sale."""
    return [PackPublic.model_validate(p) for p in await pricing.active_packs(session)]


@public.get("/pricing", response_model=list[PricePublic], responses=errors(500))
async def list_pricing(session: SessionDep) -> list[PricePublic]:
    """Cost in credits of each paid endpoint."""
    return [PricePublic.model_validate(p) for p in await pricing.prices(session)]


@public.post(
    "/purchase",
    response_model=PurchaseStarted,
    responses=errors(400, 401, 403, 404, 409, 422, 502, 503),
)
@idempotent
async def purchase_credits(
    body: PurchaseCreate, session: SessionDep, user: CurrentUser, request: Request
) -> PurchaseStarted:
    """Start buying a pack: the payment intent to confirm; credits land once it succeeds."""
    purchase, payment = await purchases.start_purchase(
        session, user_id=user.id, pack_id=body.pack_id, idempotency_key=client_key(request)
    )
    return PurchaseStarted(
        purchase_id=purchase.id,
        client_secret=payment.client_secret,
        payment_intent_id=payment.intent_id,
        credits=purchase.credits,
        amount=payment.amount,
        currency=payment.currency,
        status=purchase.status,
    )


@public.post(
    "/purchases/{purchase_id}/confirm",
    response_model=PurchaseConfirmed,
    responses=errors(400, 401, 403, 404, 422, 502),
)
async def confirm_purchase(
    purchase_id: IdPath, session: SessionDep, user: CurrentUser
) -> PurchaseConfirmed:
    """Ask the provider whether the purchase is paid; its credits land once when it is."""
    purchase, payment = await purchases.confirm_purchase(
        session, user_id=user.id, purchase_id=purchase_id
    )
    summary = await service.balance_of(session, user.id)
    public = PurchasePublic(
        id=purchase.id,
        pack_id=purchase.pack_id,
        credits=purchase.credits,
        status=purchase.status,
        payment_intent_id=payment.intent_id,
        amount=payment.amount,
        currency=payment.currency,
        created_at=purchase.created_at,
    )
    return PurchaseConfirmed(message="Payment succeeded.", purchase=public, balance=summary.balance)


@admin.post("/grant", response_model=GrantResult, responses=errors(401, 403, 404, 409, 422))
@idempotent
async def grant_credits(body: GrantCreate, session: SessionDep, user: AdminUser) -> GrantResult:
    """Give (or, with a negative amount, take) credits; the balance never goes below 0."""
    entry, balance = await service.grant(
        session, user_id=body.user_id, amount=body.amount, reason=body.reason, admin_id=user.id
    )
    return GrantResult(
        **LedgerEntry.model_validate(entry).model_dump(), user_id=entry.user_id, balance=balance
    )


@admin.get("/packs", response_model=list[PackAdmin], responses=errors(401, 403))
async def list_all_packs(session: SessionDep, _: AdminUser) -> list[PackAdmin]:
    """Every pack, on sale or not."""
    return [PackAdmin.model_validate(p) for p in await pricing.all_packs(session)]


@admin.post("/packs", status_code=201, response_model=PackAdmin, responses=errors(401, 403, 422))
async def create_pack(
    body: PackCreate, session: SessionDep, _: AdminUser, request: Request
) -> PackAdmin:
    """Put a new pack on sale."""
    values = body.model_dump()
    values["currency"] = (body.currency or request.app.state.settings.CURRENCY).lower()
    return PackAdmin.model_validate(await pricing.create_pack(session, values))


@admin.patch("/packs/{pack_id}", response_model=PackAdmin, responses=errors(401, 403, 404, 422))
async def update_pack(
    pack_id: IdPath, body: PackUpdate, session: SessionDep, _: AdminUser
) -> PackAdmin:
    """Change a pack (or take it off sale with `is_active: false`)."""
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    if "currency" in changes:
        changes["currency"] = changes["currency"].lower()
    return PackAdmin.model_validate(await pricing.update_pack(session, pack_id, changes))


@admin.patch(
    "/pricing/{endpoint}", response_model=PricePublic, responses=errors(401, 403, 404, 422)
)
async def update_price(
    endpoint: EndpointPath, body: PriceUpdate, session: SessionDep, _: AdminUser, book: PriceBookDep
) -> PricePublic:
    """Change what one paid endpoint costs."""
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    return PricePublic.model_validate(await pricing.update_price(session, book, endpoint, changes))


router = APIRouter()
router.include_router(public)
router.include_router(admin)

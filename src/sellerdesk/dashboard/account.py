"""The API customer's pages: balance and usage, transactions, API keys, buying credits, the
try-it form, and the FBA inventory report upload. Every action calls the service the API
route calls; the try-it lookups are charged through the same meter."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import UploadFile

from sellerdesk.amazon import service as amazon_service
from sellerdesk.amazon.dependencies import AmazonSourceDep
from sellerdesk.amazon.schemas import AsinQuery, FnskuQuery
from sellerdesk.apikeys import service as apikeys_service
from sellerdesk.apikeys.schemas import ApiKeyCreate
from sellerdesk.apikeys.service import PayerIdentity
from sellerdesk.credits import pricing, purchases
from sellerdesk.credits import service as credits_service
from sellerdesk.credits.metering import Meter
from sellerdesk.credits.pricing import ASIN_LOOKUP, FNSKU_CONVERSION
from sellerdesk.dashboard.charts import bar_chart
from sellerdesk.dashboard.rendering import credits, redirect, render
from sellerdesk.dashboard.security import FormDep, Viewer, ViewerDep, undo
from sellerdesk.db import SessionDep
from sellerdesk.errors import AppError, NotFound
from sellerdesk.kit.dates import day_range
from sellerdesk.kit.pagination import PageParams
from sellerdesk.kit.types import IdPath

router = APIRouter()

PageNumber = Annotated[int, Query(ge=1, le=1_000_000)]
PAGE_SIZE = 25
ENDPOINT_NAMES = {ASIN_LOOKUP: "ASIN lookup", FNSKU_CONVERSION: "FNSKU conversion"}


def first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error.get("loc", ()))
    return f"{field}: {error['msg']}" if field else str(error["msg"])


# --------------------------------------------------------------------------- usage


@router.get("/usage")
async def usage(
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    first: Annotated[str | None, Query(alias="from", max_length=10)] = None,
    last: Annotated[str | None, Query(alias="to", max_length=10)] = None,
) -> Response:
    """Balance, and credits per day by endpoint (`GET /credits/usage`) as a chart and a table."""
    error, status = None, 200
    try:
        days = day_range(first, last)
    except AppError as exc:
        days, error, status = day_range(None, None), exc.message, exc.status_code
    rows = await credits_service.usage(session, viewer.user.id, days)
    balance = await credits_service.balance_of(session, viewer.user.id)
    endpoints = [p.endpoint for p in await pricing.prices(session)]
    per_day = {(r.day, r.endpoint): r.credits for r in rows}
    chart = bar_chart(
        "usage",
        "Credits spent per day, by endpoint",
        days.days,
        [
            (ENDPOINT_NAMES.get(e, e), [per_day.get((d, e), 0) for d in days.days])
            for e in endpoints
        ],
        lambda value: credits(int(value)),
        "credits",
    )
    return render(
        request,
        "account/usage.html",
        viewer=viewer,
        title="Usage",
        status_code=status,
        error=error,
        balance=balance,
        days=days,
        rows=rows,
        chart=chart,
        names=ENDPOINT_NAMES,
    )


@router.get("/transactions")
async def transactions(
    request: Request, session: SessionDep, viewer: ViewerDep, page: PageNumber = 1
) -> Response:
    """The ledger, newest first (`GET /credits/transactions`)."""
    params = PageParams(page, PAGE_SIZE)
    entries, total = await credits_service.transactions(session, viewer.user.id, params)
    return render(
        request,
        "account/transactions.html",
        viewer=viewer,
        title="Transactions",
        entries=entries,
        page=page,
        page_size=PAGE_SIZE,
        total=total,
        balance=await credits_service.balance_of(session, viewer.user.id),
    )


# --------------------------------------------------------------------------- API keys


async def _keys_page(
    request: Request,
    session: AsyncSession,
    viewer: Viewer,
    *,
    new_key: Any = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    keys, _ = await apikeys_service.list_keys(session, viewer.user.id, PageParams(1, 100))
    return render(
        request,
        "account/keys.html",
        viewer=viewer,
        title="API keys",
        keys=keys,
        new_key=new_key,
        error=error,
        status_code=status_code,
    )


@router.get("/keys")
async def keys(request: Request, session: SessionDep, viewer: ViewerDep) -> Response:
    """The live API keys (never their secrets)."""
    return await _keys_page(request, session, viewer)


@router.post("/keys")
async def create_key(
    request: Request, session: SessionDep, viewer: ViewerDep, form: FormDep
) -> Response:
    """Create a key and show it, this once."""
    try:
        body = ApiKeyCreate.model_validate({"name": form.get("name")})
        row, key = await apikeys_service.create(
            session,
            viewer.user.id,
            body.name,
            max_keys=request.app.state.settings.API_KEYS_PER_USER,
        )
    except ValidationError as exc:
        return await _keys_page(request, session, viewer, error=first_error(exc), status_code=422)
    except AppError as exc:
        await undo(session, viewer)
        return await _keys_page(
            request, session, viewer, error=exc.message, status_code=exc.status_code
        )
    return await _keys_page(request, session, viewer, new_key={"row": row, "key": key})


@router.post("/keys/{key_id}/revoke")
async def revoke_key(
    key_id: IdPath, session: SessionDep, viewer: ViewerDep, _: FormDep
) -> Response:
    """Revoke a key: it stops working at once."""
    await apikeys_service.revoke(session, viewer.user.id, key_id)
    return redirect("/dashboard/keys", done="key_revoked")


# --------------------------------------------------------------------------- buying credits


@router.get("/credits")
async def packs(request: Request, session: SessionDep, viewer: ViewerDep) -> Response:
    """Packs on sale, and the balance."""
    return render(
        request,
        "account/credits.html",
        viewer=viewer,
        title="Buy credits",
        packs=await pricing.active_packs(session),
        balance=await credits_service.balance_of(session, viewer.user.id),
        provider=request.app.state.settings.payment_provider,
    )


@router.post("/credits/buy")
async def buy(request: Request, session: SessionDep, viewer: ViewerDep, form: FormDep) -> Response:
    """Start buying a pack (`POST /credits/purchase`); the payment is confirmed on the next
    page (the manual gateway), or on Stripe's hosted Checkout when Stripe is configured."""
    pack_id = str(form.get("pack_id") or "")
    if not pack_id.isdigit() or not 0 < int(pack_id) < 2**63:
        raise NotFound("Credit pack not found.")
    settings = request.app.state.settings
    if settings.payment_provider == "stripe":
        base = str(request.base_url).rstrip("/")
        url = await purchases.start_checkout(
            session,
            user_id=viewer.user.id,
            pack_id=int(pack_id),
            success_url=f"{base}/dashboard/credits?done=purchased",
            cancel_url=f"{base}/dashboard/credits?done=purchase_cancelled",
        )
        return redirect(url)
    purchase, _ = await purchases.start_purchase(
        session, user_id=viewer.user.id, pack_id=int(pack_id)
    )
    return redirect(f"/dashboard/credits/purchases/{purchase.id}")


@router.get("/credits/purchases/{purchase_id}")
async def purchase(
    purchase_id: IdPath, request: Request, session: SessionDep, viewer: ViewerDep
) -> Response:
    """A purchase and its payment, with the button that pays it (manual gateway)."""
    bought, payment = await purchases.own_purchase(session, viewer.user.id, purchase_id)
    return render(
        request,
        "account/purchase.html",
        viewer=viewer,
        title=f"Credit purchase #{bought.id}",
        purchase=bought,
        payment=payment,
    )


@router.post("/credits/purchases/{purchase_id}/confirm")
async def confirm_purchase(
    purchase_id: IdPath, session: SessionDep, viewer: ViewerDep, _: FormDep
) -> Response:
    """Pay (`POST /credits/purchases/{id}/confirm`): the credits land once."""
    await purchases.confirm_purchase(session, user_id=viewer.user.id, purchase_id=purchase_id)
    return redirect("/dashboard/credits", done="purchased")


# --------------------------------------------------------------------------- try it


async def _try_page(
    request: Request,
    session: AsyncSession,
    viewer: Viewer,
    status_code: int = 200,
    **context: Any,
) -> Response:
    values = {"kind": "asin", "code": "", "marketplace": "US", "result": None, "charged": None}
    return render(
        request,
        "account/try.html",
        viewer=viewer,
        title="Try it",
        status_code=status_code,
        prices=await pricing.prices(session),
        balance=await credits_service.balance_of(session, viewer.user.id),
        **{**values, **context},
    )


@router.get("/try")
async def try_form(request: Request, session: SessionDep, viewer: ViewerDep) -> Response:
    """ASIN lookup and FNSKU conversion, charged like the API."""
    return await _try_page(request, session, viewer)


@router.post("/try")
async def try_lookup(
    request: Request,
    response: Response,
    session: SessionDep,
    viewer: ViewerDep,
    form: FormDep,
    source: AmazonSourceDep,
) -> Response:
    """Run one lookup through the paid routes' meter (rate limit, repeat window, charge)."""
    kind = "fnsku" if form.get("kind") == "fnsku" else "asin"
    code = str(form.get("code") or "")[:64]
    marketplace = str(form.get("marketplace") or "US")[:8]
    shown: dict[str, Any] = {"kind": kind, "code": code, "marketplace": marketplace}
    meter = Meter(request, response, session, PayerIdentity(user_id=viewer.user.id))
    result: Any
    try:
        if kind == "asin":
            asin = AsinQuery.model_validate({"asin": code, "marketplace": marketplace})
            source.check_marketplace(asin.marketplace)
            result = await meter.single(
                ASIN_LOOKUP,
                f"{asin.marketplace}:{asin.asin}",
                lambda: amazon_service.lookup_asin(
                    session, source, viewer.user.id, asin.asin, asin.marketplace
                ),
                not_found=f"ASIN {asin.asin} is not known in marketplace {asin.marketplace}.",
            )
        else:
            fnsku = FnskuQuery.model_validate({"fnsku": code})
            result = await meter.single(
                FNSKU_CONVERSION,
                fnsku.fnsku,
                lambda: amazon_service.convert_fnsku(session, source, viewer.user.id, fnsku.fnsku),
                not_found=f"FNSKU {fnsku.fnsku} is not known.",
            )
    except ValidationError as exc:
        return await _try_page(request, session, viewer, 422, error=first_error(exc), **shown)
    except AppError as exc:
        await undo(session, viewer)
        charged = meter.headers.get("X-Credits-Charged", "0")
        return await _try_page(
            request, session, viewer, exc.status_code, error=exc.message, charged=charged, **shown
        )
    charged = meter.headers.get("X-Credits-Charged", "0")
    return await _try_page(request, session, viewer, result=result, charged=charged, **shown)


# --------------------------------------------------------------------------- inventory report


@router.get("/inventory-report")
async def report_form(request: Request, viewer: ViewerDep) -> Response:
    """Upload an FBA inventory report (free) to feed FNSKU conversions."""
    return render(
        request, "account/report.html", viewer=viewer, title="Inventory report", report=None
    )


@router.post("/inventory-report")
async def upload_report(
    request: Request, session: SessionDep, viewer: ViewerDep, form: FormDep
) -> Response:
    """`POST /conversion/inventory-report`, from a form."""
    upload = form.get("file")
    title = "Inventory report"
    if not isinstance(upload, UploadFile) or not upload.filename:
        return render(
            request,
            "account/report.html",
            viewer=viewer,
            title=title,
            report=None,
            error="Choose a CSV or TSV file to upload.",
            status_code=422,
        )
    max_bytes: int = request.app.state.settings.AMAZON_REPORT_MAX_BYTES
    try:
        report = await amazon_service.import_inventory_report(
            session, viewer.user.id, upload.file, max_bytes
        )
    except AppError as exc:
        await undo(session, viewer)
        return render(
            request,
            "account/report.html",
            viewer=viewer,
            title=title,
            report=None,
            error=exc.message,
            status_code=exc.status_code,
        )
    return render(request, "account/report.html", viewer=viewer, title=title, report=report)

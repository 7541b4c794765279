"""Amazon data routes: ASIN lookup, FNSKU conversion (single, batch), inventory report upload.

The three lookups are paid routes: each runs its service call inside the credits charge step
(`credits.metering.Meter`: rate limit, repeat window, atomic charge; nothing charged, net,
when nothing is served; one transaction when the source answers from our own database), and
accepts a Bearer token or an `X-API-Key`. A marketplace the source cannot ask (its Amazon
region has no credentials) is refused with 422 before the charge step.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Request, UploadFile

from sellerdesk.amazon import service
from sellerdesk.amazon.dependencies import AmazonSourceDep
from sellerdesk.amazon.schemas import (
    AsinProduct,
    AsinQuery,
    FnskuBatchQuery,
    FnskuBatchResult,
    FnskuQuery,
    FnskuResult,
    InventoryReportResult,
)
from sellerdesk.apikeys.dependencies import Payer
from sellerdesk.credits.metering import MeterDep
from sellerdesk.credits.pricing import ASIN_LOOKUP, FNSKU_CONVERSION
from sellerdesk.db import SessionDep
from sellerdesk.kit.idempotency import idempotent
from sellerdesk.kit.openapi import errors, response_headers

router = APIRouter(tags=["amazon"])

# 401/403 (token or key), 409/422 (Idempotency-Key), 503 and the others a route's build implies
# are added by kit.openapi; these are the charge step's and the lookup's own.
_CHARGED = response_headers(
    200,
    X_Credits_Charged="Credits this call cost (0 for a repeat or a replayed Idempotency-Key).",
    X_Credits_Remaining="The balance after this call.",
    X_RateLimit_Limit="Paid calls allowed per window for this user.",
    X_RateLimit_Remaining="Paid calls left in the current window.",
)
PAID_ERRORS = {**_CHARGED, **errors(402, 404, 429, 502, 503, 504)}
BATCH_ERRORS = {**_CHARGED, **errors(402, 429, 502, 503, 504)}


@router.post("/product/asin", response_model=AsinProduct, responses=PAID_ERRORS)
@idempotent(user_param="meter")
async def lookup_asin(
    body: AsinQuery, session: SessionDep, meter: MeterDep, source: AmazonSourceDep
) -> AsinProduct:
    """Product data for one ASIN in one marketplace; costs credits (see /credits/pricing)."""
    source.check_marketplace(body.marketplace)
    return await meter.single(
        ASIN_LOOKUP,
        f"{body.marketplace}:{body.asin}",
        lambda: service.lookup_asin(session, source, meter.user_id, body.asin, body.marketplace),
        not_found=f"ASIN {body.asin} is not known in marketplace {body.marketplace}.",
        upstream=source.calls_upstream,
    )


@router.post("/conversion/fnsku", response_model=FnskuResult, responses=PAID_ERRORS)
@idempotent(user_param="meter")
async def convert_fnsku(
    body: FnskuQuery, session: SessionDep, meter: MeterDep, source: AmazonSourceDep
) -> FnskuResult:
    """The ASIN behind one FNSKU; costs credits when found."""
    return await meter.single(
        FNSKU_CONVERSION,
        body.fnsku,
        lambda: service.convert_fnsku(session, source, meter.user_id, body.fnsku),
        not_found=f"FNSKU {body.fnsku} is not known.",
        upstream=source.calls_upstream,
    )


@router.post("/conversion/fnsku/batch", response_model=FnskuBatchResult, responses=BATCH_ERRORS)
@idempotent(user_param="meter")
async def convert_fnsku_batch(
    body: FnskuBatchQuery, session: SessionDep, meter: MeterDep, source: AmazonSourceDep
) -> FnskuBatchResult:
    """The ASINs behind up to 1,000 FNSKUs; one charge per found code, in one ledger entry."""
    results, charged = await meter.batch(
        FNSKU_CONVERSION,
        lambda: service.convert_batch(session, source, meter.user_id, body.fnskus),
        lambda item: item.fnsku if item.status == "found" else None,
    )
    return FnskuBatchResult(results=results, charged=charged)


@router.post(
    "/conversion/inventory-report",
    response_model=InventoryReportResult,
    responses=errors(413, 422),
)
async def upload_inventory_report(
    file: Annotated[UploadFile, File(description="FBA inventory report, CSV or TSV.")],
    request: Request,
    session: SessionDep,
    payer: Payer,
) -> InventoryReportResult:
    """Feed the caller's FNSKU ↔ ASIN mappings from an FBA inventory report; free.

    Accepts a bearer token or an `X-API-Key`, like the other data routes.
    """
    max_bytes: int = request.app.state.settings.AMAZON_REPORT_MAX_BYTES
    return await service.import_inventory_report(session, payer.user_id, file.file, max_bytes)

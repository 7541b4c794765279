"""Amazon data routes: ASIN lookup, FNSKU conversion (single, batch), inventory report upload.

The three lookups are paid routes; until the credits step lands they run for any signed-in user
without charging (`charged` = 0). Each route is one service call, so adding the charge is a
change of the dependency and of the lines around that call.
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
from sellerdesk.auth.dependencies import CurrentUser
from sellerdesk.db import SessionDep
from sellerdesk.errors import NotFound
from sellerdesk.kit.openapi import errors

router = APIRouter(tags=["amazon"])

LOOKUP_ERRORS = errors(401, 404, 422, 502, 504)


@router.post("/product/asin", response_model=AsinProduct, responses=LOOKUP_ERRORS)
async def lookup_asin(
    body: AsinQuery, session: SessionDep, user: CurrentUser, source: AmazonSourceDep
) -> AsinProduct:
    """Product data for one ASIN in one marketplace."""
    product = await service.lookup_asin(session, source, user.id, body.asin, body.marketplace)
    if product is None:
        raise NotFound(f"ASIN {body.asin} is not known in marketplace {body.marketplace}.")
    return product


@router.post("/conversion/fnsku", response_model=FnskuResult, responses=LOOKUP_ERRORS)
async def convert_fnsku(
    body: FnskuQuery, session: SessionDep, user: CurrentUser, source: AmazonSourceDep
) -> FnskuResult:
    """The ASIN behind one FNSKU."""
    result = await service.convert_fnsku(session, source, user.id, body.fnsku)
    if result is None:
        raise NotFound(f"FNSKU {body.fnsku} is not known.")
    return result


@router.post(
    "/conversion/fnsku/batch", response_model=FnskuBatchResult, responses=errors(401, 422, 502, 504)
)
async def convert_fnsku_batch(
    body: FnskuBatchQuery, session: SessionDep, user: CurrentUser, source: AmazonSourceDep
) -> FnskuBatchResult:
    """The ASINs behind up to 1,000 FNSKUs, each found, not_found or invalid."""
    results = await service.convert_batch(session, source, user.id, body.fnskus)
    return FnskuBatchResult(results=results, charged=0)


@router.post(
    "/conversion/inventory-report",
    response_model=InventoryReportResult,
    responses=errors(401, 413, 422),
)
async def upload_inventory_report(
    file: Annotated[UploadFile, File(description="FBA inventory report, CSV or TSV.")],
    request: Request,
    session: SessionDep,
    user: CurrentUser,
) -> InventoryReportResult:
    """Feed the caller's FNSKU ↔ ASIN mappings from an FBA inventory report; free."""
    max_bytes: int = request.app.state.settings.AMAZON_REPORT_MAX_BYTES
    return await service.import_inventory_report(session, user.id, file.file, max_bytes)

"""The Amazon data layer's rules; the functions the paid routes call.

Signatures (the metering step wraps each call; none of them commits, the request scope does):

    async def lookup_asin(session, source, user_id, asin, marketplace) -> AsinProduct | None
    async def convert_fnsku(session, source, user_id, fnsku) -> FnskuResult | None
    async def convert_batch(session, source, user_id, fnskus) -> list[BatchItem]
    def found_codes(items) -> set[str]            # distinct found codes: what a batch charges
    async def import_inventory_report(session, user_id, file, max_bytes) -> InventoryReportResult

- `source` is `app.state.amazon` (an `AmazonSource`; the `AmazonSourceDep` dependency gives it).
- `asin`/`fnsku`/`marketplace` are already normalised and valid (the request schemas see to it);
  `fnskus` of a batch are raw strings: each is normalised and checked here (`invalid` status).
- None means unknown → 404, not charged. Amazon failing raises `UpstreamError`
  (`UpstreamUnavailable` 502 / `UpstreamTimeout` 504), never charged; nothing else is raised
  by a lookup.
- FNSKUs resolve from the user's own mappings first, then from the source. A batch resolves each
  distinct code once; duplicates repeat the same item in their input positions.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any, BinaryIO

from sqlalchemy.ext.asyncio import AsyncSession

from sellerdesk.amazon import repository
from sellerdesk.amazon.identifiers import normalize, parse_fnsku
from sellerdesk.amazon.providers import AmazonSource
from sellerdesk.amazon.reports import ReportRow, RowError, read_report
from sellerdesk.amazon.schemas import (
    AsinProduct,
    BatchItem,
    FnskuResult,
    InventoryReportResult,
    ReportRowError,
)

UPSERT_CHUNK = 500
MAX_REPORTED_ERRORS = 1000


async def lookup_asin(
    session: AsyncSession, source: AmazonSource, user_id: int, asin: str, marketplace: str
) -> AsinProduct | None:
    """Product data for a valid, normalised ASIN; None when nobody knows it."""
    return await source.product(session, user_id, asin, marketplace)


async def convert_fnsku(
    session: AsyncSession, source: AmazonSource, user_id: int, fnsku: str
) -> FnskuResult | None:
    """The ASIN behind a valid, normalised FNSKU; None when it is unknown."""
    return (await _resolve(session, source, user_id, [fnsku])).get(fnsku)


async def convert_batch(
    session: AsyncSession, source: AmazonSource, user_id: int, fnskus: Sequence[str]
) -> list[BatchItem]:
    """One item per input code, in input order: found, not_found or invalid."""
    codes = [parse_fnsku(raw) for raw in fnskus]
    distinct = list(dict.fromkeys(code for code in codes if code is not None))
    found = await _resolve(session, source, user_id, distinct)
    # Plain constructors: pydantic-core checks three plain fields faster than
    # `model_construct` skips them (its Python loop was a third of a batch's time).
    item = BatchItem
    items: list[BatchItem] = []
    for raw, code in zip(fnskus, codes, strict=True):
        if code is None:
            items.append(item(fnsku=normalize(raw), asin=None, status="invalid"))
        elif (result := found.get(code)) is not None:
            items.append(item(fnsku=code, asin=result.asin, status="found"))
        else:
            items.append(item(fnsku=code, asin=None, status="not_found"))
    return items


def found_codes(items: Iterable[BatchItem]) -> set[str]:
    """The distinct codes a batch found: a batch is charged once per element."""
    return {item.fnsku for item in items if item.status == "found"}


async def _resolve(
    session: AsyncSession, source: AmazonSource, user_id: int, codes: Sequence[str]
) -> dict[str, FnskuResult]:
    mappings = await repository.mappings_by_fnsku(session, user_id, codes)
    found = {
        code: FnskuResult(
            fnsku=code,
            asin=m.asin,
            sku=m.sku,
            skus=[m.sku] if m.sku else [],
            title=m.title,
            source="inventory_report",
        )
        for code, m in mappings.items()
    }
    rest = [code for code in codes if code not in found]
    if rest:
        found.update(await source.fnskus(session, user_id, rest))
    return found


async def import_inventory_report(
    session: AsyncSession, user_id: int, file: BinaryIO, max_bytes: int
) -> InventoryReportResult:
    """Upsert the user's mappings from an FBA inventory report; bad rows are reported, not kept.

    All rows land in the caller's one transaction. When a FNSKU appears on several rows the
    last one wins and it counts once.
    """
    skipped = 0
    errors: list[ReportRowError] = []
    seen: set[str] = set()
    chunk: dict[str, dict[str, Any]] = {}
    rows = read_report(file, max_bytes)
    first = next(rows, None)  # the header is checked (422) before anything is locked
    # With the user's imports serialised, the count difference is exactly what was created.
    await repository.lock_user_mappings(session, user_id)
    before = await repository.count_mappings(session, user_id)
    for row in itertools.chain([first] if first is not None else [], rows):
        if isinstance(row, RowError):
            skipped += 1
            if len(errors) < MAX_REPORTED_ERRORS:
                errors.append(ReportRowError(row=row.line, message=row.message))
            continue
        seen.add(row.fnsku)
        _add(chunk, row)
        if len(chunk) >= UPSERT_CHUNK:
            await repository.upsert_mappings(session, user_id, list(chunk.values()))
            chunk.clear()
    await repository.upsert_mappings(session, user_id, list(chunk.values()))
    created = await repository.count_mappings(session, user_id) - before
    return InventoryReportResult(
        created=created, updated=len(seen) - created, skipped=skipped, errors=errors
    )


def _add(chunk: dict[str, dict[str, Any]], row: ReportRow) -> None:
    chunk[row.fnsku] = {"fnsku": row.fnsku, "asin": row.asin, "sku": row.sku, "title": row.title}

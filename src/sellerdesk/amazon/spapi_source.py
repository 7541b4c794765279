"""The `sp-api` source: Catalog Items 2022-04-01 for ASINs, FBA Inventory summaries for FNSKUs.

Each marketplace is asked in its own selling region (host and seller credentials of that region,
see `regions.py`); a marketplace whose region has no credentials is refused with a 422 before
anything is charged (`check_marketplace`).

Answers are cached (`app.state.cache`, Redis when configured) for `AMAZON_CACHE_TTL_SECONDS`;
"not found" for `AMAZON_NOT_FOUND_TTL_SECONDS`; failures never. A cache hit costs no quota.
FNSKUs resolve against the seller's whole FBA inventory of `SPAPI_INVENTORY_MARKETPLACE`, read page
by page once per TTL (one reader at a time per process) and cached as one FNSKU table.

One FNSKU on several SKUs (Amazon's own sandbox data has it): the answer is deterministic, not
whichever row came last. The SKUs are ordered by code point (Python's string order, the same in
every process and for every page order); the first one gives `sku` and the ASIN (its title, else
the next SKU's), and `skus` lists them all in that order.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import structlog
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from sellerdesk.amazon.errors import RegionNotConfigured
from sellerdesk.amazon.identifiers import normalize
from sellerdesk.amazon.quota import Pacer
from sellerdesk.amazon.regions import MARKETPLACES, REGION_NAMES
from sellerdesk.amazon.schemas import AsinProduct, Dimensions, FnskuResult, Measure, SalesRank
from sellerdesk.amazon.spapi_client import SpApiClient
from sellerdesk.config import Settings
from sellerdesk.kit.cache import Cache
from sellerdesk.models.base import utcnow

log = structlog.get_logger(__name__)

CATALOG_DATA = "summaries,images,attributes,salesRanks,dimensions"
"""The datasets `parse_catalog_item` reads (Amazon sends only what `includedData` names)."""
MAX_INVENTORY_PAGES = 10_000
_NOT_FOUND = b"null"


class SpApiSource:
    name = "sp-api"
    calls_upstream = True

    def __init__(self, settings: Settings, cache: Cache, redis: Redis | None = None) -> None:
        self.settings = settings
        self.cache = cache
        pacer = Pacer(
            settings.SPAPI_DEFAULT_RATE,
            settings.SPAPI_DEFAULT_BURST,
            redis,
            f"{settings.REDIS_KEY_PREFIX}:spapi:quota",
        )
        self.client = SpApiClient(settings, pacer)
        self._inventory_lock = asyncio.Lock()

    async def aclose(self) -> None:
        await self.client.aclose()

    def check_marketplace(self, marketplace: str) -> None:
        """422 when no credentials are configured for the marketplace's region."""
        region = MARKETPLACES[marketplace].region
        if not self.client.serves(region):
            raise RegionNotConfigured(
                marketplace, region, REGION_NAMES[region], f"SPAPI_{region}_REFRESH_TOKEN"
            )

    async def product(
        self, session: AsyncSession, user_id: int, asin: str, marketplace: str
    ) -> AsinProduct | None:
        self.check_marketplace(marketplace)
        key = f"{await self.cache.namespace('amazon')}:catalog:{marketplace}:{asin}"
        cached = await self.cache.get(key)
        if cached is not None:
            return None if cached == _NOT_FOUND else AsinProduct.model_validate_json(cached)
        place = MARKETPLACES[marketplace]
        body = await self.client.get(
            place.region,
            "getCatalogItem",
            f"/catalog/2022-04-01/items/{asin}",
            {"marketplaceIds": place.marketplace_id, "includedData": CATALOG_DATA},
        )
        if not isinstance(body, dict):
            await self.cache.set(key, _NOT_FOUND, self.settings.AMAZON_NOT_FOUND_TTL_SECONDS)
            return None
        product = parse_catalog_item(body, asin, marketplace, place.marketplace_id, utcnow())
        await self.cache.set(
            key, product.model_dump_json().encode(), self.settings.AMAZON_CACHE_TTL_SECONDS
        )
        return product

    async def fnskus(
        self, session: AsyncSession, user_id: int, codes: Collection[str]
    ) -> dict[str, FnskuResult]:
        if not codes:
            return {}
        inventory = await self._inventory()
        found: dict[str, FnskuResult] = {}
        for code in codes:
            entry = inventory.get(code)
            if isinstance(entry, dict):
                found[code] = FnskuResult(
                    fnsku=code,
                    asin=entry["asin"],
                    sku=entry.get("sku"),
                    skus=list(entry.get("skus") or []),
                    title=entry.get("title"),
                    source="sp-api",
                )
        return found

    async def _inventory(self) -> dict[str, Any]:
        marketplace = self.settings.SPAPI_INVENTORY_MARKETPLACE
        key = f"{await self.cache.namespace('amazon')}:inventory:v2:{marketplace}"
        cached = await self.cache.get(key)
        if cached is not None:
            return _loads_inventory(cached)
        async with self._inventory_lock:
            cached = await self.cache.get(key)
            if cached is not None:
                return _loads_inventory(cached)
            inventory = await self._read_inventory(marketplace)
            await self.cache.set(
                key, json.dumps(inventory).encode(), self.settings.AMAZON_CACHE_TTL_SECONDS
            )
            return inventory

    async def _read_inventory(self, marketplace: str) -> dict[str, Any]:
        place = MARKETPLACES[marketplace]
        rows: list[InventoryRow] = []
        params = {
            "granularityType": "Marketplace",
            "granularityId": place.marketplace_id,
            "marketplaceIds": place.marketplace_id,
            "details": "false",
        }
        next_token: str | None = None
        for _ in range(MAX_INVENTORY_PAGES):
            page_params = {**params, "nextToken": next_token} if next_token else params
            body = await self.client.get(
                place.region, "getInventorySummaries", "/fba/inventory/v1/summaries", page_params
            )
            page, next_token = parse_inventory_page(body)
            rows.extend(page)
            if not next_token:
                break
        else:
            log.warning("spapi_inventory_truncated", pages=MAX_INVENTORY_PAGES)
        table = inventory_table(rows)
        log.info("spapi_inventory_read", rows=len(rows), fnskus=len(table))
        return table


def _loads_inventory(raw: bytes) -> dict[str, Any]:
    value = json.loads(raw)
    return value if isinstance(value, dict) else {}


# --------------------------------------------------------------------------- inventory


@dataclass(frozen=True)
class InventoryRow:
    """One inventory summary: a seller SKU and the FNSKU/ASIN it is stocked under."""

    fnsku: str
    asin: str
    sku: str | None
    title: str | None


def parse_inventory_page(body: Any) -> tuple[list[InventoryRow], str | None]:
    """The rows of one `getInventorySummaries` page and its `nextToken` (None: last page)."""
    body = body if isinstance(body, dict) else {}
    payload = body.get("payload")
    rows = []
    for summary in _dicts(payload.get("inventorySummaries") if isinstance(payload, dict) else None):
        fnsku, asin = _text(summary.get("fnSku")), _text(summary.get("asin"))
        if fnsku and asin:
            rows.append(
                InventoryRow(
                    fnsku=normalize(fnsku),
                    asin=normalize(asin),
                    sku=_text(summary.get("sellerSku")),
                    title=_text(summary.get("productName")),
                )
            )
    pagination = body.get("pagination")
    next_token = _text(pagination.get("nextToken")) if isinstance(pagination, dict) else None
    return rows, next_token


def inventory_table(rows: Iterable[InventoryRow]) -> dict[str, Any]:
    """FNSKU → {asin, sku, skus, title}: the first SKU in code-point order answers."""
    by_fnsku: dict[str, list[InventoryRow]] = {}
    for row in rows:
        by_fnsku.setdefault(row.fnsku, []).append(row)
    table: dict[str, Any] = {}
    for fnsku, group in by_fnsku.items():
        group.sort(key=lambda row: (row.sku is None, row.sku or "", row.asin))
        first = group[0]
        table[fnsku] = {
            "asin": first.asin,
            "sku": first.sku,
            "skus": list(dict.fromkeys(row.sku for row in group if row.sku is not None)),
            "title": next((row.title for row in group if row.title), None),
        }
    return table


# --------------------------------------------------------------------------- catalog item


def parse_catalog_item(
    body: dict[str, Any], asin: str, marketplace: str, marketplace_id: str, fetched_at: datetime
) -> AsinProduct:
    """An `Item` of Catalog Items 2022-04-01 as an `AsinProduct` for one marketplace."""
    summary = _pick(body.get("summaries"), marketplace_id)
    browse = summary.get("browseClassification")
    category = _text(browse.get("displayName")) if isinstance(browse, dict) else None
    attributes = body.get("attributes")
    attributes = attributes if isinstance(attributes, dict) else {}
    price, currency = _list_price(attributes.get("list_price"), marketplace_id)
    ranks = _sales_ranks(_pick(body.get("salesRanks"), marketplace_id))
    return AsinProduct(
        asin=asin,
        marketplace=marketplace,
        title=_text(summary.get("itemName")),
        brand=_text(summary.get("brand")),
        images=_images(_pick(body.get("images"), marketplace_id)),
        bullet_points=[
            text
            for entry in _for_marketplace(attributes.get("bullet_point"), marketplace_id)
            if (text := _text(entry.get("value")))
        ],
        category=category or _text(summary.get("websiteDisplayGroupName")),
        price=price,
        currency=currency,
        dimensions=_dimensions(_pick(body.get("dimensions"), marketplace_id)),
        sales_rank=ranks[0] if ranks else None,
        sales_ranks=ranks,
        fetched_at=fetched_at,
        source="sp-api",
    )


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _pick(entries: Any, marketplace_id: str) -> dict[str, Any]:
    """The per-marketplace entry for this marketplace, else the first one, else {}."""
    items = _dicts(entries)
    for item in items:
        if item.get("marketplaceId") == marketplace_id:
            return item
    return items[0] if items else {}


def _for_marketplace(entries: Any, marketplace_id: str) -> list[dict[str, Any]]:
    items = _dicts(entries)
    return [i for i in items if i.get("marketplace_id") in (None, marketplace_id)]


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        return None
    try:
        number = Decimal(value)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _images(entry: dict[str, Any]) -> list[str]:
    # Each variant comes at several sizes: keep its largest, MAIN first, one link once.
    best: dict[str, tuple[int, str]] = {}
    order: list[str] = []
    for image in _dicts(entry.get("images")):
        link = _text(image.get("link"))
        if link is None:
            continue
        variant = _text(image.get("variant")) or "MAIN"
        height, width = image.get("height"), image.get("width")
        area = height * width if isinstance(height, int) and isinstance(width, int) else 0
        if variant not in best:
            order.append(variant)
            best[variant] = (area, link)
        elif area > best[variant][0]:
            best[variant] = (area, link)
    order.sort(key=lambda variant: variant != "MAIN")
    links: list[str] = []
    for variant in order:
        link = best[variant][1]
        if link not in links:
            links.append(link)
    return links


def _list_price(entries: Any, marketplace_id: str) -> tuple[str | None, str | None]:
    for entry in _for_marketplace(entries, marketplace_id):
        amount = _decimal(entry.get("value", entry.get("value_with_tax")))
        currency = _text(entry.get("currency"))
        if amount is not None and amount >= 0 and currency:
            return str(amount.quantize(Decimal("0.01"))), currency.lower()
    return None, None


def _sales_ranks(entry: dict[str, Any]) -> list[SalesRank]:
    ranks: list[SalesRank] = []
    for key, id_key in (
        ("displayGroupRanks", "websiteDisplayGroup"),
        ("classificationRanks", "classificationId"),
    ):
        for rank in _dicts(entry.get(key)):
            value, title = rank.get("rank"), _text(rank.get("title"))
            if isinstance(value, int) and not isinstance(value, bool) and title:
                ranks.append(
                    SalesRank(
                        title=title,
                        rank=value,
                        category_id=_text(rank.get(id_key)),
                        link=_text(rank.get("link")),
                    )
                )
    return ranks


def _measures(value: Any) -> dict[str, Measure] | None:
    if not isinstance(value, dict):
        return None
    measures: dict[str, Measure] = {}
    for name in ("height", "length", "width", "weight"):
        measure = value.get(name)
        if isinstance(measure, dict) and (number := _decimal(measure.get("value"))) is not None:
            measures[name] = Measure(value=format(number, "f"), unit=_text(measure.get("unit")))
    return measures or None


def _dimensions(entry: dict[str, Any]) -> Dimensions | None:
    item, package = _measures(entry.get("item")), _measures(entry.get("package"))
    if item is None and package is None:
        return None
    return Dimensions(item=item, package=package)

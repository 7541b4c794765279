"""The data sources behind one interface, chosen by `AMAZON_PROVIDER`.

- `local` (default): this store's catalog products that carry an ASIN, and the calling user's
  own mappings (from uploaded inventory reports). Answers come straight from the database.
- `sp-api`: Amazon's Selling Partner API (see `spapi_source.py`), cached with a TTL.

The user's own mappings are consulted for FNSKUs before any source (see `service.py`), so a
source only answers what they do not cover.
"""

from __future__ import annotations

from collections.abc import Collection
from decimal import Decimal
from typing import Protocol, get_args

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from sellerdesk.amazon import repository
from sellerdesk.amazon.identifiers import is_asin
from sellerdesk.amazon.regions import (
    MARKETPLACES,
    REGION_NAMES,
    Region,
    region_of,
    region_settings,
)
from sellerdesk.amazon.schemas import AsinProduct, FnskuResult
from sellerdesk.config import Settings
from sellerdesk.kit.cache import Cache
from sellerdesk.models.base import utcnow


class AmazonSource(Protocol):
    name: str
    calls_upstream: bool
    """True when a lookup may wait on another service (the paid call then commits its charge
    before the lookup, so no account row stays locked across it); False when every answer
    comes from our own database (charged in the transaction that reads it)."""

    def check_marketplace(self, marketplace: str) -> None:
        """Refuse (422, before any charge) a marketplace this source cannot ask."""
        ...

    async def product(
        self, session: AsyncSession, user_id: int, asin: str, marketplace: str
    ) -> AsinProduct | None:
        """Product data for a normalised ASIN; None when this source does not know it."""
        ...

    async def fnskus(
        self, session: AsyncSession, user_id: int, codes: Collection[str]
    ) -> dict[str, FnskuResult]:
        """The codes this source can resolve (normalised, distinct), keyed by code."""
        ...

    async def aclose(self) -> None: ...


class LocalSource:
    """This store's catalog and the user's uploaded mappings."""

    name = "local"
    calls_upstream = False

    def check_marketplace(self, marketplace: str) -> None:
        return None

    async def product(
        self, session: AsyncSession, user_id: int, asin: str, marketplace: str
    ) -> AsinProduct | None:
        found = await repository.catalog_product(session, asin)
        if found is not None:
            product, category = found
            return AsinProduct(
                asin=asin,
                marketplace=marketplace,
                title=product.name,
                brand=None,
                images=list(product.images or []),
                bullet_points=[],
                category=category,
                price=str(Decimal(product.price).quantize(Decimal("0.01"))),
                currency=product.currency.lower(),
                dimensions=None,
                sales_rank=None,
                sales_ranks=[],
                fetched_at=utcnow(),
                source="catalog",
            )
        mapping = await repository.mapping_by_asin(session, user_id, asin)
        if mapping is None:
            return None
        return AsinProduct(
            asin=asin,
            marketplace=marketplace,
            title=mapping.title,
            brand=None,
            images=[],
            bullet_points=[],
            category=None,
            price=None,
            currency=None,
            dimensions=None,
            sales_rank=None,
            sales_ranks=[],
            fetched_at=mapping.updated_at,
            source="inventory_report",
        )

    async def fnskus(
        self, session: AsyncSession, user_id: int, codes: Collection[str]
    ) -> dict[str, FnskuResult]:
        # A stickerless unit's FNSKU is its ASIN: a catalog product with that ASIN answers it.
        products = await repository.catalog_products(session, [c for c in codes if is_asin(c)])
        return {  # up to 1,000 per batch: a plain constructor is faster than model_construct
            asin: FnskuResult(
                fnsku=asin,
                asin=asin,
                sku=product.sku,
                skus=[product.sku],
                title=product.name,
                source="catalog",
            )
            for asin, product in products.items()
        }

    async def aclose(self) -> None:
        return None


def create_source(settings: Settings, cache: Cache, redis: Redis | None = None) -> AmazonSource:
    """The source `AMAZON_PROVIDER` names; `sp-api` refuses to start without its credentials.

    `sp-api` needs the LWA application's client id and secret, and a refresh token for the
    region of `SPAPI_INVENTORY_MARKETPLACE` (FNSKUs resolve against that inventory).
    """
    if settings.AMAZON_PROVIDER == "local":
        return LocalSource()
    from sellerdesk.amazon.spapi_source import SpApiSource

    missing = [
        name for name in ("SPAPI_CLIENT_ID", "SPAPI_CLIENT_SECRET") if not getattr(settings, name)
    ]
    if missing:
        raise RuntimeError(f"AMAZON_PROVIDER=sp-api needs {', '.join(missing)}")
    marketplace = settings.SPAPI_INVENTORY_MARKETPLACE
    if marketplace not in MARKETPLACES:
        raise RuntimeError(
            f"SPAPI_INVENTORY_MARKETPLACE={marketplace} is not an Amazon marketplace code; "
            f"use one of {', '.join(MARKETPLACES)}"
        )
    region = region_of(marketplace)
    if not region_settings(settings, region).configured:
        configured = [r for r in get_args(Region) if region_settings(settings, r).configured]
        alias = " (or its alias SPAPI_REFRESH_TOKEN)" if region == "NA" else ""
        raise RuntimeError(
            f"AMAZON_PROVIDER=sp-api: SPAPI_INVENTORY_MARKETPLACE={marketplace} is in the "
            f"{REGION_NAMES[region]} region, which has no refresh token: set "
            f"SPAPI_{region}_REFRESH_TOKEN{alias}"
            + (
                f", or choose a marketplace of a configured region ({', '.join(configured)})"
                if configured
                else ""
            )
        )
    return SpApiSource(settings, cache, redis)

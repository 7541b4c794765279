"""The demo catalog: a three-level category tree and 1,200 products (deterministic, idempotent).

Re-running it adds nothing: categories and products are inserted with ON CONFLICT DO NOTHING
on their slug and sku, and only newly inserted products get an `initial` stock movement.
"""

from __future__ import annotations

import random
import re
import string
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sellerdesk.config import Settings
from sellerdesk.db import insert_for
from sellerdesk.inventory.movements import record_movement
from sellerdesk.models import Category, Product

log = structlog.get_logger(__name__)

PRODUCT_COUNT = 1200
SEED = 20261123

# department -> {sub-category: [leaf categories]}
TREE: dict[str, dict[str, list[str]]] = {
    "Electronics": {
        "Audio": ["Headphones", "Speakers", "Microphones"],
        "Computers": ["Laptops", "Keyboards", "Monitors"],
        "Phone Accessories": ["Chargers", "Cases", "Cables"],
    },
    "Home & Kitchen": {
        "Cookware": ["Pans", "Pots", "Knives"],
        "Coffee & Tea": ["Coffee Makers", "Kettles", "Mugs"],
        "Storage": ["Jars", "Shelves", "Baskets"],
    },
    "Sports & Outdoors": {
        "Camping": ["Tents", "Sleeping Bags", "Lanterns"],
        "Fitness": ["Dumbbells", "Yoga Mats", "Resistance Bands"],
        "Cycling": ["Helmets", "Bike Lights", "Bottles"],
    },
    "Office": {
        "Writing": ["Pens", "Notebooks", "Markers"],
        "Desk": ["Desk Lamps", "Organizers", "Chairs"],
        "Paper": ["Printer Paper", "Sticky Notes", "Envelopes"],
    },
    "Toys & Games": {
        "Board Games": ["Strategy Games", "Family Games", "Puzzles"],
        "Building": ["Blocks", "Construction Sets", "Marble Runs"],
        "Outdoor Play": ["Kites", "Balls", "Water Toys"],
    },
}

BRANDS = ["Acme", "Northwind", "Contoso", "Fabrikam", "Globex", "Initech", "Umbra", "Vertex"]
ADJECTIVES = ["Compact", "Premium", "Classic", "Ultra", "Eco", "Pro", "Deluxe", "Essential"]
COLOURS = ["Black", "White", "Blue", "Red", "Green", "Grey", "Silver", "Oak"]
PRICE_RANGES = {  # per department: a realistic spread of prices
    "Electronics": (8, 900),
    "Home & Kitchen": (5, 300),
    "Sports & Outdoors": (6, 450),
    "Office": (2, 350),
    "Toys & Games": (4, 120),
}


IRREGULAR = {"Knives": "Knife", "Shelves": "Shelf"}


def slugify(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower().replace("&", "and")).strip("-")


def singular(plural: str) -> str:
    """The leaf category's item name: "Sleeping Bags" → "Sleeping Bag"."""
    if plural in IRREGULAR:
        return IRREGULAR[plural]
    if plural.endswith("s") and not plural.endswith("ss"):
        return plural[:-1]
    return plural


async def _ensure_categories(session: AsyncSession, rows: list[dict[str, Any]]) -> dict[str, int]:
    if rows:
        stmt: Any = insert_for(session, Category)  # PostgreSQL's or SQLite's Insert
        await session.execute(stmt.on_conflict_do_nothing(), rows)
    slugs = [row["slug"] for row in rows]
    result = await session.execute(
        select(Category.slug, Category.id).where(Category.slug.in_(slugs))
    )
    return {slug: category_id for slug, category_id in result.all()}


async def seed_categories(session: AsyncSession) -> dict[str, tuple[str, int]]:
    """The tree, level by level; leaf slug → (department, id)."""
    departments = await _ensure_categories(
        session,
        [
            {"name": name, "slug": slugify(name), "description": f"Everything in {name.lower()}."}
            for name in TREE
        ],
    )
    middle_rows = [
        {"name": sub, "slug": slugify(sub), "parent_id": departments[slugify(dep)]}
        for dep, subs in TREE.items()
        for sub in subs
    ]
    middles = await _ensure_categories(session, middle_rows)
    leaf_rows = [
        {"name": leaf, "slug": slugify(leaf), "parent_id": middles[slugify(sub)]}
        for subs in TREE.values()
        for sub, leaves in subs.items()
        for leaf in leaves
    ]
    leaves = await _ensure_categories(session, leaf_rows)
    return {
        slugify(leaf): (dep, leaves[slugify(leaf)])
        for dep, subs in TREE.items()
        for names in subs.values()
        for leaf in names
    }


def demo_products(leaves: dict[str, tuple[str, int]], currency: str) -> list[dict[str, Any]]:
    """PRODUCT_COUNT deterministic products spread over the leaf categories."""
    rng = random.Random(SEED)  # noqa: S311 -- demo data, not secrets
    leaf_names = {
        slugify(leaf): leaf for subs in TREE.values() for n in subs.values() for leaf in n
    }
    slugs = sorted(leaves)
    products = []
    for n in range(PRODUCT_COUNT):
        slug = slugs[n % len(slugs)]
        department, category_id = leaves[slug]
        noun = singular(leaf_names[slug])
        brand, adjective, colour = rng.choice(BRANDS), rng.choice(ADJECTIVES), rng.choice(COLOURS)
        low, high = PRICE_RANGES[department]
        price = Decimal(rng.randint(low * 100, high * 100)) / 100
        price = price.quantize(Decimal("1")) - Decimal("0.01") if price > 20 else price
        roll = rng.random()
        stock = 0 if roll < 0.06 else rng.randint(1, 5) if roll < 0.18 else rng.randint(6, 400)
        asin = None
        if n % 3 == 0:
            asin = "B0" + "".join(rng.choices(string.ascii_uppercase + string.digits, k=8))
        products.append(
            {
                "name": f"{brand} {adjective} {noun}, {colour}",
                "description": (
                    f"A {adjective.lower()} {noun.lower()} by {brand} in {colour.lower()}, "
                    f"from our {department} range."
                ),
                "price": price,
                "currency": currency,
                "stock_quantity": stock,
                "low_stock_threshold": 5,
                "category_id": category_id,
                "sku": f"DEMO-{n + 1:05d}",
                "asin": asin,
                "images": [f"https://images.example.com/demo/{n + 1:05d}.jpg"],
                "is_active": True,
            }
        )
    return products


async def seed_catalog(session: AsyncSession, settings: Settings) -> None:
    """Ensure the demo catalog exists (bulk inserts; only new products get movements)."""
    leaves = await seed_categories(session)
    insert: Any = insert_for(session, Product)  # PostgreSQL's or SQLite's Insert
    stmt = insert.on_conflict_do_nothing(index_elements=["sku"]).returning(
        Product.id, Product.stock_quantity
    )
    created = 0
    products = demo_products(leaves, settings.CURRENCY)
    for start in range(0, len(products), 500):
        rows = (await session.execute(stmt, products[start : start + 500])).all()
        created += len(rows)
        for product_id, stock in rows:
            if stock:
                await record_movement(
                    session,
                    product_id=product_id,
                    delta=stock,
                    stock_after=stock,
                    low_stock_threshold=5,
                    reason="initial",
                    note="demo data",
                )
    log.info("catalog_seeded", categories=len(leaves), products_created=created)

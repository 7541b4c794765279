"""CSV import of products: streamed, validated row by row, upserted by sku in batches.

All or nothing: the writes happen inside a savepoint that is rolled back as soon as the file
turns out to hold a bad row, so a report with errors always means nothing was written. Rows are
numbered as the file's lines: the header is row 1 (a quoted field spanning lines counts from
the line it starts on). Memory stays bounded: one batch of rows and the set of skus seen.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sellerdesk.catalog.repository import ProductRepository
from sellerdesk.catalog.schemas import MAX_INT, ImportReport, ImportRowError
from sellerdesk.catalog.service import invalidate_catalog
from sellerdesk.inventory.movements import record_movement
from sellerdesk.kit.cache import Cache
from sellerdesk.kit.money import parse_amount
from sellerdesk.models import Category

log = structlog.get_logger(__name__)

REQUIRED_COLUMNS = ("sku", "name", "price", "stock_quantity")
OPTIONAL_COLUMNS = ("description", "category_slug")
EXPECTED_HEADER = "sku,name,description,price,stock_quantity,category_slug"
BATCH_SIZE = 500
MAX_ERRORS = 1000
LIMITS = {"sku": 100, "name": 300, "description": 20_000}


class ImportAborted(Exception):
    """The file cannot be read any further (bad encoding, too many errors)."""


@dataclass
class _Run:
    """The state of one import."""

    session: AsyncSession
    currency: str
    user_id: int
    columns: tuple[str, ...]
    categories: dict[str, int]
    created: int = 0
    updated: int = 0
    errors: list[ImportRowError] = field(default_factory=list)
    seen: dict[str, int] = field(default_factory=dict)  # sku -> row
    batch: list[dict[str, Any]] = field(default_factory=list)

    def fail(self, row: int, message: str) -> None:
        self.errors.append(ImportRowError(row=row, message=message))
        self.batch.clear()  # nothing more will be written
        if len(self.errors) >= MAX_ERRORS:
            raise ImportAborted(f"stopped after {MAX_ERRORS} errors")

    @property
    def update_columns(self) -> list[str]:
        """Columns an existing product takes from the file (absent columns stay as they are)."""
        names = ["name", "price", "stock_quantity"]
        if "description" in self.columns:
            names.append("description")
        if "category_slug" in self.columns:
            names.append("category_id")
        return names


def _records(text: IO[str]) -> Iterator[tuple[int, list[str]]]:
    """(row, cells) per record, with the delimiter (comma or tab) taken from the header."""
    first = text.readline()
    delimiter = "\t" if first.count("\t") > first.count(",") else ","
    reader = csv.reader(itertools.chain([first], text), delimiter=delimiter, strict=True)
    line = 0
    for cells in reader:
        start, line = line + 1, reader.line_num
        yield start, cells


def _parse_row(run: _Run, row: int, cells: dict[str, str]) -> dict[str, Any] | None:
    """The row as product values, or None after recording why it is bad."""
    problems: list[str] = []
    values: dict[str, Any] = {}
    for name, limit in LIMITS.items():
        value = cells.get(name, "")
        if "\x00" in value:
            problems.append(f"{name} contains a NUL character")
        elif len(value) > limit:
            problems.append(f"{name} is longer than {limit} characters")
    sku, name = cells["sku"], cells["name"]
    if not sku:
        problems.append("sku is empty")
    if not name:
        problems.append("name is empty")
    try:
        values["price"] = parse_amount(cells["price"])
    except ValueError as exc:
        problems.append(f"price {cells['price']!r}: {exc}")
    raw_stock = cells["stock_quantity"]
    if raw_stock.isascii() and raw_stock.isdigit() and int(raw_stock) <= MAX_INT:
        values["stock_quantity"] = int(raw_stock)
    else:
        problems.append(f"stock_quantity {raw_stock!r} is not a whole number >= 0")
    slug = cells.get("category_slug", "")
    category_id = None
    if slug:
        category_id = run.categories.get(slug)
        if category_id is None:
            problems.append(f"category_slug {slug!r} is not a known category")
    if sku and sku in run.seen:
        problems.append(f"sku {sku!r} already appears on row {run.seen[sku]}")
    elif sku:
        run.seen[sku] = row
    if problems:
        run.fail(row, "; ".join(problems))
        return None
    values.update(
        sku=sku,
        name=name,
        description=cells.get("description") or None,
        category_id=category_id,
        currency=run.currency,
        images=[],
        low_stock_threshold=5,
        is_active=True,
    )
    return values


async def _write_batch(run: _Run) -> None:
    """Upsert the batch and record a stock movement for every product whose stock changed."""
    if not run.batch or run.errors:
        return
    repo = ProductRepository(run.session)
    before = await repo.stock_by_sku([values["sku"] for values in run.batch])
    for product_id, sku, stock, threshold in await repo.upsert(run.batch, run.update_columns):
        previous = before.get(sku)
        if previous is None:
            run.created += 1
            delta = stock
        else:
            run.updated += 1
            delta = stock - previous[1]
        if delta:
            await record_movement(
                run.session,
                product_id=product_id,
                delta=delta,
                stock_after=stock,
                low_stock_threshold=threshold,
                reason="import",
                user_id=run.user_id,
            )
    run.batch.clear()


def _header(cells: list[str]) -> tuple[tuple[str, ...], str | None]:
    """The normalised column names, or why the header is unusable."""
    columns = tuple(cell.strip().lower() for cell in cells)
    if columns and columns[0].startswith("\ufeff"):
        columns = (columns[0][1:], *columns[1:])
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        return columns, f"missing column(s) {', '.join(missing)}; expected {EXPECTED_HEADER}"
    duplicated = sorted({name for name in columns if name and columns.count(name) > 1})
    if duplicated:
        return columns, f"column(s) {', '.join(duplicated)} appear more than once"
    return columns, None


async def _run_import(run: _Run, records: Iterator[tuple[int, list[str]]]) -> None:
    width = len(run.columns)
    for row, cells in records:
        if not any(cell.strip() for cell in cells):
            continue  # blank lines are skipped, not errors
        if len(cells) != width:
            run.fail(row, f"expected {width} fields, found {len(cells)}")
            continue
        record = {name: cell.strip() for name, cell in zip(run.columns, cells, strict=True) if name}
        values = _parse_row(run, row, record)
        if values is not None and not run.errors:
            run.batch.append(values)
            if len(run.batch) >= BATCH_SIZE:
                await _write_batch(run)
    await _write_batch(run)


async def import_products(
    session: AsyncSession, cache: Cache, currency: str, upload: IO[bytes], user_id: int
) -> ImportReport:
    """Upsert products by sku from a CSV/TSV upload; any bad row and nothing is written."""
    text = io.TextIOWrapper(upload, encoding="utf-8-sig", newline="")
    try:
        records = _records(text)
        try:
            first = next(records, None)
        except (UnicodeDecodeError, csv.Error) as exc:
            return _failed(1, f"the header cannot be read: {_reason(exc)}")
        if first is None or not any(cell.strip() for cell in first[1]):
            return _failed(1, "the file is empty; expected a header row")
        columns, problem = _header(first[1])
        if problem:
            return _failed(1, problem)
        slugs = await session.execute(select(Category.slug, Category.id))
        run = _Run(
            session,
            currency,
            user_id,
            columns,
            {slug: category_id for slug, category_id in slugs.all()},
        )
        savepoint = await session.begin_nested()
        try:
            await _run_import(run, _guarded(records, run))
        except ImportAborted as exc:
            run.errors.append(ImportRowError(row=run.errors[-1].row, message=str(exc)))
        if run.errors:
            await savepoint.rollback()
            log.info("products_import_refused", errors=len(run.errors))
            return ImportReport(created=0, updated=0, errors=run.errors)
        await savepoint.commit()
    finally:
        text.detach()  # the upload closes its own file
    if run.created or run.updated:
        await invalidate_catalog(session, cache)
    log.info("products_imported", created=run.created, updated=run.updated)
    return ImportReport(created=run.created, updated=run.updated, errors=[])


def _guarded(
    records: Iterator[tuple[int, list[str]]], run: _Run
) -> Iterator[tuple[int, list[str]]]:
    """The records; a decoding or CSV syntax error ends the file with an error on its row."""
    row = 1
    while True:
        try:
            item = next(records)
        except StopIteration:
            return
        except (UnicodeDecodeError, csv.Error) as exc:
            run.errors.append(ImportRowError(row=row + 1, message=_reason(exc)))
            raise ImportAborted("the rest of the file was not read") from exc
        row = item[0]
        yield item


def _reason(exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "the file is not valid UTF-8"
    return f"malformed CSV: {exc}"


def _failed(row: int, message: str) -> ImportReport:
    return ImportReport(created=0, updated=0, errors=[ImportRowError(row=row, message=message)])

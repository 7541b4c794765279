"""Ranges of UTC days (`?from=YYYY-MM-DD&to=YYYY-MM-DD`) and grouping rows by their UTC day."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import Depends, Query
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import Date

from sellerdesk.errors import ValidationFailed

DEFAULT_DAYS = 30
MAX_DAYS = 366
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True, slots=True)
class DayRange:
    """Inclusive UTC days `first`..`last`."""

    first: date
    last: date

    @property
    def start(self) -> datetime:
        """The first instant of the range (UTC midnight of `first`)."""
        return datetime.combine(self.first, time.min, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        """The first instant after the range (UTC midnight after `last`)."""
        return datetime.combine(self.last + timedelta(days=1), time.min, tzinfo=UTC)

    @property
    def days(self) -> list[date]:
        return [self.first + timedelta(days=n) for n in range((self.last - self.first).days + 1)]


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        f"Invalid input at query.{field}: {message}",
        details=[{"loc": ["query", field], "msg": message, "type": "value_error"}],
    )


def _parse(field: str, value: str | None) -> date | None:
    if value is None or value == "":
        return None
    if not _DAY.match(value):
        raise _invalid(field, "must be a date written YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise _invalid(field, "is not a calendar date") from exc


def day_range(first: str | None, last: str | None, *, today: date | None = None) -> DayRange:
    """The range asked for: `to` defaults to today (UTC), `from` to 30 days ending at `to`.

    422 `validation_error` for a malformed date, `from` after `to`, or more than 366 days.
    """
    end = _parse("to", last) or today or datetime.now(UTC).date()
    start = _parse("from", first) or end - timedelta(days=DEFAULT_DAYS - 1)
    if start > end:
        raise _invalid("from", "must not be after `to`")
    if (end - start).days + 1 > MAX_DAYS:
        raise _invalid("from", f"the range may span at most {MAX_DAYS} days")
    return DayRange(start, end)


_DAY_QUERY = "An inclusive UTC day, YYYY-MM-DD."


async def _day_range_query(
    first: Annotated[
        str | None,
        Query(
            alias="from", max_length=10, description=f"{_DAY_QUERY} Default: 29 days before `to`."
        ),
    ] = None,
    last: Annotated[
        str | None, Query(alias="to", max_length=10, description=f"{_DAY_QUERY} Default: today.")
    ] = None,
) -> DayRange:
    return day_range(first, last)


DayRangeDep = Annotated[DayRange, Depends(_day_range_query)]
"""`?from=&to=` (inclusive UTC days, at most 366, default the last 30) as a `DayRange`."""


class utc_day(FunctionElement[date]):  # noqa: N801 - reads like the SQL function it compiles to
    """The UTC calendar day of a timestamp column, as SQL (PostgreSQL or SQLite)."""

    type = Date()
    inherit_cache = True


@compiles(utc_day, "postgresql")
def _utc_day_postgresql(element: utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(timezone('UTC', {compiler.process(element.clauses, **kw)}) AS DATE)"


@compiles(utc_day)
def _utc_day_sqlite(element: utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite keeps our timestamps as UTC text ("YYYY-MM-DD HH:MM:SS..."): its date() is the day.
    return f"date({compiler.process(element.clauses, **kw)})"


def as_date(value: Any) -> date:
    """A day read back from SQL: a `date` (PostgreSQL) or its ISO text (SQLite)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


async def days_having(session: AsyncSession, stamp: Any, days: DayRange, *where: Any) -> set[date]:
    """The days of the range on which some row matching `where` has its timestamp `stamp`."""
    rows = await session.scalars(
        select(utc_day(stamp)).where(stamp >= days.start, stamp < days.end, *where).distinct()
    )
    return {as_date(day) for day in rows}

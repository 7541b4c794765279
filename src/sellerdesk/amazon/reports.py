"""Reading an FBA inventory report (CSV or TSV, as Amazon exports it) row by row.

Columns are found by header name (`sku`, `fnsku`, `asin`, `product-name`; case, spaces and `_`
vs `-` do not matter; extra columns are ignored). The text is UTF-8 (a BOM is allowed) or, when
it is not valid UTF-8, ISO-8859-1 as python-amazon-sp-api falls back to. Rows are yielded one at a
time, never held all at once. Line numbers count the header as line 1.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Literal

from sellerdesk.amazon.errors import ReportTooLarge
from sellerdesk.amazon.identifiers import normalize, parse_asin, parse_fnsku
from sellerdesk.errors import ValidationFailed

REQUIRED_COLUMNS = ("fnsku", "asin")
_ALIASES = {"seller-sku": "sku", "product-name": "title", "item-name": "title"}
_CHUNK = 64 * 1024
MAX_SKU = 200
MAX_TITLE = 500


@dataclass(frozen=True, slots=True)
class ReportRow:
    line: int
    fnsku: str
    asin: str
    sku: str | None
    title: str | None


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    message: str


def read_report(file: BinaryIO, max_bytes: int) -> Iterator[ReportRow | RowError]:
    """Each data row as a `ReportRow`, or a `RowError` saying why it cannot be imported."""
    size = file.seek(0, io.SEEK_END)
    if size > max_bytes:
        raise ReportTooLarge(f"The report is {size} bytes; at most {max_bytes} are accepted.")
    if size == 0:
        raise ValidationFailed("The report is empty.")
    encoding = _encoding(file)
    file.seek(0)
    text = io.TextIOWrapper(file, encoding=encoding, newline="")
    try:
        yield from _rows(text)
    finally:
        text.detach()  # the upload owns the binary file; do not close it with the wrapper


def _encoding(file: BinaryIO) -> str:
    file.seek(0)
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        while chunk := file.read(_CHUNK):
            decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return "iso-8859-1"
    return "utf-8-sig"


def _rows(text: io.TextIOWrapper) -> Iterator[ReportRow | RowError]:
    header_line = text.readline()
    # Amazon's reports are tab-delimited and unquoted (a title may hold a lone `"`); CSV files
    # saved by spreadsheets use commas and quotes.
    tabbed = "\t" in header_line
    delimiter = "\t" if tabbed else ","
    quoting: Literal[0, 3] = csv.QUOTE_NONE if tabbed else csv.QUOTE_MINIMAL
    header = next(csv.reader([header_line], delimiter=delimiter, quoting=quoting), [])
    columns = _columns(header)
    reader = csv.reader(text, delimiter=delimiter, quoting=quoting, strict=False)
    consumed = 0  # lines read after the header; a quoted field may span several
    try:
        for fields in reader:
            line, consumed = 2 + consumed, reader.line_num
            if any(field.strip() for field in fields):
                yield _row(line, fields, columns)
    except csv.Error as exc:
        raise ValidationFailed(f"Line {2 + consumed} cannot be read: {exc}.") from exc


def _columns(header: list[str]) -> dict[str, int]:
    columns: dict[str, int] = {}
    for index, name in enumerate(header):
        key = name.strip().strip('"').lower().replace("_", "-").replace(" ", "-")
        key = _ALIASES.get(key, key)
        columns.setdefault(key, index)
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        found = [name.strip() for name in header if name.strip()][:50]
        raise ValidationFailed(
            "The report needs the columns fnsku and asin (sku and product-name are read too); "
            f"missing: {', '.join(missing)}.",
            details={"missing_columns": missing, "found_columns": found},
        )
    return columns


def _field(fields: list[str], columns: dict[str, int], name: str) -> str:
    index = columns.get(name)
    if index is None or index >= len(fields):
        return ""
    return fields[index].replace("\x00", "").strip()


def _row(line: int, fields: list[str], columns: dict[str, int]) -> ReportRow | RowError:
    raw_fnsku = _field(fields, columns, "fnsku")
    raw_asin = _field(fields, columns, "asin")
    fnsku = parse_fnsku(raw_fnsku)
    asin = parse_asin(raw_asin)
    if fnsku is None:
        return RowError(line, f"Invalid FNSKU {_shown(raw_fnsku)}.")
    if asin is None:
        return RowError(line, f"Invalid ASIN {_shown(raw_asin)}.")
    sku = _field(fields, columns, "sku") or None
    if sku is not None and len(sku) > MAX_SKU:
        return RowError(line, f"The SKU is longer than {MAX_SKU} characters.")
    title = " ".join(_field(fields, columns, "title").split())[:MAX_TITLE] or None
    return ReportRow(line, fnsku, asin, sku, title)


def _shown(raw: str) -> str:
    return repr(normalize(raw)[:24]) if raw else "(empty)"

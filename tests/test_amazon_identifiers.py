"""ASIN and FNSKU validation exactly as the contract states it (property tests)."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from sellerdesk.amazon.identifiers import (
    is_asin,
    is_fnsku,
    isbn10_check_ok,
    normalize,
    parse_asin,
    parse_fnsku,
)
from sellerdesk.amazon.schemas import AsinQuery, FnskuBatchQuery, FnskuQuery

ALNUM = string.ascii_uppercase + string.digits
tail8 = st.text(alphabet=ALNUM, min_size=8, max_size=8)
nine_digits = st.text(alphabet=string.digits, min_size=9, max_size=9)
padding = st.text(alphabet=" \t\n", max_size=3)


def isbn10(first_nine: str) -> str:
    total = sum((10 - i) * int(ch) for i, ch in enumerate(first_nine))
    check = (11 - total % 11) % 11
    return first_nine + ("X" if check == 10 else str(check))


@given(tail8)
def test_b0_plus_eight_alphanumerics_is_an_asin_and_an_fnsku(tail: str) -> None:
    assert is_asin("B0" + tail)
    assert is_fnsku("B0" + tail)


@given(tail8)
def test_x0_plus_eight_alphanumerics_is_an_fnsku_but_not_an_asin(tail: str) -> None:
    assert is_fnsku("X0" + tail)
    assert not is_asin("X0" + tail)


@given(nine_digits)
def test_isbn10_with_its_check_digit_is_an_asin(first_nine: str) -> None:
    assert is_asin(isbn10(first_nine))
    assert is_fnsku(isbn10(first_nine))


@given(nine_digits, st.sampled_from(list(string.digits + "X")))
def test_isbn10_with_any_other_check_character_is_refused(first_nine: str, check: str) -> None:
    code = first_nine + check
    assert is_asin(code) == (code == isbn10(first_nine))


@given(tail8, padding, padding, st.booleans())
def test_codes_are_trimmed_and_upper_cased(tail: str, left: str, right: str, lower: bool) -> None:
    raw = left + ("b0" + tail.lower() if lower else "B0" + tail) + right
    assert parse_asin(raw) == "B0" + tail
    assert parse_fnsku(raw) == "B0" + tail
    assert normalize(normalize(raw)) == normalize(raw)


@given(st.text(max_size=14))
def test_anything_accepted_matches_one_of_the_contract_shapes(raw: str) -> None:
    code = parse_fnsku(raw)
    if code is not None:
        assert len(code) == 10
        assert code.startswith(("X0", "B0")) or isbn10_check_ok(code)


@pytest.mark.parametrize(
    "code",
    ["0306406152", "0-306-40615-2".replace("-", ""), "080442957X", "B00EXAMPLE", "b0example1"],
)
def test_known_good_asins(code: str) -> None:
    assert parse_asin(code) is not None


@pytest.mark.parametrize(
    "code",
    [
        "0306406153",  # wrong check digit
        "080442957x0",  # too long
        "X804429570",  # X only allowed as the last character
        "B1EXAMPLE1",  # B1, not B0
        "B0EXAMPLE",  # 9 characters
        "B0EXAMPLE12",  # 11 characters
        "B0EXAMP-E1",  # not alphanumeric
        "B0EXÄMPLE1",  # not ASCII
        "",
        "          ",
    ],
)
def test_known_bad_asins(code: str) -> None:
    assert parse_asin(code) is None


def test_fnsku_examples() -> None:
    assert parse_fnsku(" x00000e5tx ") == "X00000E5TX"  # Amazon's own example
    assert parse_fnsku("0306406152") == "0306406152"  # a stickerless book: FNSKU = ASIN
    assert parse_fnsku("X10000E5TX") is None
    assert parse_fnsku("X00000E5T") is None


def test_request_bodies_normalise_and_refuse() -> None:
    assert AsinQuery.model_validate({"asin": " b0example1 "}).asin == "B0EXAMPLE1"
    assert AsinQuery.model_validate({"asin": "B0EXAMPLE1", "marketplace": "uk"}).marketplace == "UK"
    assert FnskuQuery.model_validate({"fnsku": "x00000e5tx"}).fnsku == "X00000E5TX"
    for body in (
        {"asin": "B0EXAMPLE"},
        {"asin": 1234567890},
        {"asin": "B0EXAMPLE1", "marketplace": "XX"},
        {"asin": "B0EXAMPLE1", "extra": 1},
    ):
        with pytest.raises(ValidationError):
            AsinQuery.model_validate(body)
    with pytest.raises(ValidationError):
        FnskuQuery.model_validate({"fnsku": "0306406153"})
    with pytest.raises(ValidationError):
        FnskuBatchQuery.model_validate({"fnskus": []})
    with pytest.raises(ValidationError):
        FnskuBatchQuery.model_validate({"fnskus": ["X00000E5TX"] * 1001})
    # A bad code inside a batch is an item status, not a refusal of the batch.
    assert FnskuBatchQuery.model_validate({"fnskus": ["nope"]}).fnskus == ["nope"]


@given(st.text(max_size=14))
def test_request_schemas_accept_exactly_what_the_rules_accept(raw: str) -> None:
    try:
        accepted: str | None = AsinQuery.model_validate({"asin": raw}).asin
    except ValidationError:
        accepted = None
    assert accepted == (parse_asin(raw) if "\x00" not in raw else None)
    try:
        accepted = FnskuQuery.model_validate({"fnsku": raw}).fnsku
    except ValidationError:
        accepted = None
    assert accepted == (parse_fnsku(raw) if "\x00" not in raw else None)

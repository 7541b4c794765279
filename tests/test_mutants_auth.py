"""Access tokens at the function level: what `create_access_token` writes, what
`decode_access_token` gives back and refuses (the exact bounds and messages), and the
issuer `unverified_issuer` routes by. `tests/test_jwt.py` holds the same rules through the
HTTP API, where an unknown user hides some of these differences behind the same 401.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from sellerdesk.auth.tokens import (
    AccessClaims,
    create_access_token,
    decode_access_token,
    hash_refresh_token,
    new_refresh_token,
    unverified_issuer,
)
from sellerdesk.config import Settings
from sellerdesk.errors import InvalidToken
from tests.conftest import make_settings

SECRET = "test-secret-key-0123456789abcdef-0123456789abcdef"


@pytest.fixture(scope="module")
def settings() -> Settings:
    return make_settings(
        "sqlite+aiosqlite:///unused.db",
        None,
        "t",
        SECRET_KEY=SECRET,
        ACCESS_TOKEN_EXPIRE_MINUTES=15,
    )


def _claims(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def _signed(**changes: Any) -> str:
    """A token of ours (right secret and issuer) with some claims changed (None: left out)."""
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": "42",
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "type": "access",
        "iss": "sellerdesk",
        "jti": uuid.uuid4().hex,
        "ver": 0,
    }
    claims.update(changes)
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, SECRET, "HS256")


def test_a_token_decodes_to_the_claims_it_was_made_with(settings: Settings) -> None:
    issued = datetime(2026, 12, 7, 5, 0, 0, tzinfo=UTC)
    token = create_access_token(settings, 42, issued, version=3)
    raw = _claims(token)
    assert raw["sub"] == "42" and raw["type"] == "access" and raw["iss"] == "sellerdesk"
    assert raw["ver"] == 3 and raw["iat"] == int(issued.timestamp())
    assert raw["exp"] - raw["iat"] == 15 * 60
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    decoded = jwt.decode(
        token, SECRET, algorithms=["HS256"], options={"verify_exp": False, "verify_iat": False}
    )
    assert decoded == raw  # signed with the secret
    # Decoded "now" (while it is valid): what was issued comes back, as aware UTC datetimes.
    fresh = create_access_token(settings, 42, datetime.now(UTC) - timedelta(seconds=1), version=3)
    claims = decode_access_token(settings, fresh)
    assert claims == AccessClaims(
        user_id=42,
        issued_at=datetime.fromtimestamp(_claims(fresh)["iat"], UTC),
        token_id=_claims(fresh)["jti"],
        version=3,
    )
    assert claims.issued_at.tzinfo is UTC and claims.token_id


def test_a_token_made_without_a_time_or_version_is_version_0_issued_now(
    settings: Settings,
) -> None:
    before = datetime.now(UTC).timestamp()
    raw = _claims(create_access_token(settings, 7))
    assert raw["ver"] == 0
    assert before - 1 <= raw["iat"] <= datetime.now(UTC).timestamp() + 1


def test_an_expired_token_says_so(settings: Settings) -> None:
    almost = datetime.now(UTC) - timedelta(minutes=15) + timedelta(seconds=30)
    assert decode_access_token(settings, create_access_token(settings, 1, almost)).user_id == 1
    gone = datetime.now(UTC) - timedelta(minutes=15) - timedelta(seconds=30)
    with pytest.raises(InvalidToken) as expired:
        decode_access_token(settings, create_access_token(settings, 1, gone))
    assert expired.value.message == "The access token has expired."


def test_a_token_of_another_type_says_so(settings: Settings) -> None:
    with pytest.raises(InvalidToken) as wrong:
        decode_access_token(settings, _signed(type="refresh"))
    assert wrong.value.message == "This token is not an access token."


@pytest.mark.parametrize("missing", ["exp", "iat", "sub", "type", "iss", "jti", "ver"])
def test_a_token_missing_a_claim_is_refused(settings: Settings, missing: str) -> None:
    with pytest.raises(InvalidToken):
        decode_access_token(settings, _signed(**{missing: None}))


def test_a_token_of_another_issuer_is_refused(settings: Settings) -> None:
    with pytest.raises(InvalidToken):
        decode_access_token(settings, _signed(iss="someone-else"))


@pytest.mark.parametrize("subject", ["1", "127", str(2**63 - 1)])
def test_every_positive_64_bit_subject_is_a_user_id(settings: Settings, subject: str) -> None:
    assert decode_access_token(settings, _signed(sub=subject)).user_id == int(subject)


@pytest.mark.parametrize("subject", ["0", str(2**63), str(2**64), "abc", "-1", 42, 7.0])
def test_a_subject_outside_the_user_ids_is_refused(settings: Settings, subject: object) -> None:
    with pytest.raises(InvalidToken):
        decode_access_token(settings, _signed(sub=subject))


@pytest.mark.parametrize("version", [0, 5])
def test_every_non_negative_version_is_accepted(settings: Settings, version: int) -> None:
    assert decode_access_token(settings, _signed(ver=version)).version == version


@pytest.mark.parametrize(
    "changes",
    [{"ver": -1}, {"ver": "0"}, {"ver": True}, {"ver": 0.0}, {"jti": ""}, {"jti": 7}],
    ids=repr,
)
def test_a_bad_version_or_token_id_is_refused(settings: Settings, changes: dict[str, Any]) -> None:
    with pytest.raises(InvalidToken):
        decode_access_token(settings, _signed(**changes))


def test_the_issuer_is_read_before_verification(settings: Settings) -> None:
    assert unverified_issuer(create_access_token(settings, 1)) == "sellerdesk"
    assert unverified_issuer(_signed(iss="https://example.supabase.co/auth/v1")) == (
        "https://example.supabase.co/auth/v1"
    )
    assert unverified_issuer(jwt.encode({"sub": "1"}, "another-secret-" * 3)) is None
    numeric = jwt.PyJWS().encode(json.dumps({"iss": 123}).encode(), SECRET, algorithm="HS256")
    assert unverified_issuer(numeric) is None
    with pytest.raises(InvalidToken):
        unverified_issuer("not-a-token")


def test_the_configured_algorithm_signs_the_token() -> None:
    settings = make_settings("sqlite+aiosqlite:///unused.db", None, "t", ALGORITHM="HS384")
    token = create_access_token(settings, 9)
    assert jwt.get_unverified_header(token)["alg"] == "HS384"
    assert decode_access_token(settings, token).user_id == 9


def test_a_token_made_without_a_time_is_issued_now_whatever_the_local_zone(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", "UTC+05")  # POSIX: five hours west of UTC
    time.tzset()
    try:
        token = create_access_token(settings, 7)
        assert abs(_claims(token)["iat"] - time.time()) < 5
        assert decode_access_token(settings, token).user_id == 7
    finally:
        monkeypatch.undo()
        time.tzset()


def test_a_refresh_token_carries_32_random_bytes_and_is_stored_as_its_sha256() -> None:
    token, stored = new_refresh_token()
    assert len(base64.urlsafe_b64decode(token + "=")) == 32
    assert stored == hashlib.sha256(token.encode()).hexdigest() == hash_refresh_token(token)
    assert new_refresh_token()[0] != token

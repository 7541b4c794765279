"""Access JWTs (HS256, algorithm pinned) and opaque refresh tokens stored as hashes."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from sellerdesk.config import Settings
from sellerdesk.errors import InvalidToken

ACCESS = "access"
REQUIRED_CLAIMS = ["exp", "iat", "sub", "type", "iss", "jti", "ver"]


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: int
    issued_at: datetime
    token_id: str
    version: int  # the user's `token_version` when issued


def create_access_token(
    settings: Settings, user_id: int, now: datetime | None = None, *, version: int = 0
) -> str:
    """A signed access token; `version` is the user's current `token_version`."""
    now = now or datetime.now(UTC)
    payload: dict[str, Any] = {
        "sub": str(user_id),
        "iat": now,
        "exp": now + timedelta(minutes=settings.ACCESS_TOKEN_EXPIRE_MINUTES),
        "type": ACCESS,
        "iss": settings.JWT_ISSUER,
        "jti": uuid.uuid4().hex,
        "ver": version,
    }
    return jwt.encode(payload, settings.SECRET_KEY, algorithm=settings.ALGORITHM)


def decode_access_token(settings: Settings, token: str) -> AccessClaims:
    """Verify signature, algorithm, issuer, expiry and type; raise InvalidToken otherwise."""
    try:
        claims = jwt.decode(
            token,
            settings.SECRET_KEY,
            algorithms=[settings.ALGORITHM],
            issuer=settings.JWT_ISSUER,
            options={"require": REQUIRED_CLAIMS, "verify_aud": False},
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidToken("The access token has expired.") from exc
    except jwt.PyJWTError as exc:
        raise InvalidToken() from exc
    if claims.get("type") != ACCESS:
        raise InvalidToken("This token is not an access token.")
    sub, jti, version = claims["sub"], claims["jti"], claims["ver"]
    if not isinstance(sub, str) or not sub.isdigit() or not 0 < int(sub) < 2**63:
        raise InvalidToken()
    if not isinstance(jti, str) or not jti or type(version) is not int or version < 0:
        raise InvalidToken()
    return AccessClaims(
        user_id=int(sub),
        issued_at=datetime.fromtimestamp(claims["iat"], UTC),
        token_id=jti,
        version=version,
    )


def unverified_issuer(token: str) -> str | None:
    """The `iss` claim before verification, to route a token to the right verifier."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise InvalidToken() from exc
    issuer = claims.get("iss")
    return issuer if isinstance(issuer, str) else None


def new_refresh_token() -> tuple[str, str]:
    """(token for the client, sha256 hex stored in the database)."""
    token = secrets.token_urlsafe(32)
    return token, hash_refresh_token(token)


def hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()

"""Verification of Supabase-issued access tokens (HS256 secret or JWKS with key caching)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import jwt
import structlog

from sellerdesk.config import Settings
from sellerdesk.errors import InvalidToken, ServiceUnavailable

log = structlog.get_logger(__name__)

ASYMMETRIC = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "EdDSA"]


@dataclass(frozen=True, slots=True)
class SupabaseIdentity:
    subject: str
    email: str | None
    email_verified: bool = False


def email_verified(claims: dict[str, Any], *, trust_user_metadata: bool) -> bool:
    """Whether the token vouches that its `email` was verified.

    Believed: a top-level `email_verified: true` or `email_confirmed_at` (what a Supabase
    custom access token hook adds from `auth.users.email_confirmed_at`), and
    `app_metadata.email_verified: true` (only admins can write app_metadata). Supabase also
    sets `user_metadata.email_verified` when the address is confirmed, but any user can
    overwrite their own user_metadata (`PUT /auth/v1/user {"data": ...}`), so it counts only
    when the operator opts in with `AUTH_SUPABASE_TRUST_USER_METADATA`.
    """
    if claims.get("email_verified") is True:
        return True
    confirmed_at = claims.get("email_confirmed_at")
    if isinstance(confirmed_at, str) and confirmed_at:
        return True
    sources = ["app_metadata", "user_metadata"] if trust_user_metadata else ["app_metadata"]
    for source in sources:
        metadata = claims.get(source)
        if isinstance(metadata, dict) and metadata.get("email_verified") is True:
            return True
    return False


class SupabaseVerifier:
    """Accepts only tokens for the `authenticated` audience from the configured issuer."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # The key set is cached for 10 minutes (a key removed from the JWKS stops working then);
        # an unknown `kid` forces at most one refetch per 30 s cooldown, so forged key ids cannot
        # make us hammer the endpoint. No per-kid LRU cache: it would never forget a revoked key.
        self._jwks = (
            jwt.PyJWKClient(
                settings.AUTH_SUPABASE_JWKS_URL,
                cache_keys=False,
                lifespan=600,
                timeout=5,
                cooldown_duration=30,
            )
            if settings.AUTH_SUPABASE_JWKS_URL
            else None
        )

    async def verify(self, token: str) -> SupabaseIdentity:
        try:
            header = jwt.get_unverified_header(token)
            algorithm = header.get("alg")
            key: Any
            if algorithm == "HS256" and self.settings.AUTH_SUPABASE_JWT_SECRET:
                key, algorithms = self.settings.AUTH_SUPABASE_JWT_SECRET, ["HS256"]
            elif algorithm in ASYMMETRIC and self._jwks is not None:
                # PyJWKClient fetches with urllib (blocking): keep it off the event loop.
                signing_key = await anyio.to_thread.run_sync(
                    self._jwks.get_signing_key_from_jwt, token
                )
                key, algorithms = signing_key, [algorithm]
            else:
                raise InvalidToken("Unsupported token algorithm.")
            required = ["exp", "sub", "aud"]
            if self.settings.AUTH_SUPABASE_ISSUER:
                required.append("iss")
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=self.settings.AUTH_SUPABASE_AUDIENCE,
                issuer=self.settings.AUTH_SUPABASE_ISSUER,
                options={"require": required},
            )
        except InvalidToken:
            raise
        except jwt.PyJWKClientConnectionError as exc:
            # We cannot check the token at all: a 401 would log a valid user out.
            log.error("supabase_jwks_unreachable", error=str(exc)[:200])
            raise ServiceUnavailable("Token verification is unavailable; retry later.") from exc
        except jwt.ExpiredSignatureError as exc:
            raise InvalidToken("The access token has expired.") from exc
        except (jwt.PyJWTError, ValueError) as exc:
            raise InvalidToken() from exc
        subject = claims["sub"]
        if not isinstance(subject, str) or not 0 < len(subject) <= 64:
            raise InvalidToken()
        email = claims.get("email")
        return SupabaseIdentity(
            subject=subject,
            email=email if isinstance(email, str) else None,
            email_verified=email_verified(
                claims, trust_user_metadata=self.settings.AUTH_SUPABASE_TRUST_USER_METADATA
            ),
        )

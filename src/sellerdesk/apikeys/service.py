"""API keys: minted once, stored as a SHA-256 hash, found by prefix, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from sellerdesk.apikeys.repository import ApiKeyRepository
from sellerdesk.errors import Conflict, Forbidden, InvalidToken, NotFound
from sellerdesk.kit.pagination import PageParams
from sellerdesk.models import ApiKey

log = structlog.get_logger(__name__)

_ALPHABET = string.ascii_letters + string.digits
_KEY_RE = re.compile(r"^(sdk_[A-Za-z0-9]{8})_[A-Za-z0-9]{40}$")
# `last_used_at` is written at most this often per key, to keep writes off the hot path.
TOUCH_INTERVAL = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class PayerIdentity:
    """Who pays for a data call: a user, through a Bearer token or one of their API keys."""

    user_id: int
    api_key_id: int | None = None

    @property
    def rate_key(self) -> str:
        """The rate-limit identity: the user, across all their keys and their Bearer tokens."""
        return f"user:{self.user_id}"


def _random(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def hash_key(key: str) -> str:
    # 286 bits of randomness make a plain SHA-256 safe (no password-style stretching needed).
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """(prefix, key): the key starts with the prefix and carries 238 more random bits."""
    prefix = f"sdk_{_random(8)}"
    return prefix, f"{prefix}_{_random(40)}"


async def create(
    session: AsyncSession, user_id: int, name: str, *, max_keys: int
) -> tuple[ApiKey, str]:
    """A new key for the user (409 past `max_keys` live keys); the whole key is shown only here."""
    keys = ApiKeyRepository(session)
    if not await keys.take_slot(user_id, max_keys):
        raise Conflict(
            f"You already have {max_keys} active API keys, the most allowed; "
            "revoke one to create another.",
            details={"max_keys": max_keys},
        )
    prefix, key = new_key()
    row = await keys.add(
        ApiKey(
            user_id=user_id,
            name=name,
            prefix=prefix,
            key_hash=hash_key(key),
            created_at=datetime.now(UTC),
        )
    )
    log.info("api_key_created", user_id=user_id, key_id=row.id, prefix=prefix)
    return row, key


async def list_keys(
    session: AsyncSession, user_id: int, params: PageParams
) -> tuple[list[ApiKey], int]:
    """One page of the user's live keys, newest first."""
    return await ApiKeyRepository(session).page_for_user(user_id, params.offset, params.page_size)


async def revoke(session: AsyncSession, user_id: int, key_id: int) -> None:
    """Revoke one of the user's keys (another user's or an unknown key → 404)."""
    keys = ApiKeyRepository(session)
    if not await keys.revoke(user_id, key_id, datetime.now(UTC)):
        raise NotFound("API key not found.")
    await keys.free_slot(user_id)
    log.info("api_key_revoked", user_id=user_id, key_id=key_id)


async def authenticate(session: AsyncSession, key: str) -> PayerIdentity:
    """The payer a presented key stands for; 401 for anything but a live key of an active user.

    No cache: the lookup is one query by a unique index (as cheap as the user load of a Bearer
    token) and is never stale, so a revoked key or a deactivated user stops at once.
    """
    match = _KEY_RE.match(key)
    if match is None:
        raise InvalidToken("The API key is not valid.")
    keys = ApiKeyRepository(session)
    owner = await keys.owner_by_prefix(match.group(1))
    if owner is None or not hmac.compare_digest(hash_key(key), owner.key_hash):
        raise InvalidToken("The API key is not valid.")
    if not owner.user_active:
        raise Forbidden("This account is inactive.")
    now = datetime.now(UTC)
    if owner.last_used_at is None or owner.last_used_at < now - TOUCH_INTERVAL:
        await keys.touch(owner.key_id, now, now - TOUCH_INTERVAL)
    return PayerIdentity(user_id=owner.user_id, api_key_id=owner.key_id)

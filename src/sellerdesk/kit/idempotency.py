"""Client `Idempotency-Key` support for POST routes that create or charge something.

Usage, one line per route (below the router decorator)::

    @router.post("", status_code=201, response_model=OrderPublic, responses=errors(409, 422))
    @idempotent
    async def checkout(body: CheckoutIn, session: SessionDep, user: CurrentUser) -> OrderPublic:
        ...

The caller is found among the route's parameters: a `User`, or an object with `user_id` or
`.user.id` (e.g. a `Payer`); name it with `@idempotent(user_param="payer")` when it is not the
first such parameter. The route receives nothing new; the decorator adds the documented
`Idempotency-Key` header, the request (unless the route takes it itself), its `Response` and the
request session to the signature.

Semantics (per user and key, for 24 h):
- no header: the route runs every time;
- first use: the key is *claimed* (INSERT ... ON CONFLICT DO NOTHING) and committed in its own
  short transaction before the work, so a concurrent duplicate sees it; the route then runs in a
  fresh transaction of the same session, and its response (status, body bytes, headers) is
  written to the claimed row in that same transaction, so work and stored response commit
  together or not at all;
- same key, same request (sha256 of method, path and the canonical JSON body as sent) after
  completion: the stored response is replayed byte for byte, with `Idempotent-Replayed: true`;
- same key, different request: 422 `idempotency_conflict`;
- same key while the first request is still running: 409 `idempotency_conflict`;
- the route raises (any 4xx/5xx error): nothing of its work is kept and the claim is deleted, so
  the retry runs again. We do not store error responses as final (unlike Stripe, which stores
  4xx): our 4xx answers depend on state that changes (stock comes back, credits are bought), and
  a request whose work was not done is always safe to run again;
- a claim left without a response for `IDEMPOTENCY_LEASE_SECONDS` (a crashed worker) and a key
  older than 24 h are treated as absent: the next request takes the key over. A request whose
  claim was taken over fails with 409 when it tries to store, and its work rolls back.

Paid routes (`credits.metering`) commit their charge before the lookup, so charge and stored
response cannot commit together; they compose through the key instead. The wrapper tells the
route's work which key it runs under (`client_key(request)`); the meter keys the charge by it
in the ledger (unique per account) and records the charge's outcome in the transaction that
stores the response, so one key is charged at most once while it lives, also when a retry takes
the key over from an attempt that outlived the lease (the retry carries on with that attempt's
charge). A replay answers `X-Credits-Charged: 0`: the replay itself charged nothing.

Routes that call a payment provider (checkout's intent, credit purchases, refunds) commit a
record of what they are about to do before the call (`payments.service`), so a failed or cut-off
attempt leaves it behind although the claim is released or abandoned: the retry under the same
key finds it (the order's payment, the purchase kept for the key, the refund kept for the key)
and carries on with it, under the same provider idempotency key, instead of starting again.
The provider's answer and the stored response still commit together.

Only one connection per request: the request session's transaction (opened by the auth lookup)
is committed before the claim, the claim is its own committed transaction, and the work starts
a new one. SQLite never sees two transactions of one request at once.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, TypeVar, cast, get_type_hints, overload

import structlog
from fastapi import Header, Request, Response
from fastapi.encoders import jsonable_encoder
from pydantic import TypeAdapter
from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sellerdesk.db import SessionDep, commit, insert_for
from sellerdesk.errors import AppError
from sellerdesk.models import IdempotencyKey, User
from sellerdesk.models.base import utcnow

log = structlog.get_logger(__name__)

KEY_TTL = timedelta(hours=24)
HEADER = "Idempotency-Key"
REPLAY_HEADER = "Idempotent-Replayed"
CHARGED_HEADER = "x-credits-charged"
_STATE_KEY = "idempotency_key"
# Headers a replay must repeat; hop-by-hop and per-request ones are left out.
_SKIPPED_HEADERS = {"content-length", "date", "server", "set-cookie", "x-request-id"}

Endpoint = TypeVar("Endpoint", bound=Callable[..., Awaitable[Any]])


class IdempotencyConflict(AppError):
    status_code = 409
    code = "idempotency_conflict"
    message = "A request with this Idempotency-Key is still being processed; retry shortly."


class IdempotencyMismatch(AppError):
    status_code = 422
    code = "idempotency_conflict"
    message = "This Idempotency-Key was already used with a different request."


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status_code: int
    body: bytes
    headers: dict[str, str]

    def to_response(self, *, replayed: bool) -> Response:
        headers = dict(self.headers)
        if replayed:
            headers[REPLAY_HEADER] = "true"
            for name in headers:
                if name.lower() == CHARGED_HEADER:
                    headers[name] = "0"  # the replay charged nothing
        return Response(content=self.body, status_code=self.status_code, headers=headers)


@dataclass(frozen=True, slots=True)
class Claim:
    """The outcome of claiming a key: ours to run (`row_id`) or an earlier response to replay."""

    row_id: int | None = None
    claimed_at: datetime | None = None  # with row_id, tells our claim from a later one
    replay: StoredResponse | None = None


def request_hash(method: str, path: str, body: bytes) -> str:
    """sha256 of method, path and the body as sent; JSON is canonicalised (key order, spacing)."""
    canonical: bytes
    try:
        canonical = json.dumps(
            json.loads(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
    except (ValueError, UnicodeDecodeError):
        canonical = body
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), canonical):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


async def claim_key(
    session: AsyncSession,
    user_id: int,
    key: str,
    fingerprint: str,
    *,
    lease: timedelta,
    now: datetime | None = None,
) -> Claim:
    """Claim `key` for this request in its own committed transaction, or say what it holds."""
    for _ in range(3):
        now = now or utcnow()
        claim: Any = insert_for(session, IdempotencyKey)
        inserted = await session.scalar(
            claim.values(user_id=user_id, key=key, request_hash=fingerprint, created_at=now)
            .on_conflict_do_nothing(index_elements=["user_id", "key"])
            .returning(IdempotencyKey.id)
        )
        if inserted is not None:
            await commit(session)
            return Claim(row_id=inserted, claimed_at=now)
        row = (
            await session.execute(
                select(IdempotencyKey).where(
                    IdempotencyKey.user_id == user_id, IdempotencyKey.key == key
                )
            )
        ).scalar_one_or_none()
        if row is None:
            await commit(session)  # released between our INSERT and SELECT: try again
            continue
        session.expunge(row)
        if _is_stale(row, now, lease):
            # Take over an expired key or an abandoned claim; the DELETE is conditional so only
            # one of several concurrent retries removes it, the others then meet the new claim.
            await session.execute(
                delete(IdempotencyKey).where(
                    IdempotencyKey.id == row.id,
                    or_(
                        IdempotencyKey.created_at <= now - KEY_TTL,
                        and_(
                            IdempotencyKey.completed_at.is_(None),
                            IdempotencyKey.created_at <= now - lease,
                        ),
                    ),
                )
            )
            await commit(session)
            continue
        await commit(session)
        if row.request_hash != fingerprint:
            raise IdempotencyMismatch()
        if row.completed_at is None or row.status_code is None:
            raise IdempotencyConflict()
        return Claim(
            replay=StoredResponse(
                row.status_code, row.response_body or b"", row.response_headers or {}
            )
        )
    raise IdempotencyConflict()


def client_key(request: Request) -> str | None:
    """The `Idempotency-Key` the current request's work runs under (None without one)."""
    key: str | None = getattr(request.state, _STATE_KEY, None)
    return key


def _is_stale(row: IdempotencyKey, now: datetime, lease: timedelta) -> bool:
    if row.created_at <= now - KEY_TTL:
        return True
    return row.completed_at is None and row.created_at <= now - lease


def _ours(claim: Claim) -> tuple[Any, ...]:
    """WHERE clauses matching our own unfinished claim (not one that took it over)."""
    return (
        IdempotencyKey.id == claim.row_id,
        IdempotencyKey.created_at == claim.claimed_at,
        IdempotencyKey.completed_at.is_(None),
    )


async def store_response(session: AsyncSession, claim: Claim, stored: StoredResponse) -> None:
    """Write the response onto our claim, in the work's transaction; fail if we lost the claim."""
    result = await session.execute(
        update(IdempotencyKey)
        .where(*_ours(claim))
        .values(
            status_code=stored.status_code,
            response_body=stored.body,
            response_headers=stored.headers,
            completed_at=utcnow(),
        )
        .returning(IdempotencyKey.id)
    )
    if result.scalar_one_or_none() is None:
        raise IdempotencyConflict("This request's Idempotency-Key was taken over; retry it.")


async def release_key(session: AsyncSession, claim: Claim) -> None:
    """Forget an unfinished claim so a retry runs the work (committed at once)."""
    await session.execute(delete(IdempotencyKey).where(*_ours(claim)))
    await commit(session)


async def purge_expired_keys(
    sessionmaker: async_sessionmaker[AsyncSession], now: datetime | None = None
) -> int:
    """Delete keys older than 24 h (a periodic job); returns how many went."""
    cutoff = (now or utcnow()) - KEY_TTL
    async with sessionmaker() as session:
        result = await session.execute(
            delete(IdempotencyKey)
            .where(IdempotencyKey.created_at < cutoff)
            .returning(IdempotencyKey.id)
        )
        purged = len(result.all())
        await session.commit()
    if purged:
        log.info("idempotency_keys_purged", count=purged)
    return purged


def _caller_id(value: Any) -> int:
    if isinstance(value, User):
        return value.id
    user_id = getattr(value, "user_id", None)
    if isinstance(user_id, int):
        return user_id
    user = getattr(value, "user", None)
    if isinstance(user, User):
        return user.id
    raise TypeError(f"cannot tell the caller's user id from {type(value).__name__}")


@functools.lru_cache(maxsize=256)
def _adapter(model: Any) -> TypeAdapter[Any]:
    return TypeAdapter(model)


def _to_stored(
    result: Any, response_model: Any, route_status: int, sub_response: Response
) -> StoredResponse:
    """The bytes FastAPI would have sent for `result`, with the route's status and headers."""
    if isinstance(result, Response):
        headers = {k: v for k, v in result.headers.items() if k.lower() not in _SKIPPED_HEADERS}
        return StoredResponse(result.status_code, bytes(result.body), headers)
    if response_model is not None:
        # Like FastAPI: validate against the declared model (ORM objects, filtering), then dump.
        adapter = _adapter(response_model)
        body = adapter.dump_json(
            adapter.validate_python(result, from_attributes=True), by_alias=True
        )
    else:
        body = json.dumps(
            jsonable_encoder(result), ensure_ascii=False, separators=(",", ":")
        ).encode()
    headers = {k: v for k, v in sub_response.headers.items() if k.lower() not in _SKIPPED_HEADERS}
    headers["content-type"] = "application/json"
    return StoredResponse(sub_response.status_code or route_status, body, headers)


@overload
def idempotent(endpoint: Endpoint, /) -> Endpoint: ...
@overload
def idempotent(*, user_param: str | None = None) -> Callable[[Endpoint], Endpoint]: ...
def idempotent(
    endpoint: Endpoint | None = None, /, *, user_param: str | None = None
) -> Endpoint | Callable[[Endpoint], Endpoint]:
    """Make a POST route honour `Idempotency-Key` (see the module docstring)."""
    if endpoint is None:
        return functools.partial(_wrap, user_param=user_param)
    return _wrap(endpoint, user_param=user_param)


def _wrap(endpoint: Endpoint, *, user_param: str | None) -> Endpoint:
    hints = get_type_hints(endpoint, include_extras=True)
    signature = inspect.signature(endpoint)
    params = [
        p.replace(annotation=hints.get(p.name, p.annotation)) for p in signature.parameters.values()
    ]
    if user_param is None:
        user_param = next(
            (
                p.name
                for p in params
                if _base_type(p.annotation) is User or p.name in {"user", "payer"}
            ),
            None,
        )
    if user_param is None or user_param not in signature.parameters:
        raise TypeError(f"@idempotent: {endpoint.__name__} has no caller parameter")
    # FastAPI hands the request to one parameter only: the route's own, if it has one.
    own_request = next((p.name for p in params if _base_type(p.annotation) is Request), None)
    request_param = own_request or "_idempotency_request"
    extra = [
        inspect.Parameter(
            "_idempotency_key",
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[
                str | None,
                Header(
                    alias=HEADER,
                    min_length=1,
                    max_length=255,
                    description="Repeat a request safely: same key and body → same response.",
                ),
            ],
        ),
        inspect.Parameter(
            "_idempotency_response", inspect.Parameter.KEYWORD_ONLY, annotation=Response
        ),
        inspect.Parameter("_idempotency_db", inspect.Parameter.KEYWORD_ONLY, annotation=SessionDep),
    ]
    if own_request is None:
        extra.append(
            inspect.Parameter(request_param, inspect.Parameter.KEYWORD_ONLY, annotation=Request)
        )
    # Keyword-only throughout: FastAPI passes every value by name, and defaults may then mix.
    new_signature = signature.replace(
        parameters=[p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params] + extra,
        return_annotation=hints.get("return", signature.return_annotation),
    )
    caller = user_param

    @functools.wraps(endpoint)
    async def wrapper(**kwargs: Any) -> Any:
        key: str | None = kwargs.pop("_idempotency_key")
        request: Request = kwargs[request_param] if own_request else kwargs.pop(request_param)
        sub_response: Response = kwargs.pop("_idempotency_response")
        session: AsyncSession = kwargs.pop("_idempotency_db")
        if key is None:
            return await endpoint(**kwargs)
        fingerprint = request_hash(request.method, request.url.path, await request.body())
        # End the transaction the auth lookup opened, so the claim below commits on its own.
        await commit(session)
        lease = timedelta(seconds=request.app.state.settings.IDEMPOTENCY_LEASE_SECONDS)
        claim = await claim_key(session, _caller_id(kwargs[caller]), key, fingerprint, lease=lease)
        if claim.replay is not None:
            return claim.replay.to_response(replayed=True)
        setattr(request.state, _STATE_KEY, key)
        try:
            result = await endpoint(**kwargs)
            route = request.scope.get("route")
            stored = _to_stored(
                result,
                getattr(route, "response_model", None),
                getattr(route, "status_code", None) or 200,
                sub_response,
            )
            await store_response(session, claim, stored)
        except BaseException:
            await session.rollback()
            session.info.pop("after_commit", None)
            await release_key(session, claim)
            raise
        return stored.to_response(replayed=False)

    wrapper.__signature__ = new_signature  # type: ignore[attr-defined]
    return cast(Endpoint, wrapper)


def _base_type(annotation: Any) -> Any:
    """`Annotated[User, Depends(...)]` → `User`."""
    return (
        getattr(annotation, "__origin__", annotation)
        if hasattr(annotation, "__metadata__")
        else annotation
    )

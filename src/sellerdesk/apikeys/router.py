"""API key routes: create (the key is shown once), list, revoke."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from sellerdesk.apikeys import service
from sellerdesk.apikeys.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyPublic
from sellerdesk.auth.dependencies import CurrentUser
from sellerdesk.db import SessionDep
from sellerdesk.kit.openapi import errors
from sellerdesk.kit.pagination import Page, PageDep
from sellerdesk.kit.types import IdPath

router = APIRouter(prefix="/api-keys", tags=["api-keys"])


@router.post(
    "", status_code=201, response_model=ApiKeyCreated, responses=errors(401, 403, 409, 422)
)
async def create_api_key(
    body: ApiKeyCreate, session: SessionDep, user: CurrentUser, request: Request
) -> ApiKeyCreated:
    """Create an API key (at most `API_KEYS_PER_USER` live ones); the `key` is shown only here."""
    max_keys = request.app.state.settings.API_KEYS_PER_USER
    row, key = await service.create(session, user.id, body.name, max_keys=max_keys)
    return ApiKeyCreated(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        key=key,
    )


@router.get("", response_model=Page[ApiKeyPublic], responses=errors(401, 403, 422))
async def list_api_keys(
    session: SessionDep, user: CurrentUser, params: PageDep
) -> Page[ApiKeyPublic]:
    """The caller's live keys, newest first, without their secrets."""
    keys, total = await service.list_keys(session, user.id, params)
    return Page.of([ApiKeyPublic.model_validate(k) for k in keys], total, params)


@router.delete("/{key_id}", status_code=204, responses=errors(401, 403, 404, 422))
async def revoke_api_key(key_id: IdPath, session: SessionDep, user: CurrentUser) -> Response:
    """Revoke a key: it stops working at once."""
    await service.revoke(session, user.id, key_id)
    return Response(status_code=204)

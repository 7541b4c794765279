"""`Payer`: the caller of a paid data route, by Bearer token or `X-API-Key`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.security import APIKeyHeader

from sellerdesk.apikeys import service
from sellerdesk.apikeys.service import PayerIdentity
from sellerdesk.auth import service as auth_service
from sellerdesk.auth.dependencies import AuthContextDep, oauth2_scheme
from sellerdesk.db import SessionDep
from sellerdesk.errors import NotAuthenticated
from sellerdesk.kit.openapi import declares

api_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False)


@declares(401, 403, requires_auth=True)
async def get_payer(
    session: SessionDep,
    ctx: AuthContextDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
    api_key: Annotated[str | None, Depends(api_key_scheme)],
) -> PayerIdentity:
    """An API key when one is sent, else the Bearer token's user."""
    if api_key:
        return await service.authenticate(session, api_key)
    if token:
        user = await auth_service.user_from_token(session, ctx, token)
        return PayerIdentity(user_id=user.id)
    raise NotAuthenticated()


Payer = Annotated[PayerIdentity, Depends(get_payer)]

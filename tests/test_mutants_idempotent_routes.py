"""`@idempotent` answers the bytes FastAPI would have sent without it, for every kind of route.

The shop's idempotent routes all return a Pydantic model of their declared response model, so
the other kinds the decorator supports (an ORM-like object read through an aliased model, no
response model, a `Response` of the route's own) were held by no test; the mutation run
(docs/mutation.md) showed it. Each route here has a twin without the decorator: with an
`Idempotency-Key` the first answer and its replay must be the twin's bytes.
"""

from __future__ import annotations

from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Response
from pydantic import BaseModel, Field

from sellerdesk.auth.dependencies import CurrentUser
from sellerdesk.kit.idempotency import idempotent
from sellerdesk.models import User
from tests.orders_factories import make_user

router = APIRouter(prefix="/test-idempotent")


class Item(BaseModel):
    """A response model with an alias and no `from_attributes` config (FastAPI reads objects
    through it all the same)."""

    name: str = Field(alias="itemName")
    count: int


class Row:
    """What an ORM row looks like to a response model: attributes, one of them not exposed."""

    def __init__(self) -> None:
        self.itemName = "Crème brûlée"  # read through the alias
        self.count = 2
        self.secret = "not in the model"


BODY = {"label": "Crème brûlée", "sizes": [1, 2]}


@router.post("/model", status_code=201, response_model=Item)
async def model_plain(user: CurrentUser) -> Any:
    return Row()


@router.post("/model-key", status_code=201, response_model=Item)
@idempotent
async def model_keyed(user: CurrentUser) -> Any:
    return Row()


@router.post("/dict", response_model=None)
async def dict_plain(user: CurrentUser) -> Any:
    return BODY


@router.post("/dict-key", response_model=None)
@idempotent
async def dict_keyed(user: CurrentUser) -> Any:
    return BODY


@router.post("/raw-key", response_model=None)
@idempotent
async def raw_keyed(user: CurrentUser) -> Response:
    response = Response(b"raw bytes", media_type="text/plain", headers={"X-Kind": "raw"})
    response.set_cookie("seen", "1")
    return response


@router.post("/empty-key", response_model=None)
@idempotent
async def empty_keyed(user: CurrentUser) -> Response:
    return Response(b"", media_type="text/plain")


async def note(response: Response) -> None:
    """A dependency writing on the response, as the paid routes' meter does."""
    response.headers["X-Note"] = "kept"
    response.set_cookie("seen", "1")


@router.post("/cookie-key", status_code=201, response_model=Item)
@idempotent
async def cookie_keyed(user: CurrentUser, _: Annotated[None, Depends(note)]) -> Any:
    return Row()


class Owner:
    """A caller known only through `.user` (the decorator's third way to find the user)."""

    def __init__(self, user: User) -> None:
        self.user = user


async def get_owner(user: CurrentUser) -> Owner:
    return Owner(user)


@router.post("/owner-key", response_model=None)
@idempotent(user_param="owner")
async def owner_keyed(owner: Annotated[Owner, Depends(get_owner)]) -> Any:
    return {"user_id": owner.user.id}


@pytest.fixture
async def app(app: FastAPI) -> FastAPI:
    app.include_router(router)
    return app


@pytest.mark.parametrize("kind", ["model", "dict"])
async def test_the_first_answer_and_its_replay_are_what_fastapi_sends_without_a_key(
    app: FastAPI, client: httpx.AsyncClient, kind: str
) -> None:
    user = await make_user(app)
    plain = await client.post(f"/test-idempotent/{kind}", headers=user.headers)
    keyed = {**user.headers, "Idempotency-Key": f"{kind}-1"}
    first = await client.post(f"/test-idempotent/{kind}-key", headers=keyed)
    replay = await client.post(f"/test-idempotent/{kind}-key", headers=keyed)
    assert plain.status_code == first.status_code == replay.status_code
    assert first.content == plain.content, first.text
    assert replay.content == plain.content
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert first.headers["content-type"] == plain.headers["content-type"]


async def test_a_model_answer_uses_the_alias_and_leaves_unexposed_attributes_out(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    user = await make_user(app)
    keyed = {**user.headers, "Idempotency-Key": "model-2"}
    first = await client.post("/test-idempotent/model-key", headers=keyed)
    assert first.status_code == 201
    assert first.json() == {"itemName": "Crème brûlée", "count": 2}


async def test_a_response_of_the_route_is_replayed_with_its_headers_but_not_its_cookie(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    user = await make_user(app)
    keyed = {**user.headers, "Idempotency-Key": "raw-1"}
    first = await client.post("/test-idempotent/raw-key", headers=keyed)
    replay = await client.post("/test-idempotent/raw-key", headers=keyed)
    for answer in (first, replay):
        assert answer.status_code == 200
        assert answer.content == b"raw bytes"
        assert answer.headers["X-Kind"] == "raw"
        assert answer.headers["content-type"].startswith("text/plain")
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert "set-cookie" not in replay.headers  # a replay never hands out the first one's cookie


async def test_a_caller_found_through_its_user_keys_the_requests_per_user(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    alice, bob = await make_user(app), await make_user(app)
    for _ in range(2):  # the second round replays each user's own answer
        for user in (alice, bob):
            answer = await client.post(
                "/test-idempotent/owner-key", headers={**user.headers, "Idempotency-Key": "same"}
            )
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"user_id": user.id}


async def test_an_empty_answer_is_replayed_empty(app: FastAPI, client: httpx.AsyncClient) -> None:
    user = await make_user(app)
    keyed = {**user.headers, "Idempotency-Key": "empty-1"}
    first = await client.post("/test-idempotent/empty-key", headers=keyed)
    replay = await client.post("/test-idempotent/empty-key", headers=keyed)
    assert first.status_code == replay.status_code == 200
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert first.content == replay.content == b""


async def test_headers_a_route_sets_are_replayed_but_not_its_cookie(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    user = await make_user(app)
    keyed = {**user.headers, "Idempotency-Key": "cookie-1"}
    await client.post("/test-idempotent/cookie-key", headers=keyed)
    replay = await client.post("/test-idempotent/cookie-key", headers=keyed)
    assert replay.status_code == 201
    assert replay.headers["X-Note"] == "kept"
    assert replay.headers["content-type"] == "application/json"
    assert "set-cookie" not in replay.headers

"""The SP-API fake as fixtures: load with `pytest_plugins = ["tests.spapi_fixtures"]`.

`spapi_server` runs one fake per test module; `spapi` resets it around each test;
`fast_client` is a client of an app on the fake whose seller may make 50 calls/s.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.conftest import AppFactory
from tests.fakes.spapi import FakeSpApi, serve_fake
from tests.spapi_helpers import asgi_client, spapi_settings


@pytest.fixture(scope="module")
def spapi_server() -> Iterator[FakeSpApi]:
    with serve_fake() as fake:
        yield fake


@pytest.fixture
def spapi(spapi_server: FakeSpApi) -> Iterator[FakeSpApi]:
    spapi_server.reset()
    yield spapi_server
    spapi_server.reset()


@pytest.fixture
async def fast_client(make_app: AppFactory, spapi: FakeSpApi) -> AsyncIterator[httpx.AsyncClient]:
    """For tests of retries and parsing, which should not wait on the 2/s default pace."""
    app = await make_app(**spapi_settings(spapi, SPAPI_DEFAULT_RATE=50.0))
    async with asgi_client(app) as client:
        yield client

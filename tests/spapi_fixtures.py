"""The SP-API fake as fixtures: load with `pytest_plugins = ["tests.spapi_fixtures"]`.

`spapi_server` runs one fake per test module; `spapi` resets it around each test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.spapi import FakeSpApi, serve_fake


@pytest.fixture(scope="module")
def spapi_server() -> Iterator[FakeSpApi]:
    with serve_fake() as fake:
        yield fake


@pytest.fixture
def spapi(spapi_server: FakeSpApi) -> Iterator[FakeSpApi]:
    spapi_server.reset()
    yield spapi_server
    spapi_server.reset()

"""Selling regions: every marketplace goes to its region's host with that region's seller
credentials; a marketplace of a region without credentials is a 422 that costs nothing."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sellerdesk.amazon.regions import MARKETPLACES, REGION_HOSTS, region_settings
from sellerdesk.config import Settings
from tests.conftest import AppFactory
from tests.credits_factories import assert_ledger_consistent, balance, grant, ledger
from tests.factories import register, register_admin
from tests.fakes.spapi import (
    CLIENT_ID,
    CLIENT_SECRET,
    EU_REFRESH_TOKEN,
    REFRESH_TOKEN,
    FakeSpApi,
    catalog_item,
    inventory_summary,
)
from tests.spapi_helpers import ASIN, FNSKU, asgi_client, spapi_settings

pytest_plugins = ["tests.spapi_fixtures"]


async def test_every_marketplace_is_asked_on_its_regions_host_with_its_regions_token(
    make_app: AppFactory, spapi: FakeSpApi, free_data_calls: None
) -> None:
    spapi.catalog["B0EXAMPLE1"] = catalog_item("B0EXAMPLE1")
    spapi.rate_limit = "100.0"  # 23 lookups in a row: not a pacing test
    app = await make_app(
        **spapi_settings(spapi, regions=("NA", "EU", "FE"), SPAPI_DEFAULT_RATE=100.0)
    )
    async with asgi_client(app) as client:
        account = await register(client)
        for code, place in MARKETPLACES.items():
            response = await client.post(
                ASIN,
                headers=account.headers,
                json={"asin": "B0EXAMPLE1", "marketplace": code.lower()},
            )
            assert response.status_code == 200, (code, response.text)
            assert response.json()["marketplace"] == code
            call = spapi.received[-1]
            assert (call.region, call.token_region) == (place.region, place.region), code
            assert call.params["marketplaceIds"] == [place.marketplace_id]
    assert sorted(spapi.tokens_issued) == ["EU", "FE", "NA"]  # one exchange per region


async def test_gb_is_read_as_uk(
    make_app: AppFactory, spapi: FakeSpApi, free_data_calls: None
) -> None:
    spapi.catalog["B0EXAMPLE1"] = catalog_item("B0EXAMPLE1")
    app = await make_app(**spapi_settings(spapi))
    async with asgi_client(app) as client:
        account = await register(client)
        response = await client.post(
            ASIN, headers=account.headers, json={"asin": "B0EXAMPLE1", "marketplace": "GB"}
        )
    assert response.status_code == 200
    assert response.json()["marketplace"] == "UK"
    assert spapi.received[-1].params["marketplaceIds"] == ["A1F83G8C2ARO7P"]


async def test_a_jp_lookup_without_far_east_credentials_is_a_clear_422_and_not_charged(
    make_app: AppFactory, spapi: FakeSpApi
) -> None:
    spapi.catalog["B0EXAMPLE1"] = catalog_item("B0EXAMPLE1")
    app = await make_app(**spapi_settings(spapi, regions=("NA", "EU")))
    async with asgi_client(app) as client:
        admin = await register_admin(client, app)
        user = await register(client)
        assert (await grant(client, admin, user.id, 5)).status_code == 200
        response = await client.post(
            ASIN, headers=user.headers, json={"asin": "B0EXAMPLE1", "marketplace": "JP"}
        )
        assert response.status_code == 422
        body = response.json()
        assert body["error"] == "validation_error"
        assert "JP" in body["message"] and "Far East" in body["message"]
        assert "SPAPI_FE_REFRESH_TOKEN" in body["message"]
        assert body["details"][0]["loc"] == ["body", "marketplace"]
        assert "X-Credits-Charged" not in response.headers
        assert await balance(client, user) == 5
        assert [(e.kind, e.amount) for e in await ledger(app, user.id)] == [("grant", 5)]
    assert spapi.calls["token"] == 0 and not spapi.received  # Amazon was never asked
    await assert_ledger_consistent(app)


async def test_the_regional_setting_names_work_without_the_old_aliases(
    make_app: AppFactory, spapi: FakeSpApi, free_data_calls: None
) -> None:
    spapi.catalog["B0EXAMPLE1"] = catalog_item("B0EXAMPLE1")
    settings = spapi_settings(spapi, regions=())
    del settings["SPAPI_ENDPOINT"]
    app = await make_app(
        **settings,
        SPAPI_NA_ENDPOINT=spapi.urls["NA"],
        SPAPI_NA_REFRESH_TOKEN=REFRESH_TOKEN,
    )
    async with asgi_client(app) as client:
        account = await register(client)
        response = await client.post(ASIN, headers=account.headers, json={"asin": "B0EXAMPLE1"})
    assert response.status_code == 200, response.text
    assert (spapi.received[-1].region, spapi.received[-1].token_region) == ("NA", "NA")


async def test_a_seller_of_europe_only_resolves_fnskus_from_its_european_inventory(
    make_app: AppFactory, spapi: FakeSpApi, free_data_calls: None
) -> None:
    spapi.inventory = [inventory_summary("X0EUROPE01", "B0EUROPE01", "EU-1", "Flasche")]
    app = await make_app(**spapi_settings(spapi, regions=("EU",), SPAPI_INVENTORY_MARKETPLACE="DE"))
    async with asgi_client(app) as client:
        account = await register(client)
        found = await client.post(FNSKU, headers=account.headers, json={"fnsku": "X0EUROPE01"})
        assert found.status_code == 200, found.text
        assert found.json()["asin"] == "B0EUROPE01"
        call = spapi.received[-1]
        assert (call.region, call.token_region) == ("EU", "EU")
        assert call.params["granularityId"] == ["A1PA6795UKMFR9"]
        us = await client.post(ASIN, headers=account.headers, json={"asin": "B0EXAMPLE1"})
        assert us.status_code == 422
        assert "SPAPI_NA_REFRESH_TOKEN" in us.json()["message"]


async def test_start_up_refuses_an_inventory_marketplace_outside_the_configured_regions(
    make_app: AppFactory, spapi: FakeSpApi
) -> None:
    with pytest.raises(RuntimeError) as refused:
        await make_app(
            **spapi_settings(spapi, regions=("NA", "EU"), SPAPI_INVENTORY_MARKETPLACE="JP")
        )
    message = str(refused.value)
    assert "SPAPI_INVENTORY_MARKETPLACE=JP" in message and "Far East" in message
    assert "SPAPI_FE_REFRESH_TOKEN" in message
    assert "configured region (NA, EU)" in message


async def test_start_up_refuses_sp_api_without_the_application_credentials(
    make_app: AppFactory, spapi: FakeSpApi
) -> None:
    with pytest.raises(RuntimeError, match="SPAPI_CLIENT_SECRET"):
        await make_app(**spapi_settings(spapi, SPAPI_CLIENT_SECRET=None))


def test_an_alias_and_its_regional_setting_may_not_disagree() -> None:
    with pytest.raises(ValidationError, match="SPAPI_REFRESH_TOKEN is an alias"):
        Settings(  # type: ignore[call-arg]
            _env_file=None, SPAPI_REFRESH_TOKEN=REFRESH_TOKEN, SPAPI_NA_REFRESH_TOKEN="other"
        )
    with pytest.raises(ValidationError, match="SPAPI_ENDPOINT is an alias"):
        Settings(  # type: ignore[call-arg]
            _env_file=None, SPAPI_ENDPOINT="http://a", SPAPI_NA_ENDPOINT="http://b"
        )
    same = Settings(  # type: ignore[call-arg]
        _env_file=None, SPAPI_REFRESH_TOKEN=REFRESH_TOKEN, SPAPI_NA_REFRESH_TOKEN=REFRESH_TOKEN
    )
    assert region_settings(same, "NA").refresh_token == REFRESH_TOKEN


def test_regions_default_to_amazons_hosts() -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        SPAPI_CLIENT_ID=CLIENT_ID,
        SPAPI_CLIENT_SECRET=CLIENT_SECRET,
        SPAPI_EU_REFRESH_TOKEN=EU_REFRESH_TOKEN,
    )
    assert {r: region_settings(settings, r).endpoint for r in ("NA", "EU", "FE")} == {
        "NA": "https://sellingpartnerapi-na.amazon.com",
        "EU": "https://sellingpartnerapi-eu.amazon.com",
        "FE": "https://sellingpartnerapi-fe.amazon.com",
    }
    assert REGION_HOSTS["EU"] == "https://sellingpartnerapi-eu.amazon.com"
    assert [r for r in ("NA", "EU", "FE") if region_settings(settings, r).configured] == ["EU"]


def test_the_marketplace_table_is_amazons() -> None:
    by_region = {
        region: sorted(code for code, m in MARKETPLACES.items() if m.region == region)
        for region in ("NA", "EU", "FE")
    }
    assert by_region == {
        "NA": ["BR", "CA", "MX", "US"],
        "EU": [
            "AE",
            "BE",
            "DE",
            "EG",
            "ES",
            "FR",
            "IE",
            "IN",
            "IT",
            "NL",
            "PL",
            "SA",
            "SE",
            "TR",
            "UK",
            "ZA",
        ],
        "FE": ["AU", "JP", "SG"],
    }
    ids = {code: m.marketplace_id for code, m in MARKETPLACES.items()}
    assert ids["US"] == "ATVPDKIKX0DER" and ids["DE"] == "A1PA6795UKMFR9"
    assert ids["JP"] == "A1VC38T7YXB528" and ids["BE"] == "AMEN7PMS3EDWL"
    assert ids["ZA"] == "AE08WJ6YKNBMC" and ids["SG"] == "A19VAU5U5O7RUS"
    assert len(set(ids.values())) == len(ids)


async def test_start_up_refuses_an_unknown_inventory_marketplace_and_reads_gb_as_uk(
    make_app: AppFactory, spapi: FakeSpApi
) -> None:
    with pytest.raises(RuntimeError) as refused:
        await make_app(**spapi_settings(spapi, regions=("NA",), SPAPI_INVENTORY_MARKETPLACE="XX"))
    assert "SPAPI_INVENTORY_MARKETPLACE=XX is not an Amazon marketplace code" in str(refused.value)
    app = await make_app(**spapi_settings(spapi, regions=("EU",), SPAPI_INVENTORY_MARKETPLACE="gb"))
    assert app.state.settings.SPAPI_INVENTORY_MARKETPLACE == "UK"

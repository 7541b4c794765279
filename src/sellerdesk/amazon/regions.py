"""Amazon's marketplaces, the selling region that serves each one, and the regions' hosts.

Amazon serves every marketplace from one regional SP-API host, and a seller's refresh token works
only in the region the seller authorised the application in: a marketplace sent to another
region's host is refused with 403 "The marketplaces you provided are not valid for region".

Sources (Amazon's own documentation):
- amzn/selling-partner-api-docs, `guides/en-US/developer-guide/SellingPartnerApiDeveloperGuide.md`
  at commit c2888de06b0ad6961a7c95560cfddebd36ac530f ("Selling Partner API endpoints" and
  "marketplaceId values"): the three hosts and every marketplace id below except BE, IE and ZA;
- that guide moved to developer-docs.amazon.com: "SP-API Endpoints"
  (https://developer-docs.amazon.com/sp-api/docs/sp-api-endpoints) and "Marketplace IDs"
  (https://developer-docs.amazon.com/sp-api/docs/marketplace-ids) add Belgium, Ireland and South
  Africa to Europe. Amazon's table writes the United Kingdom as `UK` (the older guide: `GB`);
  both are accepted, `UK` is the canonical code.

This module imports nothing from sellerdesk at run time, so settings can use its types.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    from sellerdesk.config import Settings

Region = Literal["NA", "EU", "FE"]

# fmt: off
MarketplaceCode = Literal[
    # North America
    "US", "CA", "MX", "BR",
    # Europe
    "UK", "DE", "FR", "IT", "ES", "NL", "SE", "PL", "BE", "IE", "TR", "IN", "EG", "SA", "AE", "ZA",
    # Far East
    "JP", "AU", "SG",
]
# fmt: on


@dataclass(frozen=True)
class Marketplace:
    code: str
    marketplace_id: str
    region: Region
    country: str


REGION_NAMES: dict[Region, str] = {"NA": "North America", "EU": "Europe", "FE": "Far East"}

REGION_HOSTS: dict[Region, str] = {
    "NA": "https://sellingpartnerapi-na.amazon.com",
    "EU": "https://sellingpartnerapi-eu.amazon.com",
    "FE": "https://sellingpartnerapi-fe.amazon.com",
}

_TABLE: list[tuple[str, str, Region, str]] = [
    ("CA", "A2EUQ1WTGCTBG2", "NA", "Canada"),
    ("US", "ATVPDKIKX0DER", "NA", "United States of America"),
    ("MX", "A1AM78C64UM0Y8", "NA", "Mexico"),
    ("BR", "A2Q3Y263D00KWC", "NA", "Brazil"),
    ("IE", "A28R8C7NBKEWEA", "EU", "Ireland"),
    ("ES", "A1RKKUPIHCS9HS", "EU", "Spain"),
    ("UK", "A1F83G8C2ARO7P", "EU", "United Kingdom"),
    ("FR", "A13V1IB3VIYZZH", "EU", "France"),
    ("BE", "AMEN7PMS3EDWL", "EU", "Belgium"),
    ("NL", "A1805IZSGTT6HS", "EU", "Netherlands"),
    ("DE", "A1PA6795UKMFR9", "EU", "Germany"),
    ("IT", "APJ6JRA9NG5V4", "EU", "Italy"),
    ("SE", "A2NODRKZP88ZB9", "EU", "Sweden"),
    ("ZA", "AE08WJ6YKNBMC", "EU", "South Africa"),
    ("PL", "A1C3SOZRARQ6R3", "EU", "Poland"),
    ("EG", "ARBP9OOSHTCHU", "EU", "Egypt"),
    ("TR", "A33AVAJ2PDY3EV", "EU", "Turkey"),
    ("SA", "A17E79C6D8DWNP", "EU", "Saudi Arabia"),
    ("AE", "A2VIGQ35RCS4UG", "EU", "United Arab Emirates"),
    ("IN", "A21TJRUUN4KGV", "EU", "India"),
    ("SG", "A19VAU5U5O7RUS", "FE", "Singapore"),
    ("AU", "A39IBJ37TRP1C6", "FE", "Australia"),
    ("JP", "A1VC38T7YXB528", "FE", "Japan"),
]

MARKETPLACES: dict[str, Marketplace] = {
    code: Marketplace(code, marketplace_id, region, country)
    for code, marketplace_id, region, country in _TABLE
}
assert set(MARKETPLACES) == set(get_args(MarketplaceCode))

MARKETPLACE_ALIASES = {"GB": "UK"}
"""Other spellings of a marketplace code, accepted on input."""


def region_of(code: str) -> Region:
    """The selling region that serves a marketplace code."""
    return MARKETPLACES[code].region


@dataclass(frozen=True)
class RegionSettings:
    """What the settings give one region: its host and the seller's refresh token there."""

    region: Region
    endpoint: str
    refresh_token: str | None
    token_setting: str
    """The setting that holds the refresh token (named in errors, never its value)."""

    @property
    def configured(self) -> bool:
        return bool(self.refresh_token)


def region_settings(settings: Settings, region: Region) -> RegionSettings:
    """The region's endpoint and refresh token; North America also reads the old aliases."""
    token: str | None = getattr(settings, f"SPAPI_{region}_REFRESH_TOKEN")
    endpoint: str | None = getattr(settings, f"SPAPI_{region}_ENDPOINT")
    if region == "NA":
        token = token or settings.SPAPI_REFRESH_TOKEN
        endpoint = endpoint or settings.SPAPI_ENDPOINT
    return RegionSettings(
        region=region,
        endpoint=(endpoint or REGION_HOSTS[region]).rstrip("/"),
        refresh_token=token or None,
        token_setting=f"SPAPI_{region}_REFRESH_TOKEN",
    )

"""Errors of the Amazon data layer.

`UpstreamError` is what the metering step catches to give a charge back: its subclasses mean
the upstream call failed and nothing was served (contract: `upstream_unavailable`, 502/503/504).
`RegionNotConfigured` is a 422 raised before anything is charged.
"""

from __future__ import annotations

import math

from sellerdesk.errors import AppError, ValidationFailed


class UpstreamError(AppError):
    """Amazon could not answer; never charged."""

    status_code = 502
    code = "upstream_unavailable"
    message = "The Amazon data source is unavailable; retry later."


class UpstreamUnavailable(UpstreamError):
    """Amazon answered with an error, kept throttling, or could not be reached (502)."""


class UpstreamTimeout(UpstreamError):
    """Amazon did not answer in time (504)."""

    status_code = 504
    message = "The Amazon data source did not answer in time; retry later."


class QuotaExhausted(UpstreamError):
    """Amazon's request quota is spent for longer than a call may wait (503 + Retry-After)."""

    status_code = 503

    def __init__(self, retry_after: float) -> None:
        seconds = max(1, math.ceil(retry_after))
        super().__init__(
            f"Amazon's request quota for this operation is spent; retry in {seconds} s.",
            details={"retry_after": seconds},
            headers={"Retry-After": str(seconds)},
        )


class RegionNotConfigured(ValidationFailed):
    """The marketplace's selling region has no seller credentials in the settings."""

    def __init__(self, marketplace: str, region: str, region_name: str, setting: str) -> None:
        message = (
            f"Marketplace {marketplace} is served by Amazon's {region_name} ({region}) region, "
            f"which this service has no credentials for: the operator must set {setting}."
        )
        super().__init__(
            message,
            details=[
                {"loc": ["body", "marketplace"], "msg": message, "type": "region_not_configured"}
            ],
        )


class ReportTooLarge(AppError):
    status_code = 413
    code = "payload_too_large"
    message = "The inventory report is too large."

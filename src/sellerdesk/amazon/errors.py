"""Errors of the Amazon data layer.

`UpstreamError` is what the metering step catches to give a charge back: both subclasses mean
the upstream call failed and nothing was served (contract: `upstream_unavailable`, 502/504).
"""

from __future__ import annotations

from sellerdesk.errors import AppError


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


class ReportTooLarge(AppError):
    status_code = 413
    code = "payload_too_large"
    message = "The inventory report is too large."

"""API key request and response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field

from sellerdesk.kit.types import InputModel, OutputModel, Text


class ApiKeyCreate(InputModel):
    name: Annotated[Text, Field(min_length=1, max_length=100)]


class ApiKeyPublic(OutputModel):
    """A key as listed: its prefix identifies it, the secret is never shown again."""

    id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None


class ApiKeyCreated(ApiKeyPublic):
    key: str = Field(description="The whole key; shown only in this response.")

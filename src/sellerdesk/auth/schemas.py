"""Auth request and response bodies."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import EmailStr, Field

from sellerdesk.kit.types import InputModel, Text


class LoginRequest(InputModel):
    email: EmailStr
    password: Annotated[Text, Field(min_length=1, max_length=128)]


class RefreshRequest(InputModel):
    refresh_token: Annotated[Text, Field(min_length=1, max_length=512)]


class TokenPair(InputModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105
    expires_in: int

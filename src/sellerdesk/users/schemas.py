"""User request and response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import EmailStr, Field, model_validator

from sellerdesk.kit.types import InputModel, OutputModel, Text

Password = Annotated[Text, Field(min_length=8, max_length=128)]
FullName = Annotated[Text, Field(max_length=255)]


class UserCreate(InputModel):
    email: EmailStr
    password: Password
    full_name: FullName | None = None


class UserPublic(OutputModel):
    id: int
    email: str
    full_name: str | None
    is_active: bool
    is_superuser: bool
    created_at: datetime


class UserUpdateMe(InputModel):
    """Self-service changes; anything else in the body is refused."""

    full_name: FullName | None = None
    password: Password | None = None
    current_password: Annotated[Text, Field(max_length=128)] | None = None

    @model_validator(mode="after")
    def _password_needs_current(self) -> UserUpdateMe:
        if self.password is not None and not self.current_password:
            raise ValueError("current_password is required to change the password")
        return self


class UserUpdateAdmin(InputModel):
    is_active: bool | None = None
    is_superuser: bool | None = None

"""Input types shared by every schema: ids in range, text without NUL, a strict base model."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

MAX_ID = 2**63 - 1


def _reject_nul(value: Any) -> Any:
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("text must not contain NUL characters")
    elif isinstance(value, list | tuple | set):
        for item in value:
            _reject_nul(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            _reject_nul(key)
            _reject_nul(item)
    return value


Text = Annotated[str, AfterValidator(_reject_nul)]
"""A string that may not contain NUL (PostgreSQL cannot store it)."""

Id = Annotated[int, Field(ge=1, le=MAX_ID)]
IdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="A positive 64-bit id.")]
QueryText = Annotated[str | None, Query(max_length=200), AfterValidator(_reject_nul)]


class InputModel(BaseModel):
    """Base of every request body: unknown fields are refused, text may not hold NUL."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        return _reject_nul(value)


class OutputModel(BaseModel):
    """Base of every response body, built from ORM objects."""

    model_config = ConfigDict(from_attributes=True)

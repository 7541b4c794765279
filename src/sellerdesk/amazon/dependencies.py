"""`AmazonSourceDep`: the process's Amazon data source (`app.state.amazon`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from sellerdesk.amazon.providers import AmazonSource


async def get_source(request: Request) -> AmazonSource:
    source: AmazonSource = request.app.state.amazon
    return source


AmazonSourceDep = Annotated[AmazonSource, Depends(get_source)]

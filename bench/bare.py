"""S0: the bare FastAPI app every scenario is compared with (`GET /` returning JSON)."""

from __future__ import annotations

from fastapi import FastAPI

app = FastAPI()


@app.get("/")
async def root() -> dict[str, str]:
    return {"hello": "world"}

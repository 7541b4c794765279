"""Run localstripe (a Stripe emulator; GPL, a test tool only) on 127.0.0.1 with its store in a
directory of our choosing: `python -m tests.fakes.localstripe_server PORT STORE_DIR`.

localstripe's own `start()` listens on every interface and pickles to /tmp/localstripe.pickle,
which parallel test runs would share; this wrapper binds loopback and moves the store.

It also honours `Idempotency-Key` on POST the way Stripe does, which localstripe ignores: the
first answer for a key is kept and replayed to every later request with that key (a concurrent
one waits for the first instead of Stripe's 409 `idempotency_key_in_use`, which the SDK
retries). Our client relies on it: a repeated intent create or refund must not make a second one.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import sys
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from localstripe import resources, server

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def idempotency_middleware() -> Any:
    answers: dict[tuple[str, str], tuple[int, bytes, str]] = {}
    locks: defaultdict[tuple[str, str], asyncio.Lock] = defaultdict(asyncio.Lock)

    @web.middleware
    async def idempotency(request: web.Request, handler: Handler) -> web.StreamResponse:
        key = request.headers.get("Idempotency-Key")
        if request.method != "POST" or not key:
            return await handler(request)
        scope = (request.headers.get("Authorization", ""), key)
        async with locks[scope]:
            if scope not in answers:
                response = await handler(request)
                if not isinstance(response, web.Response) or response.body is None:
                    return response
                body = response.body if isinstance(response.body, bytes) else b""
                answers[scope] = (response.status, body, response.content_type)
            status, body, content_type = answers[scope]
        return web.Response(status=status, body=body, content_type=content_type)

    return idempotency


def main() -> None:
    port = int(sys.argv[1])
    store_file = Path(sys.argv[2]) / "localstripe.pickle"

    def dump_to_disk(self: Any) -> None:
        with store_file.open("wb") as f:
            pickle.dump(dict(self), f, protocol=pickle.HIGHEST_PROTOCOL)

    resources.Store.dump_to_disk = dump_to_disk  # type: ignore[method-assign]
    logging.basicConfig(level=logging.WARNING)
    server.app.middlewares.insert(0, idempotency_middleware())  # outermost: sees final answers
    web.run_app(server.app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()

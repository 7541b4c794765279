"""Run localstripe (a Stripe emulator; GPL, a test tool only) on 127.0.0.1 with its store in a
directory of our choosing: `python -m tests.fakes.localstripe_server PORT STORE_DIR`.

localstripe's own `start()` listens on every interface and pickles to /tmp/localstripe.pickle,
which parallel test runs would share; this wrapper binds loopback and moves the store.

It also honours `Idempotency-Key` on POST the way Stripe does, which localstripe ignores: the
first answer for a key is kept and replayed to every later request with that key (a concurrent
one waits for the first instead of Stripe's 409 `idempotency_key_in_use`, which the SDK
retries). Our client relies on it: a repeated intent create or refund must not make a second one.

localstripe has no Checkout: `checkout_middleware` adds Checkout Sessions (create and retrieve,
in memory, per secret key), enough for the hosted-Checkout purchase to be driven end to end.
The session's page URL points at checkout.stripe.com as Stripe's does; nothing follows it.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import re
import secrets
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


def _form_tree(pairs: Any) -> dict[str, Any]:
    """Stripe's bracketed form fields (`line_items[0][price_data][unit_amount]=5`) as nested
    dicts; list indexes stay dict keys ("0"), which is all the fake reads."""
    tree: dict[str, Any] = {}
    for name, value in pairs:
        keys = re.findall(r"[^\[\]]+", name)
        node = tree
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    return tree


def checkout_middleware() -> Any:
    sessions: dict[tuple[str, str], dict[str, Any]] = {}
    path = re.compile(r"^/v1/checkout/sessions(?:/(?P<id>cs_[A-Za-z0-9_]+))?$")

    @web.middleware
    async def checkout(request: web.Request, handler: Handler) -> web.StreamResponse:
        found = path.match(request.path)
        if found is None:
            return await handler(request)
        account = request.headers.get("Authorization", "")
        if request.method == "POST" and found["id"] is None:
            form = _form_tree((await request.post()).items())
            line = form["line_items"]["0"]
            amount = int(line["price_data"]["unit_amount"]) * int(line["quantity"])
            session_id = f"cs_test_{secrets.token_hex(12)}"
            created = {
                "id": session_id,
                "object": "checkout.session",
                "mode": form.get("mode"),
                "status": "open",
                "payment_status": "unpaid",
                "payment_intent": None,
                "amount_total": amount,
                "currency": line["price_data"]["currency"],
                "client_reference_id": form.get("client_reference_id"),
                "success_url": form.get("success_url"),
                "cancel_url": form.get("cancel_url"),
                "metadata": form.get("metadata", {}),
                "line_items_name": line["price_data"]["product_data"]["name"],
                "url": f"https://checkout.stripe.com/c/pay/{session_id}",
            }
            sessions[(account, session_id)] = created
            return web.json_response(created)
        if request.method == "GET" and (account, found["id"]) in sessions:
            return web.json_response(sessions[(account, found["id"])])
        error = {"type": "invalid_request_error", "message": "No such checkout.session"}
        return web.json_response({"error": error}, status=404)

    return checkout


def main() -> None:
    port = int(sys.argv[1])
    store_file = Path(sys.argv[2]) / "localstripe.pickle"

    def dump_to_disk(self: Any) -> None:
        with store_file.open("wb") as f:
            pickle.dump(dict(self), f, protocol=pickle.HIGHEST_PROTOCOL)

    resources.Store.dump_to_disk = dump_to_disk  # type: ignore[method-assign]
    logging.basicConfig(level=logging.WARNING)
    server.app.middlewares.insert(0, checkout_middleware())
    server.app.middlewares.insert(0, idempotency_middleware())  # outermost: sees final answers
    web.run_app(server.app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()

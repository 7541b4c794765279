"""An SMTP sink on 127.0.0.1 (aiosmtpd, in its own thread) that keeps every message it accepts.

`stall_first` makes the first transaction hang at RCPT TO (before any data is sent), so a test
can kill a sender in the middle of sending: that message is never accepted, and a later
attempt is.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.stripe_fixtures import free_port


@dataclass
class Sink:
    host: str
    port: int
    messages: list[EmailMessage] = field(default_factory=list)
    stall_first: float = 0.0
    stalled: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _transactions: int = 0

    @property
    def settings(self) -> dict[str, Any]:
        return {"SMTP_HOST": self.host, "SMTP_PORT": self.port, "SMTP_SECURITY": "none"}

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        with self._lock:
            self._transactions += 1
            first = self._transactions == 1
        if first and self.stall_first:
            self.stalled.set()
            await asyncio.sleep(self.stall_first)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any
    ) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        with self._lock:
            self.messages.append(message)
        return "250 Message accepted"

    def of_kind(self, kind: str, to: str | None = None) -> list[EmailMessage]:
        with self._lock:
            return [
                m
                for m in self.messages
                if m["X-Sellerdesk-Kind"] == kind and (to is None or m["To"] == to)
            ]

    def kinds(self) -> list[str]:
        with self._lock:
            return sorted(str(m["X-Sellerdesk-Kind"]) for m in self.messages)

    def wait_for(self, kind: str, count: int = 1, timeout: float = 30) -> list[EmailMessage]:
        """Block until `count` messages of `kind` arrived (or fail after `timeout`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.of_kind(kind)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        pytest.fail(f"no {kind} email within {timeout}s; got {self.kinds()}")


def text_of(message: EmailMessage) -> str:
    """The plain-text part of a message."""
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def html_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


@pytest.fixture
def smtp_sink() -> Iterator[Sink]:
    sink = Sink("127.0.0.1", free_port())
    controller = Controller(sink, hostname=sink.host, port=sink.port)
    controller.start()
    yield sink
    controller.stop()

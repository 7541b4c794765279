"""Email notifications: one outbox handler per event kind that concerns a person (order
confirmation, payment receipt, refund notice, low-stock alert, credit purchase receipt,
low-credit warning, password changed, order shipped, order cancelled)."""

from __future__ import annotations

from sellerdesk import events
from sellerdesk.notifications.emails import HANDLERS


def register() -> None:
    """Subscribe the emails to their events (after the commit, through the outbox)."""
    for kind, handler in HANDLERS.items():
        events.on(kind, handler, in_transaction=False)

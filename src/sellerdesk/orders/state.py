"""The order state machine, in one place: which status may follow which."""

from __future__ import annotations

from typing import Literal

from sellerdesk.errors import Conflict

OrderStatus = Literal["pending", "paid", "shipped", "delivered", "cancelled", "refunded"]
PaymentStatus = Literal["pending", "succeeded", "failed", "refunded", "partially_refunded"]

# pending → paid → shipped → delivered; pending → cancelled; paid → cancelled (full refund);
# paid | shipped | delivered → refunded. cancelled and refunded are final.
TRANSITIONS: dict[str, frozenset[str]] = {
    "pending": frozenset({"paid", "cancelled"}),
    "paid": frozenset({"shipped", "cancelled", "refunded"}),
    "shipped": frozenset({"delivered", "refunded"}),
    "delivered": frozenset({"refunded"}),
    "cancelled": frozenset(),
    "refunded": frozenset(),
}

# Moves an admin may make with PATCH; paid and refunded come only from the payment provider.
ADMIN_TARGETS = frozenset({"shipped", "delivered", "cancelled"})

# Orders still holding stock (returned when they end as cancelled).
FINAL = frozenset({"cancelled", "refunded"})


def can_move(current: str, target: str) -> bool:
    return target in TRANSITIONS.get(current, frozenset())


def sources(target: str) -> tuple[str, ...]:
    """Every status from which `target` may be reached (the WHERE of a conditional UPDATE)."""
    return tuple(sorted(s for s, targets in TRANSITIONS.items() if target in targets))


class IllegalTransition(Conflict):
    def __init__(self, current: str, target: str) -> None:
        super().__init__(
            f"An order that is {current} cannot become {target}.",
            details={"status": current, "requested": target},
        )

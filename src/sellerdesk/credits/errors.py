"""Errors of the credits domain."""

from __future__ import annotations

from sellerdesk.errors import AppError, Conflict


class InsufficientCredits(AppError):
    status_code = 402
    code = "insufficient_credits"

    def __init__(self, balance: int, required: int) -> None:
        self.balance = balance
        self.required = required
        super().__init__(
            f"This call needs {required} credits; the balance is {balance}.",
            details={"balance": balance, "required": required},
        )


class BalanceWouldBeNegative(Conflict):
    def __init__(self, balance: int, amount: int) -> None:
        super().__init__(
            f"The balance is {balance}; taking {-amount} credits would make it negative.",
            details={"balance": balance, "amount": amount},
        )

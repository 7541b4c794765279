"""Every ORM table, one module per aggregate; importing this package registers them all."""

from sellerdesk.models.amazon import AmazonMapping
from sellerdesk.models.base import Base
from sellerdesk.models.catalog import Category, Product
from sellerdesk.models.credits import (
    ApiKey,
    CreditAccount,
    CreditAlert,
    CreditCharge,
    CreditLedger,
    CreditPack,
    CreditPaidLookup,
    CreditPrice,
    CreditPurchase,
    CreditUsage,
)
from sellerdesk.models.order import (
    CartItem,
    IdempotencyKey,
    Order,
    OrderItem,
    StockMovement,
)
from sellerdesk.models.outbox import DomainEvent, EventHandled, JobRun
from sellerdesk.models.payment import Payment, Refund, WebhookEvent
from sellerdesk.models.stats import RolledDay, RolledDaySales, StaleDay
from sellerdesk.models.user import BrowserSession, RefreshToken, User

__all__ = [
    "AmazonMapping",
    "ApiKey",
    "Base",
    "BrowserSession",
    "CartItem",
    "Category",
    "CreditAccount",
    "CreditAlert",
    "CreditCharge",
    "CreditLedger",
    "CreditPack",
    "CreditPaidLookup",
    "CreditPrice",
    "CreditPurchase",
    "CreditUsage",
    "DomainEvent",
    "EventHandled",
    "IdempotencyKey",
    "JobRun",
    "Order",
    "OrderItem",
    "Payment",
    "Product",
    "RefreshToken",
    "Refund",
    "RolledDay",
    "RolledDaySales",
    "StaleDay",
    "StockMovement",
    "User",
    "WebhookEvent",
]

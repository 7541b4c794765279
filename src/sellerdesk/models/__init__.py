"""Every ORM table, one module per aggregate; importing this package registers them all."""

from sellerdesk.models.base import Base
from sellerdesk.models.catalog import Category, Product
from sellerdesk.models.user import RefreshToken, User

__all__ = ["Base", "Category", "Product", "RefreshToken", "User"]

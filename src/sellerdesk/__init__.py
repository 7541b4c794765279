"""sellerdesk: a store and a credit-metered Amazon data API in one FastAPI service."""

__version__ = "0.1.0"

"""Reusable building blocks shared by every domain: pagination, money, middleware, limits."""

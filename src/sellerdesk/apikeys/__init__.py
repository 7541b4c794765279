"""API keys: created once, stored hashed, and the `Payer` of the paid data routes."""

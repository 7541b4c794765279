"""Payments: providers (Stripe, manual), intents, confirmation, refunds, webhooks, reconciler."""

"""Credits: the ledger, packs and purchases, pricing and the metering of paid calls."""

"""Inventory: stock movements, adjustments and low-stock alerts."""

"""Amazon data: ASIN lookup, FNSKU conversion, per-user mappings; `local` and `sp-api` sources."""

"""The catalog: a category tree and products, with search, filters, CSV import and caching."""

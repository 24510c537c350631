"""The SQL catalogue: schema (``models``), engines and migrations (``database``)."""

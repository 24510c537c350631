"""Queries and JSON shaping shared by the service's routers (no HTTP here, no model)."""

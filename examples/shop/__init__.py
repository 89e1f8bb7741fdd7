"""A small shop: orders in SQLite, a Redis cache, and a service that needs both."""

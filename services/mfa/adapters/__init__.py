"""Adapters to the outside: the event store, the SQL views and sessions, password hashing."""

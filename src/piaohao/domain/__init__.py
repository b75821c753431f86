"""Entities and their state tables. No I/O here."""

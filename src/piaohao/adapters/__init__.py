"""Adapters: the database, the clock, outbound HTTP. Domain code reaches the world only through these."""

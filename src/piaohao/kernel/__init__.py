"""The small shared core: money, ids, clock, errors, invariants, settings, logs, signing.

Imports nothing else of piaohao; everything else may import it."""

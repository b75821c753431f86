"""Reconciliation (核對): bills in (`bills`), two-way matching (`matching`), record checks
(`checks`), custom rules (`rules`), findings as a work queue (`findings`), the T+1 run and the
near-real-time pass (`run`). docs/reconciliation.md explains every finding class."""

"""Every movement of money, one module per money flow: the only code that posts to the ledger.

FLOWS.md beside this file lists each flow, the accounts it moves money between, its legs and
entry keys, and the test that proves it. Each function takes the caller's connection: the entry
commits with the state change that causes it, or not at all.
"""

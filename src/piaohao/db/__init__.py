"""The database: connections and units of work (`database`), every table (`schema*`, registered on
one `metadata`), the create-once insert (`inserts`), and migrations (`migrate`, `piaohao/migrations`).

Importing the package registers every table module, so `metadata` is always complete. Only the
ledger engine may import `schema_ledger` (an import contract enforces it).
"""

from piaohao.db import (  # noqa: F401
    schema,
    schema_channels,
    schema_clearing,
    schema_console,
    schema_ledger,
    schema_members,
    schema_payways,
    schema_recon,
    schema_refunds,
)

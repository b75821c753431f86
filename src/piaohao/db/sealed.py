"""Which purpose a value sealed at rest is bound to.

Every sealed column's value is bound (as AES-GCM associated data, `kernel.sealing`) to its table,
column and row key: `"<table>.<column>:<key>"`. A sealed value copied into another row or column
does not open, so whoever can write the database cannot redirect a payout to another account by
moving ciphertext around. The migration that sealed existing rows (0012b) and `piaohao keys rotate`
(`services/keys.py`) use the same rule.
"""

from __future__ import annotations

from piaohao.kernel.sealing import Sealer

__all__ = ["open_column", "purpose", "seal_column"]


def purpose(table: str, column: str, key: str) -> str:
    return f"{table}.{column}:{key}"


def seal_column(sealer: Sealer, table: str, column: str, key: str, plaintext: str) -> str:
    return sealer.seal(plaintext, purpose=purpose(table, column, key))


def open_column(sealer: Sealer, table: str, column: str, key: str, sealed: str) -> str:
    return sealer.open(sealed, purpose=purpose(table, column, key))


"""`check`: prove the books are consistent, from the database alone, in one snapshot.

Each rule is one set-based query (so it scales with rows, not round trips) and each finding is a
`Violation`. The rules: every entry has two or more legs that sum to zero per currency, in its
accounts' currencies; every balance row equals the sum of its legs (pending sums equal open holds'
legs, `available` equals posted minus the pending amounts against the normal side); no constrained
account is below its floor, and each floor matches its constraint; holds agree with entries; and the
books as a whole sum to zero per currency, from the legs and from the stored balances.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from sqlalchemy import Connection, text

from piaohao.db.database import Database

SIGN = "(CASE WHEN a.normal_side = 'debit' THEN 1 ELSE -1 END)"

# (kind, SQL returning (subject, message-detail columns...), message template)
RULES: list[tuple[str, str, str]] = [
    ("entry_unbalanced",
     "SELECT entry_id, currency, SUM(amount) FROM ledger_legs GROUP BY entry_id, currency HAVING SUM(amount) <> 0",
     "entry {0}: legs in {1} sum to {2}, not 0"),
    ("entry_too_few_legs",
     "SELECT e.entry_id, COUNT(l.leg_id) FROM ledger_entries e LEFT JOIN ledger_legs l ON l.entry_id = e.entry_id "
     "GROUP BY e.entry_id HAVING COUNT(l.leg_id) < 2",
     "entry {0} has {1} leg(s)"),
    ("leg_without_entry",
     "SELECT l.leg_id, l.entry_id FROM ledger_legs l LEFT JOIN ledger_entries e ON e.entry_id = l.entry_id "
     "WHERE e.entry_id IS NULL",
     "leg {0} belongs to no entry ({1})"),
    ("leg_currency",
     "SELECT l.leg_id, l.currency, a.currency FROM ledger_legs l JOIN ledger_accounts a "
     "ON a.account_id = l.account_id WHERE l.currency <> a.currency",
     "leg {0} is in {1}, its account in {2}"),
    ("leg_kind",
     "SELECT l.leg_id, e.kind FROM ledger_legs l JOIN ledger_entries e ON e.entry_id = l.entry_id "
     "WHERE (CASE WHEN l.is_pending THEN 'pending' ELSE 'posted' END) <> e.kind",
     "leg {0} disagrees with its {1} entry"),
    ("balance_mismatch",
     f"""WITH sums AS (
           SELECT l.account_id, l.shard,
             SUM(CASE WHEN l.is_pending THEN 0 ELSE l.amount END) AS net,
             SUM(CASE WHEN l.is_pending AND h.status = 'pending' AND l.amount > 0 THEN l.amount ELSE 0 END) AS pd,
             SUM(CASE WHEN l.is_pending AND h.status = 'pending' AND l.amount < 0 THEN -l.amount ELSE 0 END) AS pc
           FROM ledger_legs l LEFT JOIN ledger_holds h ON h.hold_id = l.entry_id
           GROUP BY l.account_id, l.shard)
         SELECT b.account_id, b.shard, b.posted, {SIGN} * COALESCE(s.net, 0), b.pending_debits, COALESCE(s.pd, 0),
                b.pending_credits, COALESCE(s.pc, 0), b.available
         FROM ledger_balances b JOIN ledger_accounts a ON a.account_id = b.account_id
         LEFT JOIN sums s ON s.account_id = b.account_id AND s.shard = b.shard
         WHERE b.posted <> {SIGN} * COALESCE(s.net, 0) OR b.pending_debits <> COALESCE(s.pd, 0)
            OR b.pending_credits <> COALESCE(s.pc, 0)
            OR b.available <> b.posted - (CASE WHEN a.normal_side = 'debit' THEN b.pending_credits
                                             ELSE b.pending_debits END)""",
     "account {0} shard {1}: stored posted {2} / legs {3}, pending debits {4} / holds {5}, "
     "pending credits {6} / holds {7}, available {8}"),
    ("legs_without_balance_row",
     "SELECT l.account_id, l.shard, COUNT(*) FROM ledger_legs l LEFT JOIN ledger_balances b "
     "ON b.account_id = l.account_id AND b.shard = l.shard WHERE b.account_id IS NULL GROUP BY l.account_id, l.shard",
     "account {0} shard {1}: {2} leg(s) but no balance row"),
    ("below_floor",
     "SELECT account_id, SUM(available), MIN(available_floor) FROM ledger_balances "
     "WHERE available_floor IS NOT NULL GROUP BY account_id HAVING SUM(available) < MIN(available_floor)",
     "account {0}: available {1} is below its floor {2}"),
    ("floor_mismatch",
     "SELECT b.account_id, b.shard, a.constraint_kind, b.available_floor FROM ledger_balances b "
     "JOIN ledger_accounts a ON a.account_id = b.account_id WHERE "
     "(a.constraint_kind = 'none' AND b.available_floor IS NOT NULL) "
     "OR (a.constraint_kind = 'non_negative' AND (b.available_floor IS NULL OR b.available_floor <> 0)) "
     "OR (a.constraint_kind = 'credit_limit' AND (b.available_floor IS NULL OR b.available_floor > 0)) "
     "OR b.shard >= a.shard_count",
     "account {0} shard {1}: constraint {2} with floor {3}"),
    ("shard_missing",
     "SELECT a.account_id, a.shard_count, COUNT(b.shard) FROM ledger_accounts a LEFT JOIN ledger_balances b "
     "ON b.account_id = a.account_id GROUP BY a.account_id, a.shard_count HAVING COUNT(b.shard) <> a.shard_count",
     "account {0}: {1} shard(s) declared, {2} balance row(s)"),
    ("books_unbalanced_legs",
     "SELECT currency, SUM(amount) FROM ledger_legs WHERE NOT is_pending GROUP BY currency HAVING SUM(amount) <> 0",
     "posted legs in {0} sum to {1}, not 0"),
    ("books_unbalanced_balances",
     f"SELECT a.currency, SUM({SIGN} * b.posted) FROM ledger_balances b JOIN ledger_accounts a "
     "ON a.account_id = b.account_id GROUP BY a.currency HAVING SUM(" + SIGN + " * b.posted) <> 0",
     "stored balances in {0} sum to {1} (debits minus credits), not 0"),
    ("pending_entry_without_hold",
     "SELECT e.entry_id FROM ledger_entries e LEFT JOIN ledger_holds h ON h.hold_id = e.entry_id "
     "WHERE e.kind = 'pending' AND h.hold_id IS NULL",
     "pending entry {0} has no hold"),
    ("hold_state",
     "SELECT h.hold_id, h.status, COUNT(e.entry_id) FROM ledger_holds h "
     "LEFT JOIN ledger_entries e ON e.hold_id = h.hold_id AND e.kind = 'posted' "
     "GROUP BY h.hold_id, h.status "
     "HAVING (h.status = 'posted' AND COUNT(e.entry_id) <> 1) OR (h.status <> 'posted' AND COUNT(e.entry_id) <> 0)",
     "hold {0} is {1} with {2} posting entr(ies)"),
]


@dataclass(frozen=True)
class Violation:
    kind: str
    subject: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def check_conn(conn: Connection, *, max_per_rule: int = 1000) -> list[Violation]:
    out: list[Violation] = []
    for kind, sql, template in RULES:
        for row in conn.execute(text(sql)).fetchmany(max_per_rule):
            out.append(Violation(kind, str(row[0]), template.format(*row)))
    return out


def check(target: Connection | Database, *, max_per_rule: int = 1000) -> list[Violation]:
    """All violations (at most `max_per_rule` of each kind); empty means the books are consistent.

    `target` is a Database (read in one REPEATABLE READ snapshot on PostgreSQL, one read
    transaction on SQLite) or a Connection (the caller's transaction).
    """
    if isinstance(target, Connection):
        return check_conn(target, max_per_rule=max_per_rule)
    if target.is_sqlite:
        with target.read() as conn:
            return check_conn(conn, max_per_rule=max_per_rule)
    with target.engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn, conn.begin():
        return check_conn(conn, max_per_rule=max_per_rule)

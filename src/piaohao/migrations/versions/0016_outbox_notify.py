"""outbox_events: NOTIFY piaohao_outbox when an event becomes pending (PostgreSQL only)

A worker process LISTENs on the channel (piaohao.workers.wake) and wakes its outbox dispatcher,
so a notification committed by an API process goes out at once, not at the dispatcher's next
safety poll, and the payment path sends no extra statement for it. PostgreSQL sends the NOTIFY
at commit, never for a rollback, and folds identical ones of a transaction into one. SQLite has
one process and no NOTIFY: the in-process wake-up (Database.wake_after_commit) is enough there,
and this migration does nothing.

Fires on a new pending event (not `skipped`), and on an update that makes one pending: an
operator's resend (any status to pending, attempts back to 0). A failed try that stays pending
does not: it is due later, and the dispatcher's safety poll is shorter than any retry step.

Revision ID: 0016
Revises: 0015
"""
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

CHANNEL = "piaohao_outbox"  # = piaohao.services.notifications.NOTIFY_CHANNEL


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"""
        CREATE FUNCTION outbox_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', '');
            RETURN NULL;
        END
        $$""")
    op.execute("""
        CREATE TRIGGER outbox_events_notify_insert AFTER INSERT ON outbox_events
        FOR EACH ROW WHEN (NEW.status = 'pending')
        EXECUTE FUNCTION outbox_events_notify()""")
    op.execute("""
        CREATE TRIGGER outbox_events_notify_update AFTER UPDATE OF status, attempts ON outbox_events
        FOR EACH ROW WHEN (NEW.status = 'pending'
                           AND (OLD.status <> 'pending' OR (NEW.attempts = 0 AND OLD.attempts <> 0)))
        EXECUTE FUNCTION outbox_events_notify()""")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS outbox_events_notify_update ON outbox_events")
    op.execute("DROP TRIGGER IF EXISTS outbox_events_notify_insert ON outbox_events")
    op.execute("DROP FUNCTION IF EXISTS outbox_events_notify()")

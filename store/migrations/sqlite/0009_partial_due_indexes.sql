-- The indexes that find work still owed (announcements to send, transactions to expire) hold
-- only the rows that owe it. Before, every announcement and transaction stayed in them for
-- good: the "due" indexes grew with the whole history, and every payment paid for entries
-- it would never need (a paid transaction in transactions_due; a delivered announcement in
-- announcements_due and announcements_device, twice: once inserted pending, once on the
-- update to delivered, which is not a HOT update since it changes an indexed column).
-- Now a delivered announcement leaves both and a paid transaction never enters its due
-- index. The queries that use them all say status = 'pending' (or 'failed') themselves.
DROP INDEX announcements_due;
CREATE INDEX announcements_due ON announcements (next_attempt_at_ms) WHERE status = 'pending';
DROP INDEX announcements_device;
CREATE INDEX announcements_pending_device ON announcements (device_id, sequence)
    WHERE status = 'pending';
-- Recent failures per device, for device health.
CREATE INDEX announcements_failed_device ON announcements (device_id, expires_at_ms)
    WHERE status = 'failed';
DROP INDEX transactions_due;
CREATE INDEX transactions_due ON transactions (expires_at_ms) WHERE status = 'pending';

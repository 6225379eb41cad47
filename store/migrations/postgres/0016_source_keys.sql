-- A payment's ledger postings and announcement name the transaction's merchant and terminal
-- again; each was checked by a foreign key of its own to merchants and terminals. On
-- PostgreSQL a foreign-key check locks the row it finds (FOR KEY SHARE), and every payment
-- batch of a merchant locks that one merchants row: each batch that joins the lockers while
-- another is in flight writes a new MultiXact and a WAL record. Without those keys and the
-- device's the server's CPU per callback was 352-364 µs against 377-447 µs with them
-- (2026-12-07, `gema bench payments --rate 2000`, fsync on); with the pairs below instead,
-- 369-381 µs against 395-414 µs (README, that date).
--
-- So the copies are checked against their source instead: a ledger entry's (merchant,
-- transaction) must be a transaction's and its (merchant, adjustment) an adjustment's, an
-- announcement's (terminal, transaction) a transaction's. That is stricter than before (the
-- merchant must be the transaction's, not merely some merchant's), the source rows name
-- existing merchants and terminals through their own keys, and a payment batch already
-- holds its transactions locked, so the check takes no lock another batch waits on.
-- The referenced pairs need unique indexes: the existing (merchant_id, id) and
-- (terminal_id, id) indexes become unique (they are, id being the key), so no index is
-- added. SQLite checks the same pairs with triggers (its 0016): its keys lock nothing, and
-- it cannot change a table's keys without rebuilding the table.
DROP INDEX transactions_merchant;
CREATE UNIQUE INDEX transactions_merchant ON transactions (merchant_id, id);
DROP INDEX transactions_terminal;
CREATE UNIQUE INDEX transactions_terminal ON transactions (terminal_id, id);
DROP INDEX settlement_adjustments_merchant;
CREATE UNIQUE INDEX settlement_adjustments_merchant ON settlement_adjustments (merchant_id, id);

ALTER TABLE ledger_entries
    DROP CONSTRAINT ledger_entries_merchant_id_fkey,
    DROP CONSTRAINT ledger_entries_transaction_id_fkey,
    DROP CONSTRAINT ledger_entries_adjustment_id_fkey,
    ADD CONSTRAINT ledger_entries_transaction FOREIGN KEY (merchant_id, transaction_id)
        REFERENCES transactions (merchant_id, id),
    ADD CONSTRAINT ledger_entries_adjustment FOREIGN KEY (merchant_id, adjustment_id)
        REFERENCES settlement_adjustments (merchant_id, id);

ALTER TABLE announcements
    DROP CONSTRAINT announcements_terminal_id_fkey,
    DROP CONSTRAINT announcements_transaction_id_fkey,
    ADD CONSTRAINT announcements_transaction FOREIGN KEY (terminal_id, transaction_id)
        REFERENCES transactions (terminal_id, id);

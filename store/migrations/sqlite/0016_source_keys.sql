-- A ledger entry's merchant is its source's (the transaction's or the settlement
-- adjustment's), an announcement's terminal is its transaction's. PostgreSQL's 0016 makes
-- these keys on the pairs. SQLite cannot change a table's keys without rebuilding it, so
-- here triggers check the pairs when a row is written; the per-column keys stay.
CREATE TRIGGER ledger_entries_source_insert BEFORE INSERT ON ledger_entries
WHEN NEW.merchant_id IS NOT COALESCE(
    (SELECT merchant_id FROM transactions WHERE id = NEW.transaction_id),
    (SELECT merchant_id FROM settlement_adjustments WHERE id = NEW.adjustment_id))
BEGIN
    SELECT RAISE(ABORT, 'ledger_entries_transaction: the merchant is not its source''s');
END;

CREATE TRIGGER ledger_entries_source_update
BEFORE UPDATE OF merchant_id, transaction_id, adjustment_id ON ledger_entries
WHEN NEW.merchant_id IS NOT COALESCE(
    (SELECT merchant_id FROM transactions WHERE id = NEW.transaction_id),
    (SELECT merchant_id FROM settlement_adjustments WHERE id = NEW.adjustment_id))
BEGIN
    SELECT RAISE(ABORT, 'ledger_entries_transaction: the merchant is not its source''s');
END;

CREATE TRIGGER announcements_transaction_insert BEFORE INSERT ON announcements
WHEN NEW.terminal_id IS NOT (SELECT terminal_id FROM transactions WHERE id = NEW.transaction_id)
BEGIN
    SELECT RAISE(ABORT, 'announcements_transaction: the terminal is not its transaction''s');
END;

CREATE TRIGGER announcements_transaction_update
BEFORE UPDATE OF terminal_id, transaction_id ON announcements
WHEN NEW.terminal_id IS NOT (SELECT terminal_id FROM transactions WHERE id = NEW.transaction_id)
BEGIN
    SELECT RAISE(ABORT, 'announcements_transaction: the terminal is not its transaction''s');
END;

-- A ledger entry's merchant is its source's (the transaction's or the settlement
-- adjustment's), an announcement's terminal is its transaction's. PostgreSQL's 0016 makes
-- these keys on the pairs. SQLite cannot change a table's keys without rebuilding it, so
-- here triggers check the pairs when a row is inserted and refuse to change them after
-- (nothing does: ledger entries are never updated, an announcement keeps its transaction);
-- the per-column keys stay.
CREATE TRIGGER ledger_entries_source BEFORE INSERT ON ledger_entries
WHEN NEW.merchant_id IS NOT COALESCE(
    (SELECT merchant_id FROM transactions WHERE id = NEW.transaction_id),
    (SELECT merchant_id FROM settlement_adjustments WHERE id = NEW.adjustment_id))
BEGIN
    SELECT RAISE(ABORT, 'ledger_entries_transaction: the merchant is not its source''s');
END;

CREATE TRIGGER ledger_entries_source_fixed
BEFORE UPDATE OF merchant_id, transaction_id, adjustment_id ON ledger_entries
WHEN NEW.merchant_id IS NOT OLD.merchant_id OR NEW.transaction_id IS NOT OLD.transaction_id
    OR NEW.adjustment_id IS NOT OLD.adjustment_id
BEGIN
    SELECT RAISE(ABORT, 'ledger_entries_transaction: a ledger entry keeps its source');
END;

CREATE TRIGGER announcements_transaction BEFORE INSERT ON announcements
WHEN NEW.terminal_id IS NOT (SELECT terminal_id FROM transactions WHERE id = NEW.transaction_id)
BEGIN
    SELECT RAISE(ABORT, 'announcements_transaction: the terminal is not its transaction''s');
END;

CREATE TRIGGER announcements_transaction_fixed
BEFORE UPDATE OF terminal_id, transaction_id ON announcements
WHEN NEW.terminal_id IS NOT OLD.terminal_id OR NEW.transaction_id IS NOT OLD.transaction_id
BEGIN
    SELECT RAISE(ABORT, 'announcements_transaction: an announcement keeps its transaction');
END;

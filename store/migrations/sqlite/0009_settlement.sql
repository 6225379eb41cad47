-- Settlement: merchants' bank accounts and payout settings, settlement batches and the
-- ledger entries each holds, adjustments, and every batch's history. The ledger stays the
-- single source of truth: an adjustment is a new ledger entry (`payable_adjustment`, and a
-- `merchant_held` entry for a hold or a release, a `platform_fee` one for a fee
-- correction), never an edit; a batch only says which payable entries it pays.

CREATE TABLE merchant_bank_accounts (
    merchant_id    TEXT PRIMARY KEY NOT NULL REFERENCES merchants (id),
    bank_code      TEXT NOT NULL,
    account_number TEXT NOT NULL,
    account_holder TEXT NOT NULL,
    created_at     TEXT    NOT NULL,
    updated_at     TEXT    NOT NULL
);

-- A merchant without a row here uses the configured defaults.
CREATE TABLE merchant_payout_settings (
    merchant_id    TEXT PRIMARY KEY NOT NULL REFERENCES merchants (id),
    schedule       TEXT NOT NULL CHECK (schedule IN ('manual', 'daily', 'weekly')),
    minimum_amount INTEGER NOT NULL CHECK (minimum_amount >= 1),
    -- 'HH:MM', Asia/Jakarta.
    cutoff_time    TEXT NOT NULL,
    -- ISO weekday, 1 = Monday; weekly schedules only.
    weekly_day     INTEGER CHECK (weekly_day BETWEEN 1 AND 7),
    updated_at     TEXT    NOT NULL
);

CREATE TABLE settlement_batches (
    id                 TEXT PRIMARY KEY NOT NULL,
    merchant_id        TEXT NOT NULL REFERENCES merchants (id),
    status             TEXT NOT NULL CHECK (status IN ('pending', 'paid', 'failed', 'cancelled')),
    -- Payable entries created up to this instant (Unix ms) were eligible.
    cutoff_ms          INTEGER NOT NULL,
    -- Sum and count of the transaction payables it took at generation.
    payable_amount     INTEGER NOT NULL,
    item_count         INTEGER NOT NULL,
    -- Sum of its adjustments so far; net = payable_amount + adjustment_amount.
    adjustment_amount  INTEGER NOT NULL DEFAULT 0,
    -- The bank account at generation, so the bank file pays where the batch said it would.
    bank_code          TEXT NOT NULL,
    account_number     TEXT NOT NULL,
    account_holder     TEXT NOT NULL,
    payout_reference   TEXT,
    payout_note        TEXT,
    paid_amount        INTEGER,
    paid_at            TEXT   ,
    reason             TEXT,
    reprocessed_at     TEXT   ,
    -- 'api:<user or token>' or 'schedule'.
    generated_by       TEXT NOT NULL,
    -- The generation call that made it (one per merchant per call).
    generation_id      TEXT NOT NULL,
    created_at         TEXT    NOT NULL,
    updated_at         TEXT    NOT NULL
);
CREATE INDEX settlement_batches_merchant ON settlement_batches (merchant_id, id);
CREATE INDEX settlement_batches_status ON settlement_batches (status, id);
CREATE INDEX settlement_batches_generation ON settlement_batches (generation_id);

CREATE TABLE settlement_adjustments (
    id              TEXT PRIMARY KEY NOT NULL,
    batch_id        TEXT NOT NULL REFERENCES settlement_batches (id),
    merchant_id     TEXT NOT NULL REFERENCES merchants (id),
    adjustment_type TEXT NOT NULL CHECK (adjustment_type IN ('hold', 'release', 'fee_correction', 'chargeback', 'manual')),
    amount          INTEGER NOT NULL CHECK (amount <> 0),
    reason          TEXT NOT NULL,
    created_by      TEXT NOT NULL,
    created_at      TEXT    NOT NULL
);
CREATE INDEX settlement_adjustments_batch ON settlement_adjustments (batch_id, id);
CREATE INDEX settlement_adjustments_merchant ON settlement_adjustments (merchant_id, id);

-- A batch's history: one row per transition or change.
CREATE TABLE settlement_batch_events (
    id          TEXT PRIMARY KEY NOT NULL,
    batch_id    TEXT NOT NULL REFERENCES settlement_batches (id),
    -- generated | adjusted | paid | reference_changed | failed | cancelled | reprocessed
    event       TEXT NOT NULL,
    from_status TEXT,
    to_status   TEXT NOT NULL,
    detail      TEXT,
    actor       TEXT NOT NULL,
    created_at  TEXT    NOT NULL
);
CREATE INDEX settlement_batch_events_batch ON settlement_batch_events (batch_id, id);

-- Scheduled generation runs already done (key: schedule, cut-off time and the cut-off
-- instant), so a run happens once per cluster however many nodes tick.
CREATE TABLE settlement_schedule_runs (
    run_key    TEXT PRIMARY KEY NOT NULL,
    batches    INTEGER NOT NULL,
    created_at TEXT    NOT NULL
);

-- The ledger takes adjustment entries: no transaction, an adjustment instead. SQLite cannot
-- alter a column or a CHECK, so the table is rebuilt: renamed first (which rewrites its own
-- self-reference to the old name), copied in id order (an entry before its reversal), the
-- old one dropped.
ALTER TABLE ledger_entries RENAME TO ledger_entries_old;
DROP INDEX ledger_entries_transaction;
DROP INDEX ledger_entries_merchant;
CREATE TABLE ledger_entries (
    id             TEXT PRIMARY KEY NOT NULL,
    transaction_id TEXT REFERENCES transactions (id),
    merchant_id    TEXT NOT NULL REFERENCES merchants (id),
    entry_type     TEXT NOT NULL CHECK (entry_type IN
        ('gross_income', 'platform_fee', 'merchant_payable', 'payable_adjustment', 'merchant_held')),
    amount         INTEGER NOT NULL,
    -- The posting's idempotency key: '<transaction>:<entry_type>', '<transaction>:refund:<entry_type>'
    -- or '<adjustment>:<entry_type>'.
    external_id    TEXT NOT NULL UNIQUE,
    reverses_id    TEXT REFERENCES ledger_entries (id),
    created_at     TEXT NOT NULL,
    adjustment_id  TEXT REFERENCES settlement_adjustments (id),
    CHECK ((transaction_id IS NULL) <> (adjustment_id IS NULL))
);
INSERT INTO ledger_entries
    (id, transaction_id, merchant_id, entry_type, amount, external_id, reverses_id, created_at)
SELECT id, transaction_id, merchant_id, entry_type, amount, external_id, reverses_id, created_at
FROM ledger_entries_old ORDER BY id;
DROP TABLE ledger_entries_old;
CREATE INDEX ledger_entries_transaction ON ledger_entries (transaction_id);
CREATE INDEX ledger_entries_merchant ON ledger_entries (merchant_id, id);
-- A merchant's payable entries, by id, with their amounts: batch generation reads only
-- this (one entry in three of the ledger), never the table.
CREATE INDEX ledger_entries_payable ON ledger_entries (merchant_id, id, amount, entry_type)
    WHERE entry_type IN ('merchant_payable', 'payable_adjustment');

-- Which payable entries a batch pays. `live` is true while the batch holds the entry; a
-- reprocess clears it, so the entry is batchable again. At most one live row per entry: an
-- entry is never in two batches at once, whatever runs concurrently.
CREATE TABLE settlement_items (
    batch_id        TEXT NOT NULL REFERENCES settlement_batches (id),
    ledger_entry_id TEXT NOT NULL REFERENCES ledger_entries (id),
    amount          INTEGER NOT NULL,
    live            BOOLEAN NOT NULL,
    PRIMARY KEY (batch_id, ledger_entry_id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX settlement_items_live ON settlement_items (ledger_entry_id) WHERE live;

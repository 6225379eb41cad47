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
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL
);

-- A merchant without a row here uses the configured defaults.
CREATE TABLE merchant_payout_settings (
    merchant_id    TEXT PRIMARY KEY NOT NULL REFERENCES merchants (id),
    schedule       TEXT NOT NULL CHECK (schedule IN ('manual', 'daily', 'weekly')),
    minimum_amount BIGINT NOT NULL CHECK (minimum_amount >= 1),
    -- 'HH:MM', Asia/Jakarta.
    cutoff_time    TEXT NOT NULL,
    -- ISO weekday, 1 = Monday; weekly schedules only.
    weekly_day     INTEGER CHECK (weekly_day BETWEEN 1 AND 7),
    updated_at     TIMESTAMPTZ NOT NULL
);

CREATE TABLE settlement_batches (
    id                 TEXT PRIMARY KEY NOT NULL,
    merchant_id        TEXT NOT NULL REFERENCES merchants (id),
    status             TEXT NOT NULL CHECK (status IN ('pending', 'paid', 'failed', 'cancelled')),
    -- Payable entries created up to this instant (Unix ms) were eligible.
    cutoff_ms          BIGINT NOT NULL,
    -- Sum and count of the transaction payables it took at generation.
    payable_amount     BIGINT NOT NULL,
    item_count         BIGINT NOT NULL,
    -- Sum of its adjustments so far; net = payable_amount + adjustment_amount.
    adjustment_amount  BIGINT NOT NULL DEFAULT 0,
    -- The bank account at generation, so the bank file pays where the batch said it would.
    bank_code          TEXT NOT NULL,
    account_number     TEXT NOT NULL,
    account_holder     TEXT NOT NULL,
    payout_reference   TEXT,
    payout_note        TEXT,
    paid_amount        BIGINT,
    paid_at            TIMESTAMPTZ,
    reason             TEXT,
    reprocessed_at     TIMESTAMPTZ,
    -- 'api:<user or token>' or 'schedule'.
    generated_by       TEXT NOT NULL,
    -- The generation call that made it (one per merchant per call).
    generation_id      TEXT NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL
);
CREATE INDEX settlement_batches_merchant ON settlement_batches (merchant_id, id);
CREATE INDEX settlement_batches_status ON settlement_batches (status, id);
CREATE INDEX settlement_batches_generation ON settlement_batches (generation_id);

CREATE TABLE settlement_adjustments (
    id              TEXT PRIMARY KEY NOT NULL,
    batch_id        TEXT NOT NULL REFERENCES settlement_batches (id),
    merchant_id     TEXT NOT NULL REFERENCES merchants (id),
    adjustment_type TEXT NOT NULL CHECK (adjustment_type IN ('hold', 'release', 'fee_correction', 'chargeback', 'manual')),
    amount          BIGINT NOT NULL CHECK (amount <> 0),
    reason          TEXT NOT NULL,
    created_by      TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX settlement_adjustments_batch ON settlement_adjustments (batch_id, id);
CREATE INDEX settlement_adjustments_merchant ON settlement_adjustments (merchant_id, id);

-- Which payable entries a batch pays. `live` is true while the batch holds the entry; a
-- reprocess clears it, so the entry is batchable again. At most one live row per entry: an
-- entry is never in two batches at once, whatever runs concurrently.
-- No foreign keys here on PostgreSQL: rows are written only by a generation's
-- INSERT … SELECT from the ledger joined to the batches it just inserted (and one per
-- adjustment, beside its entry), so a key would re-check what the statement just read, and
-- PostgreSQL checks each with a row trigger: measured, 2 million checks were most of a
-- million-entry generation's 19 s. (SQLite's checks are cheap; it keeps them.)
CREATE TABLE settlement_items (
    batch_id        TEXT NOT NULL,
    ledger_entry_id TEXT NOT NULL,
    amount          BIGINT NOT NULL,
    live            BOOLEAN NOT NULL,
    PRIMARY KEY (batch_id, ledger_entry_id)
);
CREATE UNIQUE INDEX settlement_items_live ON settlement_items (ledger_entry_id) WHERE live;

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
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX settlement_batch_events_batch ON settlement_batch_events (batch_id, id);

-- Scheduled generation runs already done (key: schedule, cut-off time and the cut-off
-- instant), so a run happens once per cluster however many nodes tick.
CREATE TABLE settlement_schedule_runs (
    run_key    TEXT PRIMARY KEY NOT NULL,
    batches    BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

-- The ledger takes adjustment entries: no transaction, an adjustment instead.
ALTER TABLE ledger_entries ALTER COLUMN transaction_id DROP NOT NULL;
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_entry_type_check;
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_entry_type_check CHECK (entry_type IN
    ('gross_income', 'platform_fee', 'merchant_payable', 'payable_adjustment', 'merchant_held'));
ALTER TABLE ledger_entries ADD COLUMN adjustment_id TEXT REFERENCES settlement_adjustments (id);
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_source
    CHECK ((transaction_id IS NULL) <> (adjustment_id IS NULL));
-- A merchant's payable entries, by id, with their amounts: batch generation reads only
-- this (one entry in three of the ledger), never the table.
CREATE INDEX ledger_entries_payable ON ledger_entries (merchant_id, id, amount, entry_type)
    WHERE entry_type IN ('merchant_payable', 'payable_adjustment');

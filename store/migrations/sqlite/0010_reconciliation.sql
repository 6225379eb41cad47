-- Reconciliation: a provider's settlement or transaction report matched against Gema's
-- transactions. A run is one import (or a re-run of an earlier one) with its period and
-- its counts per outcome; its rows are the report's lines as read and what each came to,
-- then Gema's paid transactions of the period that the report lacks. Runs and rows are
-- never updated: a re-run is a new run.
CREATE TABLE reconciliation_runs (
    id                TEXT PRIMARY KEY NOT NULL,
    -- How the report was read: midtrans | xendit | generic.
    format            TEXT NOT NULL CHECK (format IN ('midtrans', 'xendit', 'generic')),
    -- The Gema provider whose transactions it was compared with; NULL: every provider.
    provider          TEXT,
    -- The generic format's column mapping, as JSON.
    mapping           TEXT,
    period_from       TEXT,
    period_to         TEXT,
    rerun_of          TEXT REFERENCES reconciliation_runs (id),
    report_rows       INTEGER NOT NULL,
    matched           INTEGER NOT NULL,
    amount_mismatch   INTEGER NOT NULL,
    status_mismatch   INTEGER NOT NULL,
    missing_in_gema   INTEGER NOT NULL,
    missing_in_report INTEGER NOT NULL,
    malformed         INTEGER NOT NULL,
    created_by        TEXT NOT NULL,
    created_at        TEXT NOT NULL
);

CREATE TABLE reconciliation_rows (
    run_id                  TEXT NOT NULL REFERENCES reconciliation_runs (id),
    -- Position in the run: report rows in line order, then missing_in_report rows.
    seq                     INTEGER NOT NULL,
    -- The report's line number (the header is line 1); NULL for missing_in_report.
    line                    INTEGER,
    order_id                TEXT,
    provider_transaction_id TEXT,
    report_amount           INTEGER,
    -- The status as the report wrote it.
    report_status           TEXT,
    report_paid_at          TEXT,
    gema_amount             INTEGER,
    gema_status             TEXT,
    transaction_id          TEXT,
    outcome                 TEXT NOT NULL CHECK (outcome IN ('matched', 'amount_mismatch',
        'status_mismatch', 'missing_in_gema', 'missing_in_report', 'malformed')),
    -- Why a row is malformed (or what else a reader should know about it).
    reason                  TEXT,
    PRIMARY KEY (run_id, seq)
);
CREATE INDEX reconciliation_rows_outcome ON reconciliation_rows (run_id, outcome, seq);

-- Matching finds a report row's transaction by the provider's id as well as by order
-- reference, and the period's paid transactions by creation time.
CREATE INDEX transactions_provider_transaction ON transactions (provider_transaction_id);
CREATE INDEX transactions_created ON transactions (created_at);

-- Export jobs: a CSV file of another table's rows, made by a worker in the gateway. The row
-- is the job (asked for, claimed, progressing, done or not); the file lives under the
-- exports directory, named after the id. A job is claimed by one node at a time: the claim
-- lasts until claim_until_ms and is renewed with every progress update, so a node that dies
-- mid-export leaves a claim that runs out and another node (or its restart) takes it over.
-- Instants compared inside SQL are Unix milliseconds, as elsewhere.
CREATE TABLE export_jobs (
    id             TEXT PRIMARY KEY NOT NULL,
    -- ledger_entries | transactions | … (the store's ExportKind)
    kind           TEXT NOT NULL,
    -- The filters as JSON (merchant_id, from, to, status, entry_type, …): each kind reads
    -- the ones it takes, so a kind with new filters needs no migration.
    filters        TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed', 'expired')),
    created_by     TEXT NOT NULL,
    rows_done      BIGINT NOT NULL DEFAULT 0,
    rows_total     BIGINT,
    file_bytes     BIGINT,
    error          TEXT,
    -- How many times a node has started it (a restart after a crash is one more).
    attempts       BIGINT NOT NULL DEFAULT 0,
    claimed_by     TEXT,
    claim_until_ms BIGINT,
    finished_at_ms BIGINT,
    -- When a done job's file is deleted and the job marked expired.
    expires_at_ms  BIGINT,
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX export_jobs_status ON export_jobs (status, id);
CREATE INDEX export_jobs_expiry ON export_jobs (status, expires_at_ms);

-- Payments: the raw inbox, transactions and their event timeline, the ledger, and the
-- announcement outbox. Instants compared inside SQL (expiry, next retry) are Unix
-- milliseconds (*_ms, BIGINT), so both backends order them identically; the rest are
-- timestamps like the registry's.

-- The reference a terminal's static QR carries: a paid event for it creates a transaction.
ALTER TABLE terminals ADD COLUMN payment_ref TEXT;
CREATE UNIQUE INDEX terminals_payment_ref ON terminals (payment_ref) WHERE payment_ref IS NOT NULL;

-- Every provider request, exactly as received, before anything else looks at it.
CREATE TABLE payment_inbox (
    id             TEXT PRIMARY KEY NOT NULL,
    provider       TEXT NOT NULL,
    received_at    TEXT NOT NULL,
    headers        TEXT NOT NULL,
    body           BLOB NOT NULL,
    -- applied | duplicate | stale | test | unknown_order | unauthorized | malformed
    outcome        TEXT NOT NULL,
    detail         TEXT,
    transaction_id TEXT
);

CREATE TABLE transactions (
    id                      TEXT PRIMARY KEY NOT NULL,
    order_ref               TEXT NOT NULL UNIQUE,
    terminal_id             TEXT NOT NULL REFERENCES terminals (id),
    merchant_id             TEXT NOT NULL REFERENCES merchants (id),
    amount                  INTEGER NOT NULL CHECK (amount > 0),
    status                  TEXT NOT NULL CHECK (status IN ('pending', 'paid', 'refunded', 'expired', 'failed')),
    source                  TEXT NOT NULL CHECK (source IN ('api', 'static_qr')),
    provider                TEXT,
    provider_transaction_id TEXT,
    issuer                  TEXT,
    paid_at                 TEXT,
    expires_at_ms           INTEGER NOT NULL,
    paid_after_expiry       INTEGER NOT NULL DEFAULT 0,
    created_at              TEXT NOT NULL,
    updated_at              TEXT NOT NULL
);
CREATE INDEX transactions_due ON transactions (status, expires_at_ms);
CREATE INDEX transactions_terminal ON transactions (terminal_id, id);
CREATE INDEX transactions_merchant ON transactions (merchant_id, id);

-- The timeline, and the dedupe key: one row per (provider, provider id, status).
CREATE TABLE transaction_events (
    id                      TEXT PRIMARY KEY NOT NULL,
    transaction_id          TEXT REFERENCES transactions (id),
    provider                TEXT NOT NULL,
    provider_transaction_id TEXT NOT NULL,
    status                  TEXT NOT NULL,
    raw_status              TEXT NOT NULL,
    amount                  INTEGER,
    -- created | applied | stale | paid_after_expiry | expired
    effect                  TEXT NOT NULL,
    inbox_id                TEXT REFERENCES payment_inbox (id),
    created_at              TEXT NOT NULL,
    UNIQUE (provider, provider_transaction_id, status)
);
CREATE INDEX transaction_events_transaction ON transaction_events (transaction_id, id);

-- Append-only; a refund adds reversing entries, it never edits.
CREATE TABLE ledger_entries (
    id             TEXT PRIMARY KEY NOT NULL,
    transaction_id TEXT NOT NULL REFERENCES transactions (id),
    merchant_id    TEXT NOT NULL REFERENCES merchants (id),
    entry_type     TEXT NOT NULL CHECK (entry_type IN ('gross_income', 'platform_fee', 'merchant_payable')),
    amount         INTEGER NOT NULL,
    -- The posting's idempotency key: '<transaction>:<entry_type>' or '<transaction>:refund:<entry_type>'.
    external_id    TEXT NOT NULL UNIQUE,
    reverses_id    TEXT REFERENCES ledger_entries (id),
    created_at     TEXT NOT NULL
);
CREATE INDEX ledger_entries_transaction ON ledger_entries (transaction_id);
CREATE INDEX ledger_entries_merchant ON ledger_entries (merchant_id, id);

-- The announcement outbox: one row per announcement to a device.
CREATE TABLE announcements (
    id                 TEXT PRIMARY KEY NOT NULL,
    transaction_id     TEXT NOT NULL REFERENCES transactions (id),
    terminal_id        TEXT NOT NULL REFERENCES terminals (id),
    device_id          TEXT REFERENCES devices (id),
    -- pending | delivered | failed | expired | no_device
    status             TEXT NOT NULL,
    -- Per-device announcement counter: replays arrive in this order.
    sequence           INTEGER NOT NULL DEFAULT 0,
    attempts           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms INTEGER NOT NULL,
    expires_at_ms      INTEGER NOT NULL,
    last_error         TEXT,
    created_at         TEXT NOT NULL,
    last_attempt_at    TEXT,
    delivered_at       TEXT,
    updated_at         TEXT NOT NULL
);
CREATE INDEX announcements_due ON announcements (status, next_attempt_at_ms);
CREATE INDEX announcements_device ON announcements (device_id, status, id);
CREATE INDEX announcements_transaction ON announcements (transaction_id);

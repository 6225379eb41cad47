-- Subscription billing that a merchant runs for its own customers (the seed's packages,
-- customers and prepaid monthly invoices), and that operators run across merchants.
-- Money is integer rupiah. Calendar dates are ISO text ('YYYY-MM-DD', Asia/Jakarta days),
-- periods 'YYYY-MM', so both backends compare them the same way; instants compared inside
-- SQL are Unix milliseconds, as elsewhere.

-- Operator-wide packages. An inactive package is offered to no new customer but keeps
-- billing the customers who have it; one in use cannot be deleted (customers reference it).
CREATE TABLE billing_packages (
    id          TEXT PRIMARY KEY NOT NULL,
    -- Unique: the CSV import names a package by its name.
    name        TEXT NOT NULL UNIQUE,
    speed       TEXT,
    description TEXT,
    price       INTEGER NOT NULL CHECK (price >= 0),
    active      BOOLEAN NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE billing_customers (
    id            TEXT PRIMARY KEY NOT NULL,
    merchant_id   TEXT NOT NULL REFERENCES merchants (id),
    package_id    TEXT NOT NULL REFERENCES billing_packages (id),
    name          TEXT NOT NULL,
    -- E.164 digits, '62…', 10–15 digits; unique within the merchant.
    phone         TEXT NOT NULL,
    nik           TEXT,
    address       TEXT,
    -- The day of the month the customer is billed (1–28): the invoice for the next
    -- month is made the day before, and falls due on this day.
    billing_day   INTEGER NOT NULL CHECK (billing_day BETWEEN 1 AND 28),
    discount      INTEGER NOT NULL DEFAULT 0 CHECK (discount >= 0),
    status        TEXT NOT NULL CHECK (status IN ('active', 'isolated', 'stopped')),
    register_date TEXT NOT NULL,
    notes         TEXT,
    -- Optimistic locking for edits.
    version       INTEGER NOT NULL DEFAULT 1,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE UNIQUE INDEX billing_customers_phone ON billing_customers (merchant_id, phone);
CREATE INDEX billing_customers_merchant ON billing_customers (merchant_id, id);
CREATE INDEX billing_customers_day ON billing_customers (billing_day, status, id);
CREATE INDEX billing_customers_package ON billing_customers (package_id);

-- A customer's history: created, edited, isolated, re-activated, stopped, imported.
CREATE TABLE billing_customer_events (
    id          TEXT PRIMARY KEY NOT NULL,
    customer_id TEXT NOT NULL REFERENCES billing_customers (id),
    kind        TEXT NOT NULL,
    from_status TEXT,
    to_status   TEXT,
    reason      TEXT,
    -- 'api:<user or token>', 'schedule', 'payment:<transaction id>', 'import:<id>'.
    actor       TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX billing_customer_events_customer ON billing_customer_events (customer_id, id);

-- Prepaid invoices: one per customer and period, with a snapshot of what it bills.
CREATE TABLE billing_invoices (
    id             TEXT PRIMARY KEY NOT NULL,
    customer_id    TEXT NOT NULL REFERENCES billing_customers (id),
    merchant_id    TEXT NOT NULL REFERENCES merchants (id),
    -- The month paid for in advance, 'YYYY-MM'.
    period         TEXT NOT NULL,
    package_id     TEXT NOT NULL REFERENCES billing_packages (id),
    package_name   TEXT NOT NULL,
    amount         INTEGER NOT NULL CHECK (amount >= 0),
    discount       INTEGER NOT NULL CHECK (discount >= 0),
    total_amount   INTEGER NOT NULL CHECK (total_amount >= 0),
    status         TEXT NOT NULL CHECK (status IN ('unpaid', 'paid')),
    -- The billing day in the billing month, 'YYYY-MM-DD'.
    due_date       TEXT NOT NULL,
    paid_at        TEXT,
    -- Who marked it paid ('api:<user or token>'), or 'payment:<transaction id>' for QRIS.
    paid_by        TEXT,
    payment_method TEXT CHECK (payment_method IN ('cash', 'transfer', 'qris')),
    payment_note   TEXT,
    -- The QRIS payment that paid it.
    transaction_id TEXT,
    -- The public receipt page's unguessable token.
    receipt_token  TEXT NOT NULL UNIQUE,
    -- When its reminder was queued (the WhatsApp outbox).
    reminder_queued_at TEXT,
    version        INTEGER NOT NULL DEFAULT 1,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL
);
CREATE UNIQUE INDEX billing_invoices_customer_period ON billing_invoices (customer_id, period);
CREATE INDEX billing_invoices_merchant ON billing_invoices (merchant_id, period, id);
CREATE INDEX billing_invoices_period ON billing_invoices (period, id);
CREATE INDEX billing_invoices_due ON billing_invoices (status, due_date);

-- An invoice's history: created, qris_issued, paid, unpaid, paid_again (a QRIS payment for
-- an invoice already paid by hand: the money is in the ledger, an operator settles it).
CREATE TABLE billing_invoice_events (
    id             TEXT PRIMARY KEY NOT NULL,
    invoice_id     TEXT NOT NULL REFERENCES billing_invoices (id),
    kind           TEXT NOT NULL,
    method         TEXT,
    note           TEXT,
    transaction_id TEXT,
    actor          TEXT NOT NULL,
    created_at     TEXT NOT NULL
);
CREATE INDEX billing_invoice_events_invoice ON billing_invoice_events (invoice_id, id);

-- The dynamic QRIS transactions issued for invoices: a paid callback for one of these
-- marks its invoice paid.
CREATE TABLE billing_invoice_payments (
    transaction_id TEXT PRIMARY KEY NOT NULL REFERENCES transactions (id),
    invoice_id     TEXT NOT NULL REFERENCES billing_invoices (id),
    created_at     TEXT NOT NULL
);
CREATE INDEX billing_invoice_payments_invoice ON billing_invoice_payments (invoice_id);

-- A merchant's billing settings; a merchant without a row uses the defaults (its own name,
-- no logo, every receipt field shown, no automatic isolation, no isolation webhook).
CREATE TABLE billing_merchant_settings (
    merchant_id           TEXT PRIMARY KEY NOT NULL REFERENCES merchants (id),
    business_name         TEXT,
    -- Shown on reminders: where to transfer.
    bank_details          TEXT,
    logo                  BLOB,
    logo_content_type     TEXT,
    receipt_show_nik      BOOLEAN NOT NULL,
    receipt_show_area     BOOLEAN NOT NULL,
    receipt_show_package  BOOLEAN NOT NULL,
    receipt_show_discount BOOLEAN NOT NULL,
    receipt_show_method   BOOLEAN NOT NULL,
    -- Isolate a customer this many days after an unpaid invoice's due date (NULL: never).
    auto_isolate_days     INTEGER CHECK (auto_isolate_days BETWEEN 1 AND 365),
    -- Where isolation changes are POSTed (signed with the secret), e.g. the merchant's
    -- network script that moves a subscriber to an isolation address list.
    isolation_webhook_url    TEXT,
    isolation_webhook_secret TEXT,
    updated_at            TEXT NOT NULL
);

-- Isolation webhooks: a row first, then delivered with retries by one node at a time.
CREATE TABLE billing_webhooks (
    id              TEXT PRIMARY KEY NOT NULL,
    merchant_id     TEXT NOT NULL REFERENCES merchants (id),
    customer_id     TEXT NOT NULL REFERENCES billing_customers (id),
    -- customer.isolated | customer.reactivated
    event           TEXT NOT NULL,
    url             TEXT NOT NULL,
    -- The JSON body, fixed when queued so every attempt sends the same bytes.
    body            TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    claimed_by      TEXT,
    claim_until_ms  INTEGER,
    last_error      TEXT,
    delivered_at    TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX billing_webhooks_due ON billing_webhooks (status, next_attempt_ms);
CREATE INDEX billing_webhooks_customer ON billing_webhooks (customer_id, id);

-- The daily invoice run, once per cluster per Jakarta date.
CREATE TABLE billing_runs (
    run_date     TEXT PRIMARY KEY NOT NULL,
    invoices     INTEGER NOT NULL,
    isolated     INTEGER NOT NULL,
    run_by       TEXT NOT NULL,
    created_at   TEXT NOT NULL
);

-- WhatsApp notifications: merchants' own senders, the message outbox and its log, the
-- contacts' 24-hour windows and opt-outs, the webhook inbox, the notification texts
-- merchants edit, and device alert incidents. Instants compared inside SQL are Unix
-- milliseconds (*_ms); phone numbers are E.164 digits ('62…').

-- A merchant's own WhatsApp number (the operator's comes from the configuration, id
-- 'operator'). Either the Cloud API (a phone number id and its access token) or an external
-- gateway the merchant runs (a URL, headers and a JSON body template). The token and the
-- headers are secrets: never answered by the API.
CREATE TABLE wa_senders (
    merchant_id      TEXT PRIMARY KEY NOT NULL REFERENCES merchants (id),
    kind             TEXT NOT NULL CHECK (kind IN ('cloud', 'gateway')),
    phone_number_id  TEXT UNIQUE,
    access_token     TEXT,
    gateway_url      TEXT,
    gateway_headers  TEXT,
    gateway_body     TEXT,
    -- NULL: the configured default.
    rate_per_sec     BIGINT CHECK (rate_per_sec BETWEEN 1 AND 1000),
    daily_recipients BIGINT CHECK (daily_recipients >= 1),
    active           BOOLEAN NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL
);

-- A sender stopped until a time (130429 back-off, 131048/368 for the day), seen by every node.
CREATE TABLE wa_sender_pauses (
    sender_id       TEXT PRIMARY KEY NOT NULL,
    paused_until_ms BIGINT NOT NULL,
    reason          TEXT NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);

-- The outbox: every message is a row first, then sent by the one worker of the cluster.
CREATE TABLE wa_messages (
    id                TEXT PRIMARY KEY NOT NULL,
    -- The merchant it concerns (whose sender it goes from, when it has one); NULL: the
    -- operator's own message.
    merchant_id       TEXT REFERENCES merchants (id),
    -- 'operator' or the merchant id, fixed when queued.
    sender_id         TEXT NOT NULL,
    recipient         TEXT NOT NULL,
    kind              TEXT NOT NULL,
    -- Paced with the bulk spreading (reminders, bulk messages).
    bulk              BOOLEAN NOT NULL,
    body              TEXT NOT NULL,
    -- The values the kind's registered template is filled with (a JSON array), used when
    -- the recipient's 24-hour window is closed.
    template_params   TEXT,
    via_template      BOOLEAN NOT NULL DEFAULT FALSE,
    -- One message per key ever (a receipt per invoice, a reminder per customer and day).
    dedupe_key        TEXT UNIQUE,
    status            TEXT NOT NULL CHECK (status IN ('pending', 'sending', 'sent', 'delivered', 'read', 'failed', 'uncertain', 'cancelled')),
    wamid             TEXT UNIQUE,
    attempts          BIGINT NOT NULL DEFAULT 0,
    next_attempt_ms   BIGINT NOT NULL,
    claimed_by        TEXT,
    claim_until_ms    BIGINT,
    error_code        BIGINT,
    last_error        TEXT,
    created_by        TEXT NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL,
    sent_at_ms        BIGINT,
    delivered_at_ms   BIGINT,
    read_at_ms        BIGINT,
    updated_at        TIMESTAMPTZ NOT NULL
);
CREATE INDEX wa_messages_due ON wa_messages (status, next_attempt_ms, id);
CREATE INDEX wa_messages_merchant ON wa_messages (merchant_id, id);
CREATE INDEX wa_messages_sent ON wa_messages (sent_at_ms);

-- A message's log: queued, sending, sent, statuses, retries, cancel, uncertain.
CREATE TABLE wa_message_events (
    id         TEXT PRIMARY KEY NOT NULL,
    message_id TEXT NOT NULL REFERENCES wa_messages (id),
    status     TEXT NOT NULL,
    detail     TEXT,
    at_ms      BIGINT NOT NULL
);
CREATE INDEX wa_message_events_message ON wa_message_events (message_id, id);

-- What a number said to a sender: its last message (the 24-hour window) and its opt-out.
CREATE TABLE wa_contacts (
    sender_id       TEXT NOT NULL,
    phone           TEXT NOT NULL,
    last_inbound_ms BIGINT,
    opted_out_ms    BIGINT,
    -- 131049: not messaged again before this.
    paused_until_ms BIGINT,
    updated_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (sender_id, phone)
);

-- Inbound messages (they open the window and count against the sender's throughput).
CREATE TABLE wa_inbound (
    wamid       TEXT PRIMARY KEY NOT NULL,
    sender_id   TEXT NOT NULL,
    phone       TEXT NOT NULL,
    text        TEXT,
    received_ms BIGINT NOT NULL
);
CREATE INDEX wa_inbound_received ON wa_inbound (received_ms);

-- Webhook deliveries as received (answered at once, processed after).
CREATE TABLE wa_webhook_inbox (
    id           TEXT PRIMARY KEY NOT NULL,
    body         TEXT NOT NULL,
    received_ms  BIGINT NOT NULL,
    processed_ms BIGINT,
    error        TEXT
);
CREATE INDEX wa_webhook_inbox_pending ON wa_webhook_inbox (processed_ms, id);

-- A merchant's own text for a notification kind (the built-in Bahasa Indonesia text when
-- there is none).
CREATE TABLE wa_texts (
    merchant_id TEXT NOT NULL REFERENCES merchants (id),
    kind        TEXT NOT NULL,
    body        TEXT NOT NULL,
    updated_by  TEXT NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (merchant_id, kind)
);

-- Merchants' notification choices.
CREATE TABLE wa_merchant_settings (
    merchant_id          TEXT PRIMARY KEY NOT NULL REFERENCES merchants (id),
    -- Where the merchant's own notices go (payouts, device alerts, summaries); NULL: the
    -- merchant's phone.
    contact_phone        TEXT,
    daily_summary        BOOLEAN NOT NULL,
    device_alerts        BOOLEAN NOT NULL,
    -- Opening hours in Jakarta time, minutes after midnight; offline alerts only inside.
    open_minute          BIGINT NOT NULL CHECK (open_minute BETWEEN 0 AND 1439),
    close_minute         BIGINT NOT NULL CHECK (close_minute BETWEEN 1 AND 1440),
    updated_at           TIMESTAMPTZ NOT NULL
);

-- A device alert incident (offline, battery): alerted once when it opens, a recovery
-- message when it closes.
CREATE TABLE wa_device_incidents (
    id          TEXT PRIMARY KEY NOT NULL,
    device_id   TEXT NOT NULL REFERENCES devices (id),
    kind        TEXT NOT NULL CHECK (kind IN ('offline', 'battery')),
    opened_ms   BIGINT NOT NULL,
    closed_ms   BIGINT
);
CREATE UNIQUE INDEX wa_device_incidents_open ON wa_device_incidents (device_id, kind) WHERE closed_ms IS NULL;

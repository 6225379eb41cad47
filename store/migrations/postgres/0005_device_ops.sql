-- Device operations: heartbeats (latest plus a bounded history), presence as the broker
-- reports it, and desired / reported configuration. Instants are Unix milliseconds (*_ms)
-- taken from the gateway's clock, so health can be computed against a controllable clock.

CREATE TABLE device_heartbeats (
    id                  TEXT PRIMARY KEY NOT NULL,
    device_id           TEXT NOT NULL REFERENCES devices (id),
    received_at_ms      BIGINT NOT NULL,
    battery_pct         BIGINT,
    charging            BOOLEAN NOT NULL,
    signal_dbm          BIGINT,
    network             TEXT NOT NULL,
    firmware_version    TEXT NOT NULL,
    audio_pack_version  TEXT NOT NULL,
    uptime_s            BIGINT NOT NULL,
    last_transaction_id TEXT,
    config_version      BIGINT NOT NULL
);
CREATE INDEX device_heartbeats_device ON device_heartbeats (device_id, id);

-- The last presence change per device.
CREATE TABLE device_presence (
    device_id     TEXT PRIMARY KEY NOT NULL REFERENCES devices (id),
    connected     BOOLEAN NOT NULL,
    reason        TEXT,
    changed_at_ms BIGINT NOT NULL
);

-- Desired config (JSON written by the gateway) with its version (0 and NULL: none set yet), the push state (this row
-- is the config outbox: a push is due while push_status = 'pending'), and what the device
-- reported last.
CREATE TABLE device_configs (
    device_id          TEXT PRIMARY KEY NOT NULL REFERENCES devices (id),
    desired_version    BIGINT NOT NULL DEFAULT 0,
    desired            TEXT,
    desired_at_ms      BIGINT,
    push_status        TEXT NOT NULL CHECK (push_status IN ('none', 'pending', 'sent', 'applied', 'rejected', 'failed')),
    push_attempts      BIGINT NOT NULL DEFAULT 0,
    push_error         TEXT,
    pushed_at_ms       BIGINT,
    reported_version   BIGINT,
    reported           TEXT,
    reported_cause     TEXT,
    reported_at_ms     BIGINT
);
CREATE INDEX device_configs_push ON device_configs (push_status);

-- Commands to devices: the row is also the outbox (queued = due while unexpired).
-- queued → sent → acknowledged → succeeded | failed; queued → expired at expires_at_ms;
-- sent | acknowledged → timed_out at result_deadline_ms.
CREATE TABLE device_commands (
    id                 TEXT PRIMARY KEY NOT NULL,
    device_id          TEXT NOT NULL REFERENCES devices (id),
    name               TEXT NOT NULL,
    -- The action as the gateway encodes it (JSON).
    action             TEXT NOT NULL,
    interactive        BOOLEAN NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('queued', 'sent', 'acknowledged', 'succeeded', 'failed', 'timed_out', 'expired')),
    expires_at_ms      BIGINT NOT NULL,
    result_deadline_ms BIGINT NOT NULL,
    attempts           BIGINT NOT NULL DEFAULT 0,
    result             TEXT,
    message            TEXT,
    created_at_ms      BIGINT NOT NULL,
    sent_at_ms         BIGINT,
    acknowledged_at_ms BIGINT,
    completed_at_ms    BIGINT
);
CREATE INDEX device_commands_device ON device_commands (device_id, id);
CREATE INDEX device_commands_status ON device_commands (status, expires_at_ms);

-- Dynamic QR codes a device asked for (up/qr_request): one per (device, request id), so a
-- retried request gets the same QR. 'shown' until its transaction leaves 'pending'; then
-- the device is told to clear it (down/qr_clear) and the row is 'closed'.
CREATE TABLE device_qr_requests (
    device_id      TEXT NOT NULL REFERENCES devices (id),
    request_id     TEXT NOT NULL,
    transaction_id TEXT NOT NULL REFERENCES transactions (id),
    amount         BIGINT NOT NULL,
    payload        TEXT NOT NULL,
    expires_at_ms  BIGINT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('shown', 'closed')),
    close_reason   TEXT,
    created_at_ms  BIGINT NOT NULL,
    closed_at_ms   BIGINT,
    PRIMARY KEY (device_id, request_id)
);
CREATE INDEX device_qr_requests_open ON device_qr_requests (status);

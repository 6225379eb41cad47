-- Registry: merchants -> outlets -> terminals -> devices, binding history, admin tokens.
-- Timestamps are written by the application in UTC (sqlx's text form for OffsetDateTime),
-- so they sort as text.

CREATE TABLE merchants (
    id            TEXT PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL,
    email         TEXT,
    phone         TEXT,
    status        TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected', 'suspended')),
    status_reason TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);

CREATE TABLE outlets (
    id          TEXT PRIMARY KEY NOT NULL,
    merchant_id TEXT NOT NULL REFERENCES merchants (id),
    name        TEXT NOT NULL,
    address     TEXT,
    city        TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX outlets_merchant_id ON outlets (merchant_id, id);

CREATE TABLE terminals (
    id         TEXT PRIMARY KEY NOT NULL,
    outlet_id  TEXT NOT NULL REFERENCES outlets (id),
    label      TEXT NOT NULL,
    name       TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (outlet_id, label)
);

CREATE TABLE devices (
    id                    TEXT PRIMARY KEY NOT NULL,
    serial                TEXT NOT NULL UNIQUE,
    model                 TEXT NOT NULL,
    firmware_version      TEXT,
    status                TEXT NOT NULL CHECK (status IN ('active', 'disabled')),
    -- At most one device per terminal; NULL when unbound.
    terminal_id           TEXT UNIQUE REFERENCES terminals (id),
    -- Salted slow hash of the device secret; NULL once revoked.
    credential_hash       TEXT,
    credential_issued_at  TEXT NOT NULL,
    credential_revoked_at TEXT,
    created_at            TEXT NOT NULL,
    updated_at            TEXT NOT NULL,
    CHECK ((credential_hash IS NULL) = (credential_revoked_at IS NOT NULL))
);

CREATE TABLE device_bindings (
    id          TEXT PRIMARY KEY NOT NULL,
    device_id   TEXT NOT NULL REFERENCES devices (id),
    terminal_id TEXT NOT NULL REFERENCES terminals (id),
    bound_at    TEXT NOT NULL,
    unbound_at  TEXT
);
CREATE INDEX device_bindings_device ON device_bindings (device_id, bound_at);
-- One open binding per device, enforced by the database as well as by the code.
CREATE UNIQUE INDEX device_bindings_open ON device_bindings (device_id) WHERE unbound_at IS NULL;

CREATE TABLE admin_tokens (
    id           TEXT PRIMARY KEY NOT NULL,
    name         TEXT NOT NULL,
    -- SHA-256 of the token: tokens are 256-bit random values, so a fast hash is enough.
    token_hash   TEXT NOT NULL UNIQUE,
    created_at   TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at   TEXT
);

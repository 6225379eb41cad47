-- People: admin and merchant users, login sessions (refresh-token families), login failures
-- (lockout) and the audit log. Instants compared in SQL are Unix milliseconds.

CREATE TABLE users (
    id            TEXT PRIMARY KEY NOT NULL,
    -- Lower-cased; the login name.
    email         TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('admin', 'merchant')),
    role          TEXT NOT NULL,
    merchant_id   TEXT REFERENCES merchants (id),
    -- pbkdf2-sha256$<iterations>$<salt>$<hash>; never leaves the store except for verification.
    password_hash TEXT NOT NULL,
    disabled_ms   BIGINT,
    created_ms    BIGINT NOT NULL,
    updated_ms    BIGINT NOT NULL,
    CHECK ((kind = 'merchant') = (merchant_id IS NOT NULL))
);

-- One row per issued token pair. A refresh rotates a row into a new one of the same family;
-- a rotated row's refresh token presented again revokes the whole family.
CREATE TABLE auth_sessions (
    id                 TEXT PRIMARY KEY NOT NULL,
    family_id          TEXT NOT NULL,
    user_id            TEXT NOT NULL REFERENCES users (id),
    -- SHA-256 of the tokens: 256-bit random values.
    access_hash        TEXT NOT NULL UNIQUE,
    refresh_hash       TEXT NOT NULL UNIQUE,
    access_expires_ms  BIGINT NOT NULL,
    refresh_expires_ms BIGINT NOT NULL,
    created_ms         BIGINT NOT NULL,
    rotated_ms         BIGINT,
    revoked_ms         BIGINT,
    user_agent         TEXT,
    source             TEXT
);
CREATE INDEX auth_sessions_family ON auth_sessions (family_id);
CREATE INDEX auth_sessions_user ON auth_sessions (user_id, id);

CREATE TABLE login_failures (
    id     TEXT PRIMARY KEY NOT NULL,
    email  TEXT NOT NULL,
    source TEXT NOT NULL,
    at_ms  BIGINT NOT NULL
);
CREATE INDEX login_failures_email ON login_failures (email, at_ms);
CREATE INDEX login_failures_source ON login_failures (source, at_ms);

CREATE TABLE audit_logs (
    id          TEXT PRIMARY KEY NOT NULL,
    at_ms       BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT,
    outcome     TEXT NOT NULL,
    before_json TEXT,
    after_json  TEXT,
    request_id  TEXT,
    source      TEXT
);
CREATE INDEX audit_logs_at ON audit_logs (at_ms, id);

-- Idempotency-Key: the first response to a write, replayed for retries with the same key.
-- Keys are per caller. `status` is NULL while the first request is still running.
CREATE TABLE idempotency_keys (
    actor        TEXT NOT NULL,
    key          TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status       BIGINT,
    body         TEXT,
    created_ms   BIGINT NOT NULL,
    PRIMARY KEY (actor, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_ms);

-- API tokens for machines get a role (and, for a merchant's backend, a merchant). Existing
-- tokens (the bootstrap token) are admins.
ALTER TABLE admin_tokens ADD COLUMN role TEXT NOT NULL DEFAULT 'admin';
ALTER TABLE admin_tokens ADD COLUMN merchant_id TEXT REFERENCES merchants (id);

-- Optional TOTP second factor. The secret must be readable to check codes, so it is stored
-- as is (base32); `totp_enabled_ms` is NULL while set up but not yet confirmed with a code.
-- `totp_last_step` refuses a code whose 30-second step was already used.
ALTER TABLE users ADD COLUMN totp_secret TEXT;
ALTER TABLE users ADD COLUMN totp_enabled_ms BIGINT;
ALTER TABLE users ADD COLUMN totp_last_step BIGINT;

-- One-time recovery codes, as SHA-256 hashes.
CREATE TABLE recovery_codes (
    user_id   TEXT NOT NULL REFERENCES users (id),
    code_hash TEXT NOT NULL,
    used_ms   BIGINT,
    PRIMARY KEY (user_id, code_hash)
);

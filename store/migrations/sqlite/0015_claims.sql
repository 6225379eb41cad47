-- Provisioning by claim. A claim is a production batch's credential: factory-fresh devices
-- connect with it (MQTT user name claim:<id>) and get their own identity. The secret is
-- stored only as a salted slow hash. Exactly one of serial_pattern (a glob: * and ?) and
-- serials_json (a JSON array of serials) says which serials it may provision. uses never
-- passes max_uses: a provisioning takes a use with one conditional UPDATE in its own
-- transaction. Instants are Unix milliseconds.
CREATE TABLE claims (
    id             TEXT PRIMARY KEY NOT NULL,
    name           TEXT NOT NULL,
    secret_hash    TEXT NOT NULL,
    serial_pattern TEXT,
    serials_json   TEXT,
    max_uses       BIGINT NOT NULL CHECK (max_uses > 0),
    uses           BIGINT NOT NULL DEFAULT 0,
    expires_at_ms  BIGINT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
    created_at_ms  BIGINT NOT NULL,
    revoked_at_ms  BIGINT,
    CHECK (uses >= 0 AND uses <= max_uses),
    CHECK ((serial_pattern IS NULL) <> (serials_json IS NULL))
);

-- Each serial provisioned by claim, once: the primary key refuses a second row, and a
-- second attempt is refused unless an operator set reprovision_allowed_at_ms (a device
-- reset to factory), which the next provisioning clears.
CREATE TABLE claim_provisionings (
    serial                    TEXT PRIMARY KEY NOT NULL,
    claim_id                  TEXT NOT NULL REFERENCES claims (id),
    device_id                 TEXT NOT NULL UNIQUE REFERENCES devices (id),
    provisioned_at_ms         BIGINT NOT NULL,
    times                     BIGINT NOT NULL DEFAULT 1,
    reprovision_allowed_at_ms BIGINT
);
CREATE INDEX claim_provisionings_claim ON claim_provisionings (claim_id, serial);

-- Client certificates the device CA issued. The serial (lowercase hex, random) names a
-- certificate in the API; the fingerprint (SHA-256 of the DER, hex) is what the broker
-- reports at CONNECT and what the revocation list holds. A certificate is active until it
-- is revoked (by hand, or with its device's credential) or superseded (its device
-- connected with a certificate issued after it). changed_at_ms is when it stopped being
-- active: other nodes poll for revocations newer than their last look.
CREATE TABLE device_certificates (
    serial        TEXT PRIMARY KEY NOT NULL,
    device_id     TEXT NOT NULL REFERENCES devices (id),
    fingerprint   TEXT NOT NULL UNIQUE,
    key_type      TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('active', 'revoked', 'superseded')),
    not_before    TEXT NOT NULL,
    not_after     TEXT NOT NULL,
    issued_at     TEXT NOT NULL,
    -- The issue instant in Unix milliseconds: which of a device's certificates is newer.
    issued_at_ms  INTEGER NOT NULL,
    -- How the certificate was asked for: api | mqtt (a renewal over the device's topics).
    issued_via    TEXT NOT NULL,
    revoked_at    TEXT,
    changed_at_ms INTEGER
);
CREATE INDEX device_certificates_device ON device_certificates (device_id, issued_at_ms);
CREATE INDEX device_certificates_changed ON device_certificates (changed_at_ms)
    WHERE changed_at_ms IS NOT NULL;

-- How the device last authenticated on the broker: password | certificate (NULL: never).
ALTER TABLE devices ADD COLUMN last_auth TEXT;

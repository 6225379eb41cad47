-- Dynamic QR downlinks become an outbox: a QR request row carries the state of its two
-- downlinks, so qr_show and qr_clear are retried while the device is connected, replayed
-- when it reconnects, and end delivered (acknowledged), expired (the QR's own expiry passed:
-- the device has dropped it by itself) or failed (too many attempts). Rows from before keep
-- what they were: their show counted as delivered, no clear owed.
ALTER TABLE device_qr_requests ADD COLUMN show_status TEXT NOT NULL DEFAULT 'delivered'
    CHECK (show_status IN ('pending', 'delivered', 'expired', 'failed'));
ALTER TABLE device_qr_requests ADD COLUMN clear_status TEXT
    CHECK (clear_status IN ('pending', 'delivered', 'expired', 'failed'));
ALTER TABLE device_qr_requests ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE device_qr_requests ADD COLUMN next_attempt_at_ms INTEGER NOT NULL DEFAULT 0;
CREATE INDEX device_qr_requests_due ON device_qr_requests (device_id)
    WHERE show_status = 'pending' OR clear_status = 'pending';

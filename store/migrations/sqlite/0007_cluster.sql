-- Several gateway nodes on one database: who is running, which periodic work one of them
-- holds, and what every node must share. Instants are Unix milliseconds from the nodes'
-- clocks (*_ms).

-- Every `gema serve` registers here and heartbeats.
CREATE TABLE nodes (
    id                TEXT PRIMARY KEY NOT NULL,
    version           TEXT NOT NULL,
    http_addr         TEXT NOT NULL,
    mqtt_addr         TEXT NOT NULL,
    started_at_ms     BIGINT NOT NULL,
    heartbeat_at_ms   BIGINT NOT NULL,
    devices_held      BIGINT NOT NULL DEFAULT 0,
    stopped_at_ms     BIGINT
);

-- Periodic work done once per cluster: the node holding a lease until its expiry does it.
CREATE TABLE cluster_leases (
    name        TEXT PRIMARY KEY NOT NULL,
    holder      TEXT NOT NULL,
    until_ms    BIGINT NOT NULL
);

-- Material created once and used by every node (the development CA and server key).
CREATE TABLE cluster_secrets (
    name        TEXT PRIMARY KEY NOT NULL,
    value       BLOB NOT NULL,
    created_at_ms BIGINT NOT NULL
);

-- Which node holds each device's MQTT session. The epoch counts the device's connections
-- (every connect, on any node, adds one), so an older session is told apart from the
-- current one: a node acts for a device only while it holds the current epoch.
CREATE TABLE device_sessions (
    device_id      TEXT PRIMARY KEY NOT NULL REFERENCES devices (id),
    node_id        TEXT NOT NULL,
    epoch          BIGINT NOT NULL,
    connected      BOOLEAN NOT NULL,
    changed_at_ms  BIGINT NOT NULL
);
CREATE INDEX device_sessions_changed ON device_sessions (changed_at_ms);
CREATE INDEX device_sessions_node ON device_sessions (node_id, connected);

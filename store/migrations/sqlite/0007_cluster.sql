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

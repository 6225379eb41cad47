//! Several gateway nodes on one database: the nodes themselves (registered at start,
//! heartbeating), which node holds each device's session (and the connection epoch that
//! fences a node acting on an old session), leases for periodic work that must run once
//! per cluster rather than once per node, secrets created once and shared by every node,
//! and the wake-up signal between nodes.
//!
//! The signal is PostgreSQL's `LISTEN`/`NOTIFY` on one channel, `gema_cluster`: a wake-up,
//! never the data (which stays in tables; a missed signal is caught by the nodes' periodic
//! rechecks). Payloads are short text the gateway defines, at most [`MAX_SIGNAL_BYTES`].
//!
//! On SQLite there is one node (a second daemon on the same file is refused by the binary's
//! lock), and everything here still works: the one node holds every lease and every
//! session; a signal goes nowhere and [`ClusterStore::listen`] returns `None`.

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::db::{query, query_as};
use crate::{Db, StoreError, StoreResult};

/// The longest signal payload PostgreSQL accepts is 8,000 bytes; this leaves room.
pub const MAX_SIGNAL_BYTES: usize = 7_900;
const CHANNEL: &str = "gema_cluster";

/// Which node holds a device's session, as last recorded.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SessionRecord {
    pub device_id: String,
    pub node_id: String,
    /// The device's connection count: every connect, on any node, adds one.
    pub epoch: i64,
    /// `false` once the holding node recorded the disconnect.
    pub connected: bool,
    pub changed_at_ms: i64,
}

/// A session a node started: its epoch, and the node that held the device's previous
/// session if that one was still connected (it must end it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionStart {
    pub device_id: String,
    pub epoch: i64,
    pub taken_from: Option<String>,
}

/// A gateway node as it registered, and its last heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct NodeRecord {
    pub id: String,
    pub version: String,
    /// The admin API's address as the node bound it.
    pub http_addr: String,
    /// The MQTT over TLS listener's address as the node bound it.
    pub mqtt_addr: String,
    pub started_at_ms: i64,
    pub heartbeat_at_ms: i64,
    /// Device sessions the node held at its last heartbeat.
    pub devices_held: i64,
    /// Set when the node stopped cleanly; `None` while it runs (or after it died).
    pub stopped_at_ms: Option<i64>,
}

/// What a node registers at start.
#[derive(Debug, Clone)]
pub struct NewNode {
    pub id: String,
    pub version: String,
    pub http_addr: String,
    pub mqtt_addr: String,
    pub now_ms: i64,
}

/// Nodes, cluster leases and shared secrets.
#[async_trait]
pub trait ClusterStore: Send + Sync {
    /// Registers a node (a restart under the same id replaces its row). Returns the row it
    /// replaced, if any, so the caller can tell a restart from a second process that was
    /// given the same id.
    async fn register_node(&self, node: NewNode) -> StoreResult<Option<NodeRecord>>;
    /// Records a node's heartbeat. `NotFound` if it never registered.
    async fn heartbeat_node(&self, id: &str, now_ms: i64, devices_held: i64) -> StoreResult<()>;
    /// Marks a node stopped (a clean shutdown).
    async fn stop_node(&self, id: &str, now_ms: i64) -> StoreResult<()>;
    /// Every node that ever registered, by id.
    async fn list_nodes(&self) -> StoreResult<Vec<NodeRecord>>;

    /// Takes or renews the lease `name` for `holder` until `now_ms + ttl_ms`, if it is free,
    /// expired, or already `holder`'s. Returns whether `holder` holds it now. Atomic: of
    /// nodes asking at once, one gets it.
    async fn take_lease(
        &self,
        name: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> StoreResult<bool>;
    /// Gives the lease up if `holder` holds it (a clean shutdown), so another node need not
    /// wait for it to expire.
    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<()>;

    /// The shared secret `name`: `value` if none was stored yet (it is stored), otherwise
    /// the one stored first. Of nodes racing to create it, every one gets the same value.
    async fn shared_secret(&self, name: &str, value: &[u8], now_ms: i64) -> StoreResult<Vec<u8>>;

    /// Records that `node_id` now holds the sessions of `device_ids` (one transaction):
    /// each device's epoch goes up by one. Unknown devices are skipped.
    async fn start_sessions(
        &self,
        node_id: &str,
        device_ids: &[String],
        now_ms: i64,
    ) -> StoreResult<Vec<SessionStart>>;
    /// Records the end of sessions `(device, epoch)` of `node_id`, each only if it is still
    /// the device's current session. Returns the devices whose current session it was.
    async fn end_sessions(
        &self,
        node_id: &str,
        sessions: &[(String, i64)],
        now_ms: i64,
    ) -> StoreResult<Vec<String>>;
    /// Ends every session recorded for `node_id` (it restarted or stopped: it holds none).
    async fn end_node_sessions(&self, node_id: &str, now_ms: i64) -> StoreResult<u64>;
    /// The device's session record, if it ever connected.
    async fn device_session(&self, device_id: &str) -> StoreResult<Option<SessionRecord>>;
    /// The session records of each of `device_ids` that ever connected.
    async fn device_sessions(&self, device_ids: &[String]) -> StoreResult<Vec<SessionRecord>>;
    /// Connected sessions held by nodes other than `node_id` that started at or after
    /// `since_ms`: a node compares them with its own connections to find devices taken
    /// over while it missed the signal.
    async fn sessions_started_elsewhere(
        &self,
        node_id: &str,
        since_ms: i64,
    ) -> StoreResult<Vec<SessionRecord>>;

    /// Sends `payload` to every node listening (the sender too). Nothing on SQLite.
    async fn signal(&self, payload: &str) -> StoreResult<()>;
    /// Starts listening for signals; `None` on SQLite (one node, nobody to hear from). The
    /// listener reconnects by itself; signals sent while it was disconnected are lost.
    async fn listen(&self) -> StoreResult<Option<mpsc::Receiver<String>>>;
}

#[async_trait]
impl ClusterStore for Db {
    async fn register_node(&self, node: NewNode) -> StoreResult<Option<NodeRecord>> {
        let mut tx = self.begin_write().await?;
        let sql = format!("SELECT * FROM nodes WHERE id = $1 {}", self.row_lock());
        let previous = query_as::<NodeRecord>(&sql)
            .bind(&node.id)
            .fetch_optional(&mut tx)
            .await?;
        query(
            "INSERT INTO nodes (id, version, http_addr, mqtt_addr, started_at_ms, \
             heartbeat_at_ms, devices_held, stopped_at_ms) VALUES ($1, $2, $3, $4, $5, $5, 0, NULL) \
             ON CONFLICT (id) DO UPDATE SET version = excluded.version, \
             http_addr = excluded.http_addr, mqtt_addr = excluded.mqtt_addr, \
             started_at_ms = excluded.started_at_ms, heartbeat_at_ms = excluded.heartbeat_at_ms, \
             devices_held = 0, stopped_at_ms = NULL",
        )
        .bind(&node.id)
        .bind(&node.version)
        .bind(&node.http_addr)
        .bind(&node.mqtt_addr)
        .bind(node.now_ms)
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(previous)
    }

    async fn heartbeat_node(&self, id: &str, now_ms: i64, devices_held: i64) -> StoreResult<()> {
        let changed = query(
            "UPDATE nodes SET heartbeat_at_ms = $2, devices_held = $3, stopped_at_ms = NULL \
             WHERE id = $1",
        )
        .bind(id)
        .bind(now_ms)
        .bind(devices_held)
        .execute(&mut self.write_conn().await?)
        .await?;
        if changed == 0 {
            return Err(StoreError::NotFound {
                entity: "node",
                id: id.to_owned(),
            });
        }
        Ok(())
    }

    async fn stop_node(&self, id: &str, now_ms: i64) -> StoreResult<()> {
        query("UPDATE nodes SET stopped_at_ms = $2, devices_held = 0 WHERE id = $1")
            .bind(id)
            .bind(now_ms)
            .execute(&mut self.write_conn().await?)
            .await?;
        Ok(())
    }

    async fn list_nodes(&self) -> StoreResult<Vec<NodeRecord>> {
        Ok(query_as::<NodeRecord>("SELECT * FROM nodes ORDER BY id")
            .fetch_all(self.read())
            .await?)
    }

    async fn take_lease(
        &self,
        name: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> StoreResult<bool> {
        // One statement: the conflict arm updates only a free, expired or own lease, so of
        // concurrent takers exactly one changes the row.
        let changed = query(
            "INSERT INTO cluster_leases (name, holder, until_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
             until_ms = excluded.until_ms \
             WHERE cluster_leases.holder = excluded.holder OR cluster_leases.until_ms <= $4",
        )
        .bind(name)
        .bind(holder)
        .bind(now_ms.saturating_add(ttl_ms))
        .bind(now_ms)
        .execute(&mut self.write_conn().await?)
        .await?;
        Ok(changed == 1)
    }

    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<()> {
        query("DELETE FROM cluster_leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&mut self.write_conn().await?)
            .await?;
        Ok(())
    }

    async fn shared_secret(&self, name: &str, value: &[u8], now_ms: i64) -> StoreResult<Vec<u8>> {
        let mut tx = self.begin_write().await?;
        query(
            "INSERT INTO cluster_secrets (name, value, created_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(value)
        .bind(now_ms)
        .execute(&mut tx)
        .await?;
        let stored: (Vec<u8>,) = query_as("SELECT value FROM cluster_secrets WHERE name = $1")
            .bind(name)
            .fetch_one(&mut tx)
            .await?;
        tx.commit().await?;
        Ok(stored.0)
    }

    async fn start_sessions(
        &self,
        node_id: &str,
        device_ids: &[String],
        now_ms: i64,
    ) -> StoreResult<Vec<SessionStart>> {
        let mut started = Vec::with_capacity(device_ids.len());
        if device_ids.is_empty() {
            return Ok(started);
        }
        let mut tx = self.begin_write().await?;
        let read = format!(
            "SELECT * FROM device_sessions WHERE device_id = $1 {}",
            self.row_lock()
        );
        for device_id in device_ids {
            let previous = query_as::<SessionRecord>(&read)
                .bind(device_id)
                .fetch_optional(&mut tx)
                .await?;
            let epoch: Option<(i64,)> = query_as(
                "INSERT INTO device_sessions (device_id, node_id, epoch, connected, changed_at_ms) \
                 SELECT $1, $2, 1, $3, $4 WHERE EXISTS (SELECT 1 FROM devices WHERE id = $1) \
                 ON CONFLICT (device_id) DO UPDATE SET node_id = excluded.node_id, \
                 epoch = device_sessions.epoch + 1, connected = excluded.connected, \
                 changed_at_ms = excluded.changed_at_ms \
                 RETURNING epoch",
            )
            .bind(device_id)
            .bind(node_id)
            .bind(true)
            .bind(now_ms)
            .fetch_optional(&mut tx)
            .await?;
            let Some((epoch,)) = epoch else {
                continue; // not a device (deleted meanwhile)
            };
            started.push(SessionStart {
                device_id: device_id.clone(),
                epoch,
                taken_from: previous
                    .filter(|p| p.connected && p.node_id != node_id)
                    .map(|p| p.node_id),
            });
        }
        tx.commit().await?;
        Ok(started)
    }

    async fn end_sessions(
        &self,
        node_id: &str,
        sessions: &[(String, i64)],
        now_ms: i64,
    ) -> StoreResult<Vec<String>> {
        let mut ended = Vec::new();
        if sessions.is_empty() {
            return Ok(ended);
        }
        let mut tx = self.begin_write().await?;
        for (device_id, epoch) in sessions {
            let changed = query(
                "UPDATE device_sessions SET connected = $4, changed_at_ms = $5 \
                 WHERE device_id = $1 AND node_id = $2 AND epoch = $3",
            )
            .bind(device_id)
            .bind(node_id)
            .bind(*epoch)
            .bind(false)
            .bind(now_ms)
            .execute(&mut tx)
            .await?;
            if changed == 1 {
                ended.push(device_id.clone());
            }
        }
        tx.commit().await?;
        Ok(ended)
    }

    async fn end_node_sessions(&self, node_id: &str, now_ms: i64) -> StoreResult<u64> {
        Ok(query(
            "UPDATE device_sessions SET connected = $2, changed_at_ms = $3 \
             WHERE node_id = $1 AND connected = $4",
        )
        .bind(node_id)
        .bind(false)
        .bind(now_ms)
        .bind(true)
        .execute(&mut self.write_conn().await?)
        .await?)
    }

    async fn device_session(&self, device_id: &str) -> StoreResult<Option<SessionRecord>> {
        Ok(
            query_as::<SessionRecord>("SELECT * FROM device_sessions WHERE device_id = $1")
                .bind(device_id)
                .fetch_optional(self.read())
                .await?,
        )
    }

    async fn device_sessions(&self, device_ids: &[String]) -> StoreResult<Vec<SessionRecord>> {
        if device_ids.is_empty() {
            return Ok(Vec::new());
        }
        crate::device_ops::fetch_for_ids(
            self,
            device_ids,
            1,
            |list| format!("SELECT * FROM device_sessions WHERE device_id IN ({list})"),
            |q| q,
        )
        .await
    }

    async fn sessions_started_elsewhere(
        &self,
        node_id: &str,
        since_ms: i64,
    ) -> StoreResult<Vec<SessionRecord>> {
        Ok(query_as::<SessionRecord>(
            "SELECT * FROM device_sessions WHERE changed_at_ms >= $2 AND node_id <> $1 \
             AND connected = $3",
        )
        .bind(node_id)
        .bind(since_ms)
        .bind(true)
        .fetch_all(self.read())
        .await?)
    }

    async fn signal(&self, payload: &str) -> StoreResult<()> {
        if payload.len() > MAX_SIGNAL_BYTES {
            return Err(StoreError::Conflict {
                code: "signal_too_long",
                message: format!(
                    "a cluster signal is at most {MAX_SIGNAL_BYTES} bytes, not {}",
                    payload.len()
                ),
                field: None,
            });
        }
        match self {
            Db::Sqlite(_) => Ok(()),
            Db::Postgres(p) => {
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(CHANNEL)
                    .bind(payload)
                    .execute(&p.write)
                    .await?;
                Ok(())
            }
        }
    }

    async fn listen(&self) -> StoreResult<Option<mpsc::Receiver<String>>> {
        let Db::Postgres(p) = self else {
            return Ok(None);
        };
        let mut listener = sqlx::postgres::PgListener::connect_with(&p.read).await?;
        listener.listen(CHANNEL).await?;
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(async move {
            loop {
                match listener.recv().await {
                    Ok(notification) => {
                        if tx.send(notification.payload().to_owned()).await.is_err() {
                            return; // nobody listens any more
                        }
                    }
                    Err(err) => {
                        // recv reconnects on the next call; wait a little first.
                        tracing::warn!(error = %err, "cluster signal listener lost its connection");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(Some(rx))
    }
}

//! Several gateway nodes on one database: the nodes themselves (registered at start,
//! heartbeating), leases for periodic work that must run once per cluster rather than once
//! per node, and secrets created once and shared by every node.
//!
//! On SQLite there is one node (a second daemon on the same file is refused by the binary's
//! lock), and everything here still works: the one node holds every lease.

use async_trait::async_trait;

use crate::db::{query, query_as};
use crate::{Db, StoreError, StoreResult};

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
}

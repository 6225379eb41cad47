//! `/nodes`: the gateway nodes sharing this database.

use gema_gateway::cluster::NodeStatus;
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::timestamps::instant;

/// A gateway node: a `gema serve` process on this database.
#[derive(Debug, Serialize, ToSchema)]
pub struct Node {
    pub id: String,
    /// `running`, `stopped` (shut down cleanly) or `unresponsive` (no heartbeat for three
    /// heartbeat intervals: crashed, paused or cut off).
    pub state: String,
    /// Whether this is the node that answered the request.
    pub this_node: bool,
    pub version: String,
    /// The admin API's listener as the node bound it.
    pub http_addr: String,
    /// The MQTT over TLS listener as the node bound it.
    pub mqtt_addr: String,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_heartbeat_at: OffsetDateTime,
    /// Device connections the node held at its last heartbeat.
    pub devices_held: i64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub stopped_at: Option<OffsetDateTime>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NodeList {
    /// By id.
    pub items: Vec<Node>,
}

impl From<NodeStatus> for Node {
    fn from(n: NodeStatus) -> Self {
        let r = n.record;
        Node {
            id: r.id,
            state: n.state.as_str().into(),
            this_node: n.this_node,
            version: r.version,
            http_addr: r.http_addr,
            mqtt_addr: r.mqtt_addr,
            started_at: instant(r.started_at_ms),
            last_heartbeat_at: instant(r.heartbeat_at_ms),
            devices_held: r.devices_held,
            stopped_at: r.stopped_at_ms.map(instant),
        }
    }
}

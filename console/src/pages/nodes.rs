//! The cluster's gateway nodes, from the same service as the API's `GET /nodes`: each
//! `gema serve` that registered on this database, whether it runs (its heartbeat is
//! recent), stopped cleanly or stopped answering, its listeners, version, start, last
//! heartbeat and the device sessions it held then. A cluster has a handful of nodes, so
//! the list is one page, as in the API. Every operator role may see it; merchants may not.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use gema_admin_api::AppState;
use gema_gateway::auth::Action;
use gema_gateway::cluster::{NodeState, NodeStatus};

use crate::frame::{Chrome, ErrorPage, html};
use crate::session::Session;

/// A node's state as a badge: class and text key.
pub fn state_badge(state: NodeState) -> (&'static str, &'static str) {
    match state {
        NodeState::Running => ("running", "nodes.state.running"),
        NodeState::Stopped => ("stopped", "nodes.state.stopped"),
        NodeState::Unresponsive => ("unresponsive", "nodes.state.unresponsive"),
    }
}

#[derive(Debug)]
pub struct NodeRow {
    pub id: String,
    /// `running`, `stopped`, `unresponsive`: the row's `data-state` and badge class.
    pub state: &'static str,
    pub state_text: &'static str,
    pub this_node: bool,
    pub version: String,
    pub http_addr: String,
    pub mqtt_addr: String,
    pub started_ms: i64,
    pub heartbeat_ms: i64,
    pub devices_held: i64,
    pub stopped_ms: Option<i64>,
}

impl NodeRow {
    fn new(n: NodeStatus, chrome: &Chrome) -> NodeRow {
        let (state, key) = state_badge(n.state);
        let r = n.record;
        NodeRow {
            id: r.id,
            state,
            state_text: chrome.t(key),
            this_node: n.this_node,
            version: r.version,
            http_addr: r.http_addr,
            mqtt_addr: r.mqtt_addr,
            started_ms: r.started_at_ms,
            heartbeat_ms: r.heartbeat_at_ms,
            devices_held: r.devices_held,
            stopped_ms: r.stopped_at_ms,
        }
    }
}

#[derive(Template)]
#[template(path = "nodes.html")]
struct NodesView {
    chrome: Chrome,
    nodes: Vec<NodeRow>,
}

/// `GET /nodes`.
pub async fn list(State(state): State<AppState>, session: Session) -> Result<Response, ErrorPage> {
    session.require(Action::NodeList)?;
    let nodes = state.cluster.nodes().await.map_err(|e| session.failed(e))?;
    let chrome = session.chrome();
    Ok(html(
        StatusCode::OK,
        &NodesView {
            nodes: nodes
                .into_iter()
                .map(|n| NodeRow::new(n, &chrome))
                .collect(),
            chrome,
        },
    ))
}

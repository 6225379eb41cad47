//! The cluster: which gateway nodes share this database, and how they are.

use axum::Json;
use axum::extract::State;

use crate::error::{ApiResult, ErrorBody};
use crate::state::AppState;
use crate::views::cluster::{Node, NodeList};

/// Every node that registered on this database (running, stopped or unresponsive), with
/// its last heartbeat and the devices it held then. Any node answers the same.
#[utoipa::path(get, path = "/nodes", tag = "cluster",
    responses((status = 200, description = "By id", body = NodeList),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(State(state): State<AppState>) -> ApiResult<Json<NodeList>> {
    let nodes = state.cluster.nodes().await?;
    Ok(Json(NodeList {
        items: nodes.into_iter().map(Node::from).collect(),
    }))
}

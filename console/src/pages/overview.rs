//! The overview: the fleet's health, payments today, what is still to be announced or paid
//! out, the WhatsApp queue and the gateway nodes. A merchant user sees their own merchant's
//! figures; the nodes only to whom the matrix shows them.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use gema_admin_api::AppState;
use gema_gateway::auth::Action;
use gema_gateway::cluster::NodeState;

use crate::frame::ErrorPage;
use crate::frame::{Chrome, html};
use crate::session::Session;

#[derive(Debug)]
pub struct NodeRow {
    pub id: String,
    pub version: String,
    pub state: &'static str,
    pub state_text: &'static str,
    pub this_node: bool,
    pub heartbeat_ms: i64,
    pub devices_held: i64,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewView {
    chrome: Chrome,
    fleet: [i64; 3],
    paid_count: i64,
    paid_amount: i64,
    announcements_pending: i64,
    /// Shown to whom may read settlement.
    payout: Option<(i64, i64)>,
    /// Pending WhatsApp messages, to whom may read them.
    whatsapp_pending: Option<i64>,
    nodes: Option<Vec<NodeRow>>,
}

pub async fn page(State(state): State<AppState>, session: Session) -> Result<Response, ErrorPage> {
    session.require(Action::DashboardRead)?;
    let merchant = session.merchant().map(str::to_owned);
    let fail = |e| session.failed(e);
    let summary = state
        .settlement
        .dashboard(merchant.as_deref())
        .await
        .map_err(fail)?;
    let fleet = state
        .device_ops
        .fleet_counts(merchant.clone())
        .await
        .map_err(fail)?;
    let whatsapp_pending = if session.may(Action::WhatsAppRead) {
        let counts = state
            .whatsapp
            .counts(merchant.as_deref())
            .await
            .map_err(fail)?;
        Some(counts.get("pending").copied().unwrap_or(0))
    } else {
        None
    };
    let nodes = if session.may(Action::NodeList) {
        let lang = session.prefs.lang;
        let nodes = state.cluster.nodes().await.map_err(fail)?;
        Some(
            nodes
                .into_iter()
                .map(|n| {
                    let (state, key) = match n.state {
                        NodeState::Running => ("running", "node.running"),
                        NodeState::Stopped => ("stopped", "node.stopped"),
                        NodeState::Unresponsive => ("unresponsive", "node.unresponsive"),
                    };
                    NodeRow {
                        id: n.record.id,
                        version: n.record.version,
                        state,
                        state_text: lang.t(key),
                        this_node: n.this_node,
                        heartbeat_ms: n.record.heartbeat_at_ms,
                        devices_held: n.record.devices_held,
                    }
                })
                .collect(),
        )
    } else {
        None
    };
    let payout = session.may(Action::SettlementRead).then_some((
        summary.settlement.pending_payout,
        summary.settlement.unbatched,
    ));
    Ok(html(
        StatusCode::OK,
        &OverviewView {
            chrome: session.chrome(),
            fleet,
            paid_count: summary.paid_today.count,
            paid_amount: summary.paid_today.amount,
            announcements_pending: summary.announcements_pending,
            payout,
            whatsapp_pending,
            nodes,
        },
    ))
}

//! The overview: the fleet's health, payments today, what is still to be announced or paid
//! out, the WhatsApp queue and the gateway nodes. A merchant user sees their own merchant's
//! figures; the nodes only to whom the matrix shows them.

use askama::Template;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use gema_admin_api::AppState;
use gema_gateway::GatewayResult;
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

/// The overview's figures, as of `at`.
#[derive(Debug, Clone)]
pub struct Figures {
    pub fleet: [i64; 3],
    pub paid_count: i64,
    pub paid_amount: i64,
    pub announcements_pending: i64,
    pub pending_payout: i64,
    pub unbatched: i64,
    pub whatsapp_pending: i64,
    pub at: time::OffsetDateTime,
}

/// Figures younger than this are shown as they are.
const FRESH: Duration = Duration::from_secs(15);
/// Older ones (up to this) are shown while a refresh runs in the background; older still
/// are computed while the page waits.
const STALE_MAX: Duration = Duration::from_secs(300);
/// Merchants whose figures are kept at most; past it the cache starts over.
const MAX_ENTRIES: usize = 10_000;

/// The overview's figures per merchant (and for the whole platform), computed at most
/// every 15 s per node. They add up the fleet's health and a merchant's whole ledger,
/// which on a large platform takes longer than a page may (a page's goal is 50 ms), so the
/// overview shows them with their time ("as of"), refreshed behind the page.
#[derive(Debug, Default)]
pub struct OverviewCache {
    entries: Mutex<HashMap<Option<String>, CacheEntry>>,
}

#[derive(Debug)]
struct CacheEntry {
    at: Instant,
    figures: Arc<Figures>,
    refreshing: bool,
}

impl OverviewCache {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<Option<String>, CacheEntry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn figures(
        self: &Arc<Self>,
        state: &AppState,
        merchant: Option<String>,
    ) -> GatewayResult<Arc<Figures>> {
        {
            let mut entries = self.entries();
            if let Some(entry) = entries.get_mut(&merchant) {
                let age = entry.at.elapsed();
                if age < FRESH {
                    return Ok(entry.figures.clone());
                }
                if age < STALE_MAX {
                    if !entry.refreshing {
                        entry.refreshing = true;
                        let (cache, state, merchant) =
                            (self.clone(), state.clone(), merchant.clone());
                        tokio::spawn(async move {
                            let computed = compute(&state, merchant.as_deref()).await;
                            if let Err(e) = cache.store(merchant, computed) {
                                tracing::warn!(error = %e, "refreshing the overview's figures failed");
                            }
                        });
                    }
                    return Ok(entry.figures.clone());
                }
            }
        }
        let computed = compute(state, merchant.as_deref()).await;
        self.store(merchant, computed)
    }

    fn store(
        &self,
        merchant: Option<String>,
        computed: GatewayResult<Figures>,
    ) -> GatewayResult<Arc<Figures>> {
        let mut entries = self.entries();
        match computed {
            Ok(figures) => {
                let figures = Arc::new(figures);
                if entries.len() >= MAX_ENTRIES {
                    entries.clear();
                }
                entries.insert(
                    merchant,
                    CacheEntry {
                        at: Instant::now(),
                        figures: figures.clone(),
                        refreshing: false,
                    },
                );
                Ok(figures)
            }
            Err(e) => {
                // The next page tries again.
                if let Some(entry) = entries.get_mut(&merchant) {
                    entry.refreshing = false;
                }
                Err(e)
            }
        }
    }
}

async fn compute(state: &AppState, merchant: Option<&str>) -> GatewayResult<Figures> {
    let summary = state.settlement.dashboard(merchant).await?;
    let fleet = state
        .device_ops
        .fleet_counts(merchant.map(str::to_owned))
        .await?;
    let whatsapp = state.whatsapp.counts(merchant).await?;
    Ok(Figures {
        fleet,
        paid_count: summary.paid_today.count,
        paid_amount: summary.paid_today.amount,
        announcements_pending: summary.announcements_pending,
        pending_payout: summary.settlement.pending_payout,
        unbatched: summary.settlement.unbatched,
        whatsapp_pending: whatsapp.get("pending").copied().unwrap_or(0),
        at: time::OffsetDateTime::now_utc(),
    })
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewView {
    chrome: Chrome,
    figures: Arc<Figures>,
    /// Whether to show the payout figures (who may read settlement).
    payout: bool,
    /// Whether to show the WhatsApp queue (who may read it).
    whatsapp: bool,
    nodes: Option<Vec<NodeRow>>,
}

pub async fn page(
    State(state): State<AppState>,
    Extension(cache): Extension<Arc<OverviewCache>>,
    session: Session,
) -> Result<Response, ErrorPage> {
    session.require(Action::DashboardRead)?;
    let fail = |e| session.failed(e);
    let figures = cache
        .figures(&state, session.merchant().map(str::to_owned))
        .await
        .map_err(fail)?;
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
    Ok(html(
        StatusCode::OK,
        &OverviewView {
            chrome: session.chrome(),
            figures,
            payout: session.may(Action::SettlementRead),
            whatsapp: session.may(Action::WhatsAppRead),
            nodes,
        },
    ))
}

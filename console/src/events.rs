//! Server-sent events: what the pages update without a reload. Each stream reads the
//! database on a short period and sends what changed, so it works the same on every node
//! of a cluster (presence is recorded in the database by whichever node holds a device)
//! and a stream that reconnects only misses nothing (it starts with the full state).

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use gema_admin_api::AppState;
use gema_admin_api::authz::{Scope, owns};
use gema_gateway::auth::Action;
use serde::Deserialize;

use crate::frame::Problem;
use crate::pages::devices::{PAGE_SIZE, health_text};
use crate::session::Session;

/// How often a stream looks for changes.
pub const PERIOD: Duration = Duration::from_secs(1);

#[derive(Debug, Deserialize)]
pub struct DevicesQuery {
    #[serde(default)]
    ids: String,
}

/// `presence` events for the devices of a registry page: `{"id", "state", "text",
/// "reasons"}`, first for each device, then whenever its health changes.
pub async fn devices(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<DevicesQuery>,
) -> Response {
    if let Err(page) = session.require(Action::DeviceList) {
        return page.into_response();
    }
    let mut ids: Vec<String> = q
        .ids
        .split(',')
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect();
    if ids.len() > PAGE_SIZE as usize {
        return session
            .problem(Problem::Invalid(format!(
                "ids: at most {PAGE_SIZE} devices per stream"
            )))
            .into_response();
    }
    // A merchant user only hears of their own devices; others' ids are dropped silently,
    // as the registry would not have listed them.
    let mut mine = Vec::with_capacity(ids.len());
    for id in ids.drain(..) {
        if owns(&state, &session.principal, Scope::Device, &id)
            .await
            .is_ok()
        {
            mine.push(id);
        }
    }
    Sse::new(presence_stream(state, session, mine))
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn presence_stream(
    state: AppState,
    session: Session,
    ids: Vec<String>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let lang = session.prefs.lang;
    futures_util::stream::unfold(
        (HashMap::<String, String>::new(), true),
        move |(mut sent, first)| {
            let state = state.clone();
            let ids = ids.clone();
            async move {
                if !first {
                    tokio::time::sleep(PERIOD).await;
                }
                let mut events = Vec::new();
                match state.device_ops.health_of(&ids).await {
                    Ok(health) => {
                        for id in &ids {
                            let Some(h) = health.get(id) else { continue };
                            let reasons = h
                                .reasons
                                .iter()
                                .map(|r| r.code())
                                .collect::<Vec<_>>()
                                .join(", ");
                            let key = format!("{}|{reasons}", h.status.as_str());
                            if sent.get(id) == Some(&key) {
                                continue;
                            }
                            sent.insert(id.clone(), key);
                            let data = serde_json::json!({
                                "id": id,
                                "state": h.status.as_str(),
                                "text": lang.t(health_text(h.status)),
                                "reasons": reasons,
                            });
                            events.push(Ok(Event::default()
                                .event("presence")
                                .data(data.to_string())));
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "presence stream: reading health failed"),
                }
                Some((futures_util::stream::iter(events), (sent, false)))
            }
        },
    )
    .flatten()
}

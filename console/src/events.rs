//! Server-sent events: what the pages update without a reload. Each stream reads the
//! database on a short period and sends what changed, so it works the same on every node
//! of a cluster (presence is recorded in the database by whichever node holds a device)
//! and a stream that reconnects only misses nothing (it starts with the full state).
//!
//! - `presence` ([`devices`]): the health of the devices a page shows (the registry, a
//!   device's page).
//! - `payment` ([`payments`]): each payment applied since the transactions page was read,
//!   as the row that page renders (a reconnect sends the recent ones again; the page
//!   replaces a row it already has).

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use askama::Template;
use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use gema_admin_api::AppState;
use gema_admin_api::authz::{Scope, owns};
use gema_gateway::auth::Action;
use gema_store::{LedgerEntryType, LedgerFilter, PageRequest};
use serde::Deserialize;

use crate::frame::Problem;
use crate::pages::devices::{PAGE_SIZE, health_reasons, health_text};
use crate::pages::transactions;
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
                            let reasons = health_reasons(lang, &h.reasons);
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

#[derive(Debug, Deserialize)]
pub struct PaymentsQuery {
    /// When the page was read (Unix ms): payments from then on are sent.
    #[serde(default)]
    since: Option<i64>,
}

/// How far back a stream looks each time, so a payment whose ledger rows were numbered a
/// little before another's but committed after it is still seen.
const PAYMENT_LAG_MS: i64 = 5_000;
/// The oldest `since` a stream takes (a page left open for a day does not replay the day).
const PAYMENT_REPLAY_MS: i64 = 10 * 60_000;

/// `payment` events for the transactions page: `{"id", "status", "html"}`, `html` being the
/// row exactly as the page renders it, for each transaction paid since the page was read
/// (a merchant user's own only). Paid transactions are found by their gross-income ledger
/// row, which is written when the payment is applied, so a payment for an order created
/// long ago is new here too.
pub async fn payments(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<PaymentsQuery>,
) -> Response {
    if let Err(page) = session.require(Action::TransactionList) {
        return page.into_response();
    }
    let now = now_ms();
    let since = q.since.unwrap_or(now).clamp(now - PAYMENT_REPLAY_MS, now);
    Sse::new(payment_stream(state, session, since))
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis()),
    )
    .unwrap_or(0)
}

/// The smallest store id of `prefix` made at `ms` or later: ids are `<prefix>_` and a
/// lower-case ULID, whose first ten characters are the time in Crockford base32.
pub fn id_floor(prefix: &str, ms: i64) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
    let ms = u64::try_from(ms.max(0)).unwrap_or(0) & ((1 << 48) - 1);
    let mut out = format!("{prefix}_");
    for i in 0..10u32 {
        let shift = 45 - 5 * i;
        out.push(char::from(ALPHABET[((ms >> shift) & 31) as usize]));
    }
    out.push_str("0000000000000000");
    out
}

struct PaymentFeed {
    /// Transactions already sent, with when their ledger row was seen (pruned after the lag).
    sent: HashMap<String, i64>,
    since: i64,
    first: bool,
}

fn payment_stream(
    state: AppState,
    session: Session,
    since: i64,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let chrome = session.chrome();
    let merchant = session.merchant().map(str::to_owned);
    let feed = PaymentFeed {
        sent: HashMap::new(),
        since,
        first: true,
    };
    futures_util::stream::unfold(feed, move |mut feed| {
        let state = state.clone();
        let chrome = chrome.clone();
        let merchant = merchant.clone();
        async move {
            if !feed.first {
                tokio::time::sleep(PERIOD).await;
            }
            feed.first = false;
            let now = now_ms();
            let from = feed.since.max(now - PAYMENT_LAG_MS);
            feed.sent.retain(|_, seen| *seen >= now - 2 * PAYMENT_LAG_MS);
            let mut events = Vec::new();
            let filter = LedgerFilter {
                merchant_id: merchant.clone(),
                transaction_id: None,
            };
            let mut page = PageRequest {
                after: Some(id_floor("led", from)),
                limit: PageRequest::MAX_LIMIT,
            };
            // A few pages at most per period; what is left is read in the next one.
            for _ in 0..5 {
                let entries = match state.payments.ledger(&filter, &page).await {
                    Ok(entries) => entries,
                    Err(e) => {
                        tracing::warn!(error = %e, "payment stream: reading the ledger failed");
                        break;
                    }
                };
                for entry in &entries.items {
                    if entry.entry_type != LedgerEntryType::GrossIncome || entry.amount <= 0 {
                        continue;
                    }
                    let Some(id) = &entry.transaction_id else {
                        continue;
                    };
                    if feed.sent.contains_key(id) {
                        continue;
                    }
                    feed.sent.insert(id.clone(), now);
                    match state.payments.transaction(id).await {
                        Ok(t) => {
                            let row = transactions::row(t, &chrome);
                            let view = transactions::RowView {
                                chrome: &chrome,
                                t: &row,
                                merchant_column: merchant.is_none(),
                            };
                            match view.render() {
                                Ok(html) => {
                                    let data = serde_json::json!({
                                        "id": row.id,
                                        "status": row.status,
                                        "html": html,
                                    });
                                    events.push(Ok(Event::default()
                                        .event("payment")
                                        .data(data.to_string())));
                                }
                                Err(e) => tracing::error!(error = %e, "payment stream: rendering a row failed"),
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "payment stream: reading a transaction failed"),
                    }
                }
                match entries.next_after {
                    Some(next) => page.after = Some(next),
                    None => break,
                }
            }
            Some((futures_util::stream::iter(events), feed))
        }
    })
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_floor_sorts_between_the_ids_of_its_millisecond() {
        // A ULID of 2026-12-05 00:00:00.000 UTC, as the store writes ids (lower case).
        let ms = 1_796_428_800_000;
        let floor = id_floor("led", ms);
        assert_eq!(floor.len(), "led_".len() + 26);
        assert!(floor < id_floor("led", ms + 1));
        assert!(id_floor("led", ms - 1) < floor);
        let same_ms = format!("{}{}", &floor[..14], "zzzzzzzzzzzzzzzz");
        assert!(floor < same_ms && same_ms < id_floor("led", ms + 1));
        assert_eq!(id_floor("led", 0), "led_00000000000000000000000000");
    }
}

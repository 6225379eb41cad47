//! Isolation: by hand and automatically after the merchant's grace days, re-activation by
//! paying, and the merchant's isolation webhook delivered by a real HTTP request to a test
//! server, signed, retried after a failure, one success per change.

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use crate::billing::{customer, package};
use crate::helpers::TestApi;

const SECRET: &str = "rahasia-mitra-isolir";

#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: String,
    answered: StatusCode,
}

/// A merchant's network system: answers 500 to the first request, 200 after.
async fn network_system() -> (String, Arc<Mutex<Vec<Received>>>) {
    let seen: Arc<Mutex<Vec<Received>>> = Arc::default();
    let app = axum::Router::new().route(
        "/isolir",
        axum::routing::post({
            let seen = seen.clone();
            move |headers: HeaderMap, body: String| {
                let seen = seen.clone();
                async move {
                    let mut seen = seen.lock().unwrap();
                    let answered = if seen.is_empty() {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::OK
                    };
                    seen.push(Received {
                        headers,
                        body,
                        answered,
                    });
                    answered
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/isolir", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

fn verified(r: &Received) -> Value {
    let header = |name: &str| r.headers.get(name).unwrap().to_str().unwrap().to_string();
    let timestamp = header("x-gema-timestamp");
    assert_eq!(
        header("x-gema-signature"),
        gema_gateway::payments::providers::generic_signature(SECRET, &timestamp, r.body.as_bytes()),
        "signed with the merchant's secret"
    );
    let body: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(header("x-gema-delivery"), body["id"].as_str().unwrap());
    assert_eq!(header("x-gema-event"), body["event"].as_str().unwrap());
    body
}

/// Waits for `successes` answered deliveries; the test clock moves on a little each look,
/// so a retry falls due.
async fn delivered(
    api: &TestApi,
    seen: &Arc<Mutex<Vec<Received>>>,
    successes: usize,
) -> Vec<Received> {
    gema_gateway::testing::eventually("the webhook arrives", || async {
        api.clock.advance(std::time::Duration::from_millis(200));
        let all = seen.lock().unwrap().clone();
        (all.iter().filter(|r| r.answered == StatusCode::OK).count() == successes).then_some(all)
    })
    .await
}

pub(crate) async fn isolation_reaches_the_network_once_per_change(api: TestApi) {
    let (merchant, _, _) = api.terminal(true).await;
    let (url, seen) = network_system().await;
    let settings = api
        .call(
            "PUT",
            &format!("/api/v1/merchants/{merchant}/billing-settings"),
            Some(
                json!({ "isolation_webhook_url": url, "isolation_webhook_secret": SECRET,
                         "auto_isolate_days": 3 }),
            ),
        )
        .await;
    assert_eq!(settings.status, StatusCode::OK, "{}", settings.body);
    assert!(
        !settings.body.to_string().contains(SECRET),
        "the secret is never shown"
    );

    let package = package(&api, "Paket Isolir", 100_000).await;
    let by_hand = customer(&api, &merchant, &package, "081211110001", 5, 0).await;
    let late = customer(&api, &merchant, &package, "081211110002", 5, 0).await;
    let on_time = customer(&api, &merchant, &package, "081211110003", 5, 0).await;
    let id = |c: &Value| c["id"].as_str().unwrap().to_string();
    let run = api
        .post(
            "/api/v1/billing/invoice-runs",
            json!({ "date": "2026-02-04" }),
        )
        .await;
    assert_eq!(run.body["created"], 3, "{}", run.body);

    // By hand: one change, delivered after one failure, the same delivery id both times.
    let isolated = api
        .post(
            &format!("/api/v1/customers/{}/isolate", id(&by_hand)),
            json!({ "reason": "menunggak" }),
        )
        .await;
    assert_eq!(isolated.status, StatusCode::OK, "{}", isolated.body);
    assert_eq!(isolated.body["status"], "isolated");
    let got = delivered(&api, &seen, 1).await;
    assert_eq!(got.len(), 2, "one failure, one success");
    let first = verified(&got[0]);
    let second = verified(&got[1]);
    assert_eq!(first, second, "a retry sends the same bytes");
    assert_eq!(second["event"], "customer.isolated");
    assert_eq!(second["customer"]["id"], id(&by_hand).as_str());
    assert_eq!(second["customer"]["phone"], "6281211110001");
    assert_eq!(second["reason"], "menunggak");
    // Isolating again changes nothing and sends nothing.
    api.post(
        &format!("/api/v1/customers/{}/isolate", id(&by_hand)),
        json!({}),
    )
    .await;

    // Paying the overdue invoice re-activates, and the network hears it once.
    let invoice = api
        .get(&format!("/api/v1/invoices?customer_id={}", id(&by_hand)))
        .await
        .body["items"][0]
        .clone();
    let paid = api
        .post(
            &format!("/api/v1/invoices/{}/pay", invoice["id"].as_str().unwrap()),
            json!({ "version": invoice["version"], "method": "transfer" }),
        )
        .await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.body);
    assert_eq!(paid.body["reactivated_customer"]["status"], "active");
    let got = delivered(&api, &seen, 2).await;
    assert_eq!(
        verified(got.last().unwrap())["event"],
        "customer.reactivated"
    );

    // Automatically: the 5th's invoices unpaid 3 days after; `on_time` pays first.
    let invoice = api
        .get(&format!("/api/v1/invoices?customer_id={}", id(&on_time)))
        .await
        .body["items"][0]
        .clone();
    api.post(
        &format!("/api/v1/invoices/{}/pay", invoice["id"].as_str().unwrap()),
        json!({ "version": invoice["version"], "method": "cash" }),
    )
    .await;
    api.clock
        .set_ms(crate::billing::jakarta_ms("2026-02-08", 6, 30));
    let got = delivered(&api, &seen, 3).await;
    let auto = verified(got.last().unwrap());
    assert_eq!(auto["event"], "customer.isolated");
    assert_eq!(auto["customer"]["id"], id(&late).as_str());
    let late_now = api.get(&format!("/api/v1/customers/{}", id(&late))).await;
    assert_eq!(late_now.body["status"], "isolated");
    let on_time_now = api
        .get(&format!("/api/v1/customers/{}", id(&on_time)))
        .await;
    assert_eq!(on_time_now.body["status"], "active");
    let history = api
        .get(&format!("/api/v1/customers/{}/history", id(&late)))
        .await;
    let last = history.body["events"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (last["kind"].as_str(), last["actor"].as_str()),
        (Some("isolated"), Some("schedule"))
    );
    assert_eq!(history.body["webhooks"][0]["status"], "delivered");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let all = seen.lock().unwrap().clone();
    assert_eq!(
        all.iter().filter(|r| r.answered == StatusCode::OK).count(),
        3,
        "one success per change"
    );
}

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use gema_admin_api::{AppServices, AppState, Check, CheckStatus, HealthProbe, ProvisioningInfo};
use gema_gateway::GatewaySettings;
use gema_gateway::clock::ManualClock;
use gema_gateway::testing::{RecordingTransport, TestGateway};
use gema_store::Store;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

pub const MIDTRANS_KEY: &str = "SB-Mid-server-test";
pub const XENDIT_TOKEN: &str = "xnd-callback-token-test";
/// Every test user's password.
pub const PASSWORD: &str = "kopi-tubruk-2024!";
pub const GENERIC_SECRET: &str = "generic-hmac-secret-test";
/// Meta's app secret (signs WhatsApp webhooks) and the webhook verify token.
pub const WA_APP_SECRET: &str = "meta-app-secret-test";
pub const WA_VERIFY_TOKEN: &str = "verify-token-test";
/// The operator's WhatsApp number in [`TestApi::with_whatsapp`].
pub const WA_PHONE_NUMBER_ID: &str = "100200300400";

/// WhatsApp's settings in tests: webhooks signed and verified with the constants above; with
/// `operator`, the operator's own Cloud API number. Nothing ever reaches Meta: the API base is
/// a closed local port.
pub fn whatsapp_settings(operator: bool) -> gema_gateway::whatsapp::WhatsAppSettings {
    use gema_gateway::whatsapp::{CloudNumber, Route, WhatsAppSettings};
    WhatsAppSettings {
        operator: operator.then(|| {
            Route::Cloud(CloudNumber {
                phone_number_id: WA_PHONE_NUMBER_ID.into(),
                access_token: "operator-access-token".into(),
            })
        }),
        api_base_url: "http://127.0.0.1:9".into(),
        app_secret: Some(WA_APP_SECRET.into()),
        verify_token: Some(WA_VERIFY_TOKEN.into()),
        ..Default::default()
    }
}

#[derive(Debug)]
struct AlwaysOk;

#[async_trait::async_trait]
impl HealthProbe for AlwaysOk {
    async fn checks(&self) -> Vec<Check> {
        vec![Check {
            name: "database".into(),
            status: CheckStatus::Ok,
            detail: Value::Null,
        }]
    }
}

// The tests run on two workers, as the daemon does on this machine: the gateway's tasks
// (its sweeps, delivery) run beside the requests, and until SQLite's payment writer stops
// blocking its caller (the store's change), the commit loop's write blocks the worker it
// runs on while it waits for its turn to write; a sweep holding that turn must go on
// meanwhile, which one thread cannot do.

/// The admin API over a gateway built by the daemon's constructor (through
/// [`TestGateway`]: a temporary SQLite database, the recording transport, the gateway's
/// tasks running), called with `oneshot`, no sockets.
pub struct TestApi {
    pub router: Router,
    pub token: String,
    pub store: Arc<dyn Store>,
    pub device_ops: gema_gateway::device_ops::DeviceOps,
    /// Devices "connected" by the test; publishes to them succeed, to others are offline.
    pub transport: RecordingTransport,
    /// Every service's clock: lockout windows, token expiry, heartbeat ages, command and
    /// transaction expiries move only when a test says so.
    pub clock: Arc<ManualClock>,
    /// The gateway behind the API, for what a test does that no route does (a node joining
    /// the cluster).
    pub gateway: TestGateway,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Value,
    pub request_id: Option<String>,
}

impl TestApi {
    pub async fn new() -> Self {
        Self::with_providers(false).await
    }

    /// With `all_providers`, Xendit and the generic callback are configured too.
    pub async fn with_providers(all_providers: bool) -> Self {
        Self::build(all_providers, Self::unlimited()).await
    }

    /// No rate limits: every oneshot request comes from the same unknown source.
    fn unlimited() -> gema_gateway::auth::AuthSettings {
        gema_gateway::auth::AuthSettings {
            rate_limits: gema_gateway::auth::ratelimit::RateLimits {
                login_per_minute: 0,
                writes_per_minute: 0,
                callbacks_per_minute: 0,
            },
            ..Default::default()
        }
    }

    /// With the operator's own WhatsApp number configured (on PostgreSQL with `postgres`:
    /// `None` as [`TestApi::on_postgres`]). Its sender is paused for good, so the worker
    /// never takes a message: what a test queues stays `pending` until the test moves it.
    pub async fn with_whatsapp(postgres: bool) -> Option<Self> {
        let store = if postgres {
            Some(Self::postgres_store().await?)
        } else {
            None
        };
        let api = Self::build_on(store, true, Self::unlimited(), whatsapp_settings(true)).await;
        api.store
            .pause_wa_sender(
                gema_store::OPERATOR_SENDER,
                i64::MAX / 2,
                "tests: the worker never sends",
            )
            .await
            .expect("pause the operator's sender");
        Some(api)
    }

    /// With these auth settings (the password work factor is lowered regardless).
    pub async fn with_auth(settings: gema_gateway::auth::AuthSettings) -> Self {
        Self::build(false, settings).await
    }

    /// [`TestApi::with_providers`] on a fresh PostgreSQL database of the throwaway cluster
    /// `GEMA_TEST_POSTGRES_URL` names (`scripts/with-postgres`). Without one: `None`, said
    /// loudly; under `CI=true` a missing cluster fails the test.
    pub async fn on_postgres(all_providers: bool) -> Option<Self> {
        let store = Self::postgres_store().await?;
        Some(
            Self::build_on(
                Some(store),
                all_providers,
                Self::unlimited(),
                whatsapp_settings(false),
            )
            .await,
        )
    }

    /// A fresh, migrated PostgreSQL database of the throwaway cluster
    /// `GEMA_TEST_POSTGRES_URL` names; `None` (said loudly) without one, a failure under
    /// `CI=true`.
    async fn postgres_store() -> Option<Arc<dyn Store>> {
        let Ok(cluster) = std::env::var("GEMA_TEST_POSTGRES_URL") else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "GEMA_TEST_POSTGRES_URL is not set: under CI the PostgreSQL API tests must run"
            );
            eprintln!(
                "SKIPPED on PostgreSQL: GEMA_TEST_POSTGRES_URL is not set \
                 (run under scripts/with-postgres)"
            );
            return None;
        };
        let url = gema_store::testing::fresh_postgres_database(&cluster).await;
        let store = gema_store::connect(&url, &gema_store::ConnectOptions::default())
            .await
            .expect("connect to the test database");
        store.migrate().await.expect("migrate the test database");
        Some(store)
    }

    async fn build(all_providers: bool, auth_settings: gema_gateway::auth::AuthSettings) -> Self {
        Self::build_on(None, all_providers, auth_settings, whatsapp_settings(false)).await
    }

    async fn build_on(
        store: Option<Arc<dyn Store>>,
        all_providers: bool,
        auth_settings: gema_gateway::auth::AuthSettings,
        whatsapp: gema_gateway::whatsapp::WhatsAppSettings,
    ) -> Self {
        let secret = |s: &str| Some(gema_gateway::credentials::SecretString::new(s.into()));
        let payments = gema_gateway::payments::PaymentSettings {
            midtrans_server_key: secret(MIDTRANS_KEY),
            xendit_callback_token: if all_providers {
                secret(XENDIT_TOKEN)
            } else {
                None
            },
            generic_secret: if all_providers {
                secret(GENERIC_SECRET)
            } else {
                None
            },
            ..Default::default()
        };
        let auth = gema_gateway::auth::AuthSettings {
            // Password hashing at the production work factor would only slow tests.
            password_iterations: 1_000,
            ..auth_settings
        };
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let settings = GatewaySettings {
            payments,
            auth,
            // The config pusher's timer would push again behind a test's back; these
            // tests push by request and count what was published.
            device_ops: gema_gateway::device_ops::DeviceOpsSettings {
                config_retry_interval: std::time::Duration::from_secs(24 * 3600),
                ..Default::default()
            },
            // Small pages and a quick sweep, so a few rows cross pages and an expiry
            // shows soon after the clock passes it.
            exports: gema_gateway::exports::ExportSettings {
                page_rows: 2,
                progress_every_rows: 2,
                poll_interval: std::time::Duration::from_millis(50),
                sweep_interval: std::time::Duration::from_millis(50),
                ..Default::default()
            },
            // A quick billing sweep, so a daily run shows soon after the clock passes its
            // hour, and webhooks go out at once.
            billing: gema_gateway::billing::BillingSettings {
                sweep_interval: std::time::Duration::from_millis(50),
                webhook_retry_base: std::time::Duration::from_millis(100),
                ..Default::default()
            },
            whatsapp,
            device_certs: test_device_certs(),
            ..GatewaySettings::default()
        };
        let gateway = match store {
            Some(store) => {
                let dir = tempfile::tempdir().expect("a temporary directory");
                TestGateway::start_on(store, dir, settings, clock.clone()).await
            }
            None => TestGateway::start(settings, clock.clone()).await,
        };
        let services = &gateway.gateway;
        let token = services
            .registry
            .ensure_bootstrap_token()
            .await
            .unwrap()
            .unwrap()
            .expose()
            .to_string();
        let router = gema_admin_api::router(AppState::new(AppServices {
            claims: services.claims.clone(),
            certificates: services.certificates.clone(),
            registry: services.registry.clone(),
            auth: services.auth.clone(),
            payments: services.payments.clone(),
            device_ops: services.device_ops.clone(),
            cluster: services.cluster.clone(),
            settlement: gateway.gateway.settlement.clone(),
            reconciliation: services.reconciliation.clone(),
            exports: services.exports.clone(),
            billing: services.billing.clone(),
            whatsapp: services.whatsapp.clone(),
            health: Arc::new(AlwaysOk),
            provisioning: Arc::new(ProvisioningInfo {
                mqtt_host: "gema.test".into(),
                mqtt_port: 8883,
                ca_certificate_path: "/etc/gema/ca.pem".into(),
                ca_certificate_pem: "-----BEGIN CERTIFICATE-----\n…".into(),
            }),
        }));
        TestApi {
            router,
            token,
            store: gateway.store.clone(),
            device_ops: services.device_ops.clone(),
            transport: gateway.transport.clone(),
            clock,
            gateway,
        }
    }

    pub async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let request_id = response
            .headers()
            .get("x-request-id")
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let csv = headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/csv"));
        // Images and HTML pages (billing logos, receipts) as lossy text.
        let other = headers.get(header::CONTENT_TYPE).is_some_and(|v| {
            v.as_bytes().starts_with(b"image/") || v.as_bytes().starts_with(b"text/html")
        });
        let body = if bytes.is_empty() {
            Value::Null
        } else if other {
            Value::String(String::from_utf8_lossy(&bytes).into_owned())
        } else if csv {
            // A CSV answer (payout reports) as one string.
            Value::String(String::from_utf8(bytes.to_vec()).expect("CSV is UTF-8"))
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                panic!("response is not JSON: {}", String::from_utf8_lossy(&bytes))
            })
        };
        Reply {
            status,
            headers,
            body,
            request_id,
        }
    }

    pub fn request(&self, method: &str, path: &str) -> axum::http::request::Builder {
        Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        let builder = self.request(method, path);
        let request = match body {
            Some(body) => builder
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string())),
            None => builder.body(Body::empty()),
        }
        .unwrap();
        self.send(request).await
    }

    /// A GET as `token` (or without one) whose answer is kept as bytes (files, images,
    /// HTML pages): status, headers, body.
    pub async fn get_bytes(
        &self,
        token: Option<&str>,
        path: &str,
    ) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let mut builder = Request::get(path);
        if let Some(token) = token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let response = self
            .router
            .clone()
            .oneshot(builder.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, headers, bytes.to_vec())
    }

    /// The directory holding the test's database files.
    pub fn dir(&self) -> &std::path::Path {
        self.gateway.dir()
    }

    /// A request with another bearer token (or none), from `source` if given.
    pub async fn call_as(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
        source: Option<std::net::SocketAddr>,
    ) -> Reply {
        let mut builder = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let mut request = match body {
            Some(body) => builder
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string())),
            None => builder.body(Body::empty()),
        }
        .unwrap();
        if let Some(source) = source {
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(source));
        }
        self.send(request).await
    }

    /// Creates a user with the current token; returns its id.
    pub async fn user(&self, email: &str, role: &str, merchant_id: Option<&str>) -> String {
        let r = self
            .post(
                "/api/v1/users",
                json!({ "email": email, "name": "Test", "role": role,
                        "merchant_id": merchant_id, "password": PASSWORD }),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body["id"].as_str().unwrap().to_string()
    }

    /// Logs in with [`PASSWORD`]; returns the token pair's JSON.
    pub async fn login(&self, email: &str) -> Value {
        let r = self
            .call_as(
                None,
                "POST",
                "/api/v1/auth/login",
                Some(json!({ "email": email, "password": PASSWORD })),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.body
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call("POST", path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call("GET", path, None).await
    }

    /// Creates and returns the id of an approved (or not) merchant with one outlet and one
    /// terminal: `(merchant, outlet, terminal)`.
    pub async fn terminal(&self, approved: bool) -> (String, String, String) {
        let merchant = self
            .post("/api/v1/merchants", json!({ "name": "Warung Sari" }))
            .await;
        assert_eq!(merchant.status, StatusCode::CREATED, "{}", merchant.body);
        let merchant = merchant.body["id"].as_str().unwrap().to_string();
        if approved {
            let r = self
                .call(
                    "POST",
                    &format!("/api/v1/merchants/{merchant}/approve"),
                    None,
                )
                .await;
            assert_eq!(r.status, StatusCode::OK);
        }
        let outlet = self
            .post(
                "/api/v1/outlets",
                json!({ "merchant_id": merchant, "name": "Pasar Baru" }),
            )
            .await;
        assert_eq!(outlet.status, StatusCode::CREATED, "{}", outlet.body);
        let outlet = outlet.body["id"].as_str().unwrap().to_string();
        let terminal = self
            .post(
                "/api/v1/terminals",
                json!({ "outlet_id": outlet, "label": "A01" }),
            )
            .await;
        assert_eq!(terminal.status, StatusCode::CREATED, "{}", terminal.body);
        let terminal = terminal.body["id"].as_str().unwrap().to_string();
        (merchant, outlet, terminal)
    }

    /// Registers a device: `(device id, secret)`.
    pub async fn device(&self, serial: &str) -> (String, String) {
        let r = self
            .post(
                "/api/v1/devices",
                json!({ "serial": serial, "model": "SB-100" }),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        (
            r.body["device"]["id"].as_str().unwrap().to_string(),
            r.body["credentials"]["secret"]
                .as_str()
                .unwrap()
                .to_string(),
        )
    }
}

/// Asserts the error envelope: status, code, and the five fields.
pub fn assert_envelope(reply: &Reply, status: StatusCode, code: &str) {
    assert_eq!(reply.status, status, "{}", reply.body);
    let body = reply.body.as_object().expect("envelope is an object");
    for key in ["code", "message", "details", "request_id", "timestamp"] {
        assert!(
            body.contains_key(key),
            "envelope lacks {key}: {}",
            reply.body
        );
    }
    assert_eq!(reply.body["code"], code, "{}", reply.body);
    assert!(!reply.body["message"].as_str().unwrap().is_empty());
    assert_eq!(
        reply.body["request_id"].as_str(),
        reply.request_id.as_deref(),
        "the envelope carries the response's request id"
    );
}

/// The `details.field` of an error reply.
pub fn field(reply: &Reply) -> &str {
    reply.body["details"]["field"].as_str().unwrap_or_default()
}

/// A device CA made for the test, so the certificate routes can sign.
pub fn test_device_certs() -> gema_gateway::certificates::DeviceCertSettings {
    let (cert, key) = gema_certs::DeviceCa::generate().expect("a device CA");
    gema_gateway::certificates::DeviceCertSettings {
        ca: Some(std::sync::Arc::new(
            gema_certs::DeviceCa::from_pem(&cert, &key).expect("the device CA loads"),
        )),
        ..Default::default()
    }
}

//! Gema's admin HTTP API. **API Boundary**: the JSON shapes in [`views`] and the error
//! envelope in [`error`] are a contract with operators' tools and the CLI.
//!
//! Routes live under `/api/v1` and need a bearer token (a user's access token or an API
//! token) whose role the permission matrix allows ([`authz`]); `/health`, `/health/deep`,
//! `/api/v1/openapi.json`, login and refresh are public, and provider callbacks authenticate
//! with their provider's scheme. The OpenAPI document is generated from the handlers'
//! annotations, so it cannot drift from the routes.
//!
//! This crate knows HTTP only: it calls `gema-gateway` for every rule and never touches SQL,
//! MQTT, configuration files or the environment.

pub mod authz;
pub mod error;
pub mod extract;
mod middleware;
pub mod routes;
pub mod state;
pub mod views;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::get;
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::{ApiError, ErrorBody};
pub use extract::BODY_LIMIT_BYTES;
pub use middleware::REQUEST_ID_HEADER;
pub use state::{AppState, HealthProbe, ProvisioningInfo};
pub use views::health::{Check, CheckStatus};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Gema admin API",
        description = "Registry of merchants, outlets, terminals and soundbox devices. \
            Every error is the envelope `{code, message, details, request_id, timestamp}`. \
            A POST or PATCH may carry an `Idempotency-Key` header (1-255 visible ASCII \
            characters, per caller): its first response is kept 24 h and replayed for retries \
            with the same key (header `Idempotent-Replayed: true`); the same key with another \
            request is 422, and a retry while the first still runs waits for it, then 409.",
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "merchants"), (name = "outlets"), (name = "terminals"), (name = "devices"),
        (name = "device operations", description = "Health, heartbeats, config push, message trace"),
        (name = "transactions"), (name = "ledger"),
        (name = "auth", description = "Login is public; the rest needs the caller's token"),
        (name = "users"), (name = "audit"), (name = "api tokens"),
        (name = "payment callbacks", description = "Public; each provider authenticates with its own signature or token"),
        (name = "health", description = "Public; no token needed"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

fn api_routes() -> OpenApiRouter<AppState> {
    use routes::{devices, merchants, outlets, terminals, transactions};
    OpenApiRouter::new()
        .routes(routes!(merchants::create, merchants::list))
        .routes(routes!(merchants::get, merchants::update))
        .routes(routes!(merchants::approve))
        .routes(routes!(merchants::reject))
        .routes(routes!(merchants::suspend))
        .routes(routes!(outlets::create, outlets::list))
        .routes(routes!(outlets::get, outlets::update))
        .routes(routes!(terminals::create, terminals::list))
        .routes(routes!(terminals::get, terminals::update))
        .routes(routes!(terminals::dynamic_qr))
        .routes(routes!(devices::create, devices::list))
        .routes(routes!(devices::get, devices::update))
        .routes(routes!(devices::bind))
        .routes(routes!(devices::unbind))
        .routes(routes!(devices::bindings))
        .routes(routes!(devices::rotate))
        .routes(routes!(devices::revoke))
        .merge(device_ops_routes())
        .routes(routes!(transactions::create, transactions::list))
        .routes(routes!(transactions::expire_due))
        .routes(routes!(transactions::get))
        .routes(routes!(transactions::events))
        .routes(routes!(transactions::announcements))
        .routes(routes!(transactions::retry_notification))
        .routes(routes!(transactions::ledger))
        .merge(people_routes())
}

/// Users, sessions and the audit log; login and refresh are in [`public_auth_routes`].
fn people_routes() -> OpenApiRouter<AppState> {
    use routes::{audit, auth, tokens, users};
    OpenApiRouter::new()
        .routes(routes!(auth::logout))
        .routes(routes!(auth::me))
        .routes(routes!(auth::sessions))
        .routes(routes!(auth::revoke_session))
        .routes(routes!(auth::totp_setup))
        .routes(routes!(auth::totp_enable))
        .routes(routes!(auth::totp_disable))
        .routes(routes!(users::create, users::list))
        .routes(routes!(users::get))
        .routes(routes!(users::disable))
        .routes(routes!(users::enable))
        .routes(routes!(audit::list))
        .routes(routes!(tokens::create, tokens::list))
        .routes(routes!(tokens::revoke))
}

/// Login and refresh: no bearer token (the caller has none yet).
fn public_auth_routes() -> OpenApiRouter<AppState> {
    use routes::auth;
    OpenApiRouter::new()
        .routes(routes!(auth::login))
        .routes(routes!(auth::refresh))
}

/// Device operations (`routes/device_ops.rs`): status, heartbeats, config, message trace.
fn device_ops_routes() -> OpenApiRouter<AppState> {
    use routes::device_ops;
    OpenApiRouter::new()
        .routes(routes!(device_ops::status))
        .routes(routes!(device_ops::heartbeats))
        .routes(routes!(device_ops::config, device_ops::update_config))
        .routes(routes!(device_ops::retry_config_push))
        .routes(routes!(device_ops::messages))
        .routes(routes!(
            device_ops::create_command,
            device_ops::list_commands
        ))
        .routes(routes!(device_ops::get_command))
}

/// Provider callbacks: public, each authenticated by its provider's own scheme.
fn callback_routes() -> OpenApiRouter<AppState> {
    use routes::payments;
    OpenApiRouter::new()
        .routes(routes!(payments::midtrans))
        .routes(routes!(payments::xendit))
        .routes(routes!(payments::generic))
}

/// `(protected API routes, public routes, the OpenAPI document of both)`.
fn router_parts() -> (Router<AppState>, Router<AppState>, utoipa::openapi::OpenApi) {
    let (api, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest("/api/v1", api_routes())
        .split_for_parts();
    let (callbacks, callbacks_doc) = OpenApiRouter::new()
        .nest("/api/v1", callback_routes().merge(public_auth_routes()))
        .split_for_parts();
    doc.merge(callbacks_doc);
    let (health, mut health_doc) = OpenApiRouter::new()
        .routes(routes!(routes::health::liveness))
        .routes(routes!(routes::health::deep))
        .split_for_parts();
    // Health routes are public: an empty requirement overrides the document-wide one.
    for item in health_doc.paths.paths.values_mut() {
        if let Some(op) = item.get.as_mut() {
            op.security = Some(vec![
                utoipa::openapi::security::SecurityRequirement::default(),
            ]);
        }
    }
    doc.merge(health_doc);
    (api, health.merge(callbacks), doc)
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let (api, health, doc) = router_parts();
    let doc = Arc::new(doc);
    let api = api.route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        authz::guard,
    ));
    let health = health.route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        authz::limit_public,
    ));
    api.merge(health)
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "route_not_found", "no such route")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method",
            )
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        // Inside `observe`, so a panic's 500 still carries the request id.
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(ApiError::internal("handler panicked"))
        }))
        .layer(axum::middleware::from_fn(middleware::observe))
        .with_state(state)
}

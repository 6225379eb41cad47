//! A merchant's receipt settings: the business name and bank details their customers see,
//! which fields a receipt shows, when an unpaid customer is isolated, and the logo
//! (`billing.settings`). A merchant user edits their own; an operator names the merchant
//! (`?merchant=`, linked from the merchant's page). The isolation webhook's secret is never
//! shown and is kept as it is; it is set through the API.

use askama::Template;
use axum::extract::{Multipart, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gema_admin_api::AppState;
use gema_gateway::auth::Action;
use gema_store::{BillingMerchantSettings, NewBillingSettings, SecretChange};
use serde::Deserialize;

use crate::frame::{Chrome, ErrorPage, Problem, html};
use crate::session::{Posted, Session, csrf_matches_session, see_other};

#[derive(Debug, Deserialize)]
pub struct MerchantQuery {
    #[serde(default)]
    merchant: Option<String>,
}

/// The merchant whose settings these are: a merchant user's own (whatever the query says),
/// else the one an operator named.
fn merchant_of(session: &Session, named: Option<String>) -> Result<String, ErrorPage> {
    match session.merchant() {
        Some(own) => Ok(own.to_owned()),
        None => named.filter(|m| !m.is_empty()).ok_or_else(|| {
            session.problem(Problem::Invalid(
                "merchant: name the merchant whose receipt settings to open".into(),
            ))
        }),
    }
}

#[derive(Template)]
#[template(path = "receipt_settings.html")]
struct SettingsView {
    chrome: Chrome,
    merchant: String,
    s: BillingMerchantSettings,
    saved: bool,
}

#[derive(Debug, Deserialize)]
pub struct ShowQuery {
    #[serde(default)]
    merchant: Option<String>,
    #[serde(default)]
    saved: Option<String>,
}

pub async fn show(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<ShowQuery>,
) -> Result<Response, ErrorPage> {
    session.require(Action::BillingSettings)?;
    if session.merchant().is_none() && q.merchant.as_deref().is_none_or(str::is_empty) {
        // An operator picks the merchant from the list; each merchant's page links here.
        return Ok(see_other("/merchants"));
    }
    let merchant = merchant_of(&session, q.merchant)?;
    // An unknown merchant is a 404, not the defaults of a merchant that does not exist.
    state
        .registry
        .merchant(&merchant)
        .await
        .map_err(|e| session.failed(e))?;
    let s = state
        .billing
        .merchant_settings(&merchant)
        .await
        .map_err(|e| session.failed(e))?;
    Ok(html(
        StatusCode::OK,
        &SettingsView {
            chrome: session.chrome(),
            merchant,
            s,
            saved: q.saved.is_some(),
        },
    ))
}

#[derive(Debug, Deserialize)]
pub struct SettingsForm {
    #[serde(default)]
    merchant: Option<String>,
    #[serde(default)]
    business_name: String,
    #[serde(default)]
    bank_details: String,
    #[serde(default)]
    show_nik: Option<String>,
    #[serde(default)]
    show_area: Option<String>,
    #[serde(default)]
    show_package: Option<String>,
    #[serde(default)]
    show_discount: Option<String>,
    #[serde(default)]
    show_method: Option<String>,
    /// Days, or empty for never.
    #[serde(default)]
    auto_isolate_days: String,
    #[serde(default)]
    isolation_webhook_url: String,
}

fn text(value: String) -> Option<String> {
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

pub async fn save(
    State(state): State<AppState>,
    Posted(session, form): Posted<SettingsForm>,
) -> Result<Response, ErrorPage> {
    session.require(Action::BillingSettings)?;
    let merchant = merchant_of(&session, form.merchant)?;
    state
        .registry
        .merchant(&merchant)
        .await
        .map_err(|e| session.failed(e))?;
    let auto_isolate_days = match form.auto_isolate_days.trim() {
        "" => None,
        days => Some(days.parse::<i64>().map_err(|_| {
            session.problem(Problem::Invalid(format!(
                "auto_isolate_days: a whole number of days, or empty for never, not {days:?}"
            )))
        })?),
    };
    let settings = NewBillingSettings {
        business_name: text(form.business_name),
        bank_details: text(form.bank_details),
        receipt_show_nik: form.show_nik.is_some(),
        receipt_show_area: form.show_area.is_some(),
        receipt_show_package: form.show_package.is_some(),
        receipt_show_discount: form.show_discount.is_some(),
        receipt_show_method: form.show_method.is_some(),
        auto_isolate_days,
        isolation_webhook_url: text(form.isolation_webhook_url),
        isolation_webhook_secret: SecretChange::Keep,
    };
    session
        .audited(
            &state,
            Action::BillingSettings,
            format!("merchant:{merchant}"),
            state.billing.put_merchant_settings(&merchant, settings),
            |s| {
                serde_json::json!({
                    "business_name": s.business_name,
                    "auto_isolate_days": s.auto_isolate_days,
                })
            },
        )
        .await
        .map_err(|e| session.failed(e))?;
    Ok(see_other(&settings_path(&session, &merchant, true)))
}

fn settings_path(session: &Session, merchant: &str, saved: bool) -> String {
    let mut path = "/settings/receipt".to_owned();
    let mut sep = '?';
    if session.merchant().is_none() {
        path.push_str(&format!("?merchant={merchant}"));
        sep = '&';
    }
    if saved {
        path.push(sep);
        path.push_str("saved=1");
    }
    path
}

/// The stored logo, as the API serves it: its checked image type, `nosniff`, not cached.
pub async fn logo(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<MerchantQuery>,
) -> Result<Response, ErrorPage> {
    session.require(Action::BillingSettings)?;
    let merchant = merchant_of(&session, q.merchant)?;
    let logo = state
        .billing
        .logo(&merchant)
        .await
        .map_err(|e| session.failed(e))?;
    let mut response = logo.bytes.into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&logo.content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}

/// A new logo from a file upload (PNG or JPEG; the gateway checks the bytes, not the name).
pub async fn upload_logo(
    State(state): State<AppState>,
    session: Session,
    form: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, ErrorPage> {
    let mut form = form.map_err(|e| session.problem(Problem::Invalid(e.body_text())))?;
    let limit = state.billing.settings().logo_max_bytes;
    let (mut csrf, mut merchant, mut file) = (String::new(), None, None);
    let mut total = 0usize;
    loop {
        let field = match form.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return Err(session.problem(Problem::Invalid(e.body_text()))),
        };
        let name = field.name().unwrap_or_default().to_owned();
        let content_type = field.content_type().unwrap_or_default().to_owned();
        let mut field = field;
        let mut bytes = Vec::new();
        loop {
            match field.chunk().await {
                Ok(Some(chunk)) => {
                    total += chunk.len();
                    if total > limit + 64 * 1024 {
                        return Err(session.problem(Problem::Invalid(format!(
                            "logo: larger than {limit} bytes"
                        ))));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Err(session.problem(Problem::Invalid(e.body_text()))),
            }
        }
        match name.as_str() {
            "csrf" => csrf = String::from_utf8_lossy(&bytes).into_owned(),
            "merchant" => merchant = Some(String::from_utf8_lossy(&bytes).into_owned()),
            "logo" => file = Some((content_type, bytes)),
            _ => {}
        }
    }
    if !csrf_matches_session(&session, &csrf) {
        tracing::warn!(actor = %session.principal.actor, "console logo upload without a valid CSRF token refused");
        return Err(session.problem(Problem::Csrf));
    }
    session.require(Action::BillingSettings)?;
    let merchant = merchant_of(&session, merchant)?;
    let (content_type, bytes) = file.filter(|(_, b)| !b.is_empty()).ok_or_else(|| {
        session.problem(Problem::Invalid("logo: choose a PNG or JPEG file".into()))
    })?;
    let size = bytes.len();
    session
        .audited(
            &state,
            Action::BillingSettings,
            format!("merchant:{merchant}"),
            state.billing.put_logo(&merchant, &content_type, bytes),
            |s| serde_json::json!({ "logo": s.logo_content_type, "bytes": size }),
        )
        .await
        .map_err(|e| session.failed(e))?;
    Ok(see_other(&settings_path(&session, &merchant, true)))
}

//! Billing packages, the operator-wide catalogue every customer is on: the list (active
//! ones, inactive ones too on a filter) for whoever reads billing, and for the roles with
//! `billing.manage` (the API's `POST`/`PATCH /packages`) the create form, a package's edit
//! page (name, speed, description, price) and deactivate / activate. A package is made
//! inactive rather than deleted: customers and invoices keep it.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use gema_admin_api::AppState;
use gema_gateway::auth::Action;
use gema_gateway::billing::{PackageChanges, PackageInput};
use gema_store::billing::Package;
use serde::Deserialize;

use crate::format::{optional, parse_rupiah};
use crate::frame::{Chrome, ErrorPage, html};
use crate::pages::billing_nav::{Tab, tabs};
use crate::session::{Posted, Session, see_other};

#[derive(Debug)]
pub struct PackageRow {
    pub id: String,
    pub name: String,
    pub speed: String,
    pub description: String,
    pub price: i64,
    pub active: bool,
}

impl From<Package> for PackageRow {
    fn from(p: Package) -> Self {
        PackageRow {
            id: p.id,
            name: p.name,
            speed: p.speed.unwrap_or_default(),
            description: p.description.unwrap_or_default(),
            price: p.price,
            active: p.active,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    /// `1` to list inactive packages too.
    #[serde(default)]
    inactive: Option<String>,
    /// Set by the redirect after a form: which one.
    #[serde(default)]
    done: Option<String>,
}

#[derive(Template)]
#[template(path = "billing_packages.html")]
struct ListView {
    chrome: Chrome,
    tabs: Vec<Tab>,
    csrf: String,
    rows: Vec<PackageRow>,
    inactive: bool,
    may_manage: bool,
    notice: Option<&'static str>,
}

fn notice(done: Option<&str>) -> Option<&'static str> {
    match done? {
        "created" => Some("package.done.created"),
        "saved" => Some("package.done.saved"),
        "deactivated" => Some("package.done.deactivated"),
        "activated" => Some("package.done.activated"),
        _ => None,
    }
}

pub async fn list(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<ListQuery>,
) -> Result<Response, ErrorPage> {
    session.require(Action::BillingRead)?;
    let inactive = session.filter(
        "inactive",
        q.inactive.as_deref().unwrap_or_default(),
        |s| (s == "1").then_some(true),
        "1",
    )?;
    let inactive = inactive.unwrap_or(false);
    let packages = state
        .billing
        .packages(inactive)
        .await
        .map_err(|e| session.failed(e))?;
    Ok(html(
        StatusCode::OK,
        &ListView {
            tabs: tabs(&session),
            csrf: session.csrf.clone(),
            rows: packages.into_iter().map(PackageRow::from).collect(),
            inactive,
            may_manage: session.may(Action::BillingManage),
            notice: notice(q.done.as_deref()),
            chrome: session.chrome(),
        },
    ))
}

/// The create and edit forms' fields.
#[derive(Debug, Deserialize)]
pub struct PackageForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    speed: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    price: String,
}

/// The audit row's `after` of a package a form wrote: the package as the API shows it.
fn package_after(p: &Package) -> serde_json::Value {
    serde_json::to_value(gema_admin_api::views::billing::Package::from(p.clone()))
        .unwrap_or_default()
}

pub async fn create(
    State(state): State<AppState>,
    Posted(session, form): Posted<PackageForm>,
) -> Result<Response, ErrorPage> {
    session.require(Action::BillingManage)?;
    let price = parse_rupiah("price", &form.price).map_err(|e| session.failed(e))?;
    session
        .audited(
            &state,
            Action::BillingManage,
            "billing_package".to_owned(),
            state.billing.create_package(PackageInput {
                name: form.name,
                speed: optional(&form.speed),
                description: optional(&form.description),
                price,
                active: Some(true),
            }),
            package_after,
        )
        .await
        .map_err(|e| session.failed(e))?;
    Ok(see_other("/billing/packages?done=created"))
}

#[derive(Template)]
#[template(path = "billing_package.html")]
struct EditView {
    chrome: Chrome,
    tabs: Vec<Tab>,
    csrf: String,
    package: PackageRow,
    may_manage: bool,
}

pub async fn edit_form(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, ErrorPage> {
    session.require(Action::BillingRead)?;
    let package = state
        .billing
        .package(&id)
        .await
        .map_err(|e| session.failed(e))?;
    Ok(html(
        StatusCode::OK,
        &EditView {
            tabs: tabs(&session),
            csrf: session.csrf.clone(),
            package: package.into(),
            may_manage: session.may(Action::BillingManage),
            chrome: session.chrome(),
        },
    ))
}

/// Runs a package change for whoever may manage packages, audited as the API's `PATCH`.
async fn change(
    state: &AppState,
    session: &Session,
    id: &str,
    changes: PackageChanges,
) -> Result<(), ErrorPage> {
    session.require(Action::BillingManage)?;
    session
        .audited(
            state,
            Action::BillingManage,
            format!("billing_package:{id}"),
            state.billing.update_package(id, changes),
            package_after,
        )
        .await
        .map(|_| ())
        .map_err(|e| session.failed(e))
}

pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted(session, form): Posted<PackageForm>,
) -> Result<Response, ErrorPage> {
    session.require(Action::BillingManage)?;
    let price = parse_rupiah("price", &form.price).map_err(|e| session.failed(e))?;
    let changes = PackageChanges {
        name: Some(form.name),
        speed: Some(optional(&form.speed)),
        description: Some(optional(&form.description)),
        price: Some(price),
        active: None,
    };
    change(&state, &session, &id, changes).await?;
    Ok(see_other("/billing/packages?done=saved"))
}

/// A form with no fields but its CSRF token.
#[derive(Debug, Deserialize)]
pub struct Confirm {}

pub async fn deactivate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted(session, Confirm {}): Posted<Confirm>,
) -> Result<Response, ErrorPage> {
    let changes = PackageChanges {
        active: Some(false),
        ..PackageChanges::default()
    };
    change(&state, &session, &id, changes).await?;
    // The list with inactive packages, so the one just changed is still in sight.
    Ok(see_other("/billing/packages?inactive=1&done=deactivated"))
}

pub async fn activate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted(session, Confirm {}): Posted<Confirm>,
) -> Result<Response, ErrorPage> {
    let changes = PackageChanges {
        active: Some(true),
        ..PackageChanges::default()
    };
    change(&state, &session, &id, changes).await?;
    Ok(see_other("/billing/packages?inactive=1&done=activated"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_price_is_whole_rupiah_as_people_write_it() {
        for (text, value) in [
            ("25000", 25_000),
            ("25.000", 25_000),
            ("Rp 1.250.000", 1_250_000),
            (" 100 000 ", 100_000),
            ("0", 0),
        ] {
            assert_eq!(parse_rupiah("price", text).ok(), Some(value), "{text}");
        }
        for text in [
            "",
            "Rp",
            "-5",
            "25.000,50",
            "25000,5",
            "25,000",
            "1..000",
            "dua puluh",
            "99999999999999999999",
        ] {
            let err = parse_rupiah("price", text).expect_err(text);
            assert!(err.to_string().starts_with("price: "), "{err}");
        }
    }

    #[test]
    fn every_notice_has_a_text() {
        for done in ["created", "saved", "deactivated", "activated"] {
            let key = notice(Some(done)).expect(done);
            assert!(
                crate::i18n::TEXTS.iter().any(|(k, _, _)| *k == key),
                "{key}"
            );
        }
        assert_eq!(notice(Some("other")), None);
    }
}

//! Adding a billing customer and editing one, as the API's `POST /customers` and `PATCH
//! /customers/{id}` do (`billing.customer_write`). An operator names the customer's merchant;
//! a merchant user's customers are their merchant's. Merchant users change a customer's
//! phone and discount only (the seed's rule): their edit form has just those two, and the
//! server refuses any other field all the same. The edit carries the version it was read at,
//! so a customer changed in between is a conflict, not an overwrite.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use gema_admin_api::AppState;
use gema_gateway::GatewayError;
use gema_gateway::auth::Action;
use gema_gateway::billing::{CustomerChanges, CustomerInput};
use gema_store::billing::Customer;
use serde::Deserialize;

use crate::format::{optional, parse_rupiah};
use crate::frame::{Chrome, ErrorPage, html};
use crate::pages::billing_nav::{Tab, tabs};
use crate::pages::customer::visible_customer;
use crate::session::{Posted, Session, see_other};

/// A package the form offers: id and `name · Rp price`.
#[derive(Debug)]
pub struct PackageChoice {
    pub id: String,
    pub label: String,
}

/// The form's values: empty for a new customer, the customer's for an edit.
#[derive(Debug, Default)]
pub struct Values {
    pub merchant_id: String,
    pub package_id: String,
    pub name: String,
    pub phone: String,
    pub nik: String,
    pub address: String,
    pub billing_day: String,
    pub discount: String,
    pub register_date: String,
    pub notes: String,
}

impl Values {
    fn of(c: &Customer) -> Self {
        Values {
            merchant_id: c.merchant_id.clone(),
            package_id: c.package_id.clone(),
            name: c.name.clone(),
            phone: c.phone.clone(),
            nik: c.nik.clone().unwrap_or_default(),
            address: c.address.clone().unwrap_or_default(),
            billing_day: c.billing_day.to_string(),
            discount: c.discount.to_string(),
            register_date: c.register_date.clone(),
            notes: c.notes.clone().unwrap_or_default(),
        }
    }
}

#[derive(Template)]
#[template(path = "billing_customer_form.html")]
struct FormView {
    chrome: Chrome,
    tabs: Vec<Tab>,
    csrf: String,
    /// `None` for a new customer.
    id: Option<String>,
    version: i64,
    values: Values,
    packages: Vec<PackageChoice>,
    /// An operator picks the merchant (a new customer only).
    ask_merchant: bool,
    /// Every field, or (a merchant user editing) phone and discount only.
    all_fields: bool,
}

/// The active packages, and the customer's own even when it is no longer offered.
async fn package_choices(
    state: &AppState,
    session: &Session,
    current: Option<&str>,
) -> Result<Vec<PackageChoice>, ErrorPage> {
    let chrome = session.chrome();
    let packages = state
        .billing
        .packages(true)
        .await
        .map_err(|e| session.failed(e))?;
    Ok(packages
        .into_iter()
        .filter(|p| p.active || Some(p.id.as_str()) == current)
        .map(|p| PackageChoice {
            label: format!("{} · {}", p.name, chrome.rupiah(&p.price)),
            id: p.id,
        })
        .collect())
}

/// `GET /billing/customers/new`.
pub async fn new_form(
    State(state): State<AppState>,
    session: Session,
) -> Result<Response, ErrorPage> {
    session.require(Action::BillingCustomerWrite)?;
    let packages = package_choices(&state, &session, None).await?;
    Ok(html(
        StatusCode::OK,
        &FormView {
            tabs: tabs(&session),
            csrf: session.csrf.clone(),
            id: None,
            version: 0,
            values: Values {
                billing_day: "1".to_owned(),
                discount: "0".to_owned(),
                ..Values::default()
            },
            packages,
            ask_merchant: session.merchant().is_none(),
            all_fields: true,
            chrome: session.chrome(),
        },
    ))
}

/// The form's fields; absent ones (a merchant user's edit form) stay `None`.
#[derive(Debug, Default, Deserialize)]
pub struct CustomerForm {
    merchant_id: Option<String>,
    package_id: Option<String>,
    name: Option<String>,
    phone: Option<String>,
    nik: Option<String>,
    address: Option<String>,
    billing_day: Option<String>,
    discount: Option<String>,
    register_date: Option<String>,
    notes: Option<String>,
    version: Option<String>,
}

/// A field the form may lack, trimmed; absent or empty is `None`.
fn text(value: Option<&String>) -> Option<String> {
    value.and_then(|v| optional(v))
}

/// A day of the month as typed: digits, or the field named.
fn day(value: Option<&String>) -> Result<Option<i64>, GatewayError> {
    text(value)
        .map(|v| {
            v.parse::<i64>().map_err(|_| {
                GatewayError::invalid("billing_day", "is a day of the month from 1 to 28")
            })
        })
        .transpose()
}

impl CustomerForm {
    /// The discount, when the form has one.
    fn discount(&self) -> Result<Option<i64>, GatewayError> {
        text(self.discount.as_ref())
            .map(|d| parse_rupiah("discount", &d))
            .transpose()
    }

    /// A new customer of `merchant_id`. Required fields missing are named; the service
    /// checks the rest (phone, NIK, day, date).
    fn input(&self, merchant_id: String) -> Result<CustomerInput, GatewayError> {
        fn required<T>(field: &'static str, value: Option<T>) -> Result<T, GatewayError> {
            value.ok_or_else(|| GatewayError::invalid(field, "is required"))
        }
        Ok(CustomerInput {
            merchant_id,
            package_id: required("package_id", text(self.package_id.as_ref()))?,
            name: required("name", text(self.name.as_ref()))?,
            phone: required("phone", text(self.phone.as_ref()))?,
            nik: text(self.nik.as_ref()),
            address: text(self.address.as_ref()),
            billing_day: required("billing_day", day(self.billing_day.as_ref())?)?,
            discount: self.discount()?,
            register_date: text(self.register_date.as_ref()),
            notes: text(self.notes.as_ref()),
        })
    }

    /// The changes an edit form sends: every field it carries (an emptied optional one is
    /// cleared), none it does not.
    fn changes(&self) -> Result<CustomerChanges, GatewayError> {
        let cleared = |value: &Option<String>| value.as_ref().map(|v| text(Some(v)));
        Ok(CustomerChanges {
            version: text(self.version.as_ref())
                .map(|v| {
                    v.parse::<i64>()
                        .map_err(|_| GatewayError::invalid("version", "is a whole number"))
                })
                .transpose()?,
            package_id: text(self.package_id.as_ref()),
            name: text(self.name.as_ref()),
            phone: text(self.phone.as_ref()),
            nik: cleared(&self.nik),
            address: cleared(&self.address),
            billing_day: day(self.billing_day.as_ref())?,
            discount: self.discount()?,
            register_date: text(self.register_date.as_ref()),
            notes: cleared(&self.notes),
        })
    }
}

/// The audit row's `after` of a customer a form wrote: the customer as the API shows it.
fn customer_after(c: &Customer) -> serde_json::Value {
    serde_json::to_value(gema_admin_api::views::billing::Customer::from(c.clone()))
        .unwrap_or_default()
}

/// `POST /billing/customers`: adds the customer and opens their page.
pub async fn create(
    State(state): State<AppState>,
    Posted(session, form): Posted<CustomerForm>,
) -> Result<Response, ErrorPage> {
    session.require(Action::BillingCustomerWrite)?;
    let merchant_id = match session.merchant() {
        Some(own) => own.to_owned(),
        None => text(form.merchant_id.as_ref()).ok_or_else(|| {
            session.failed(GatewayError::invalid(
                "merchant_id",
                "names the customer's merchant",
            ))
        })?,
    };
    let input = form.input(merchant_id).map_err(|e| session.failed(e))?;
    let customer = session
        .audited(
            &state,
            Action::BillingCustomerWrite,
            "billing_customer".to_owned(),
            state
                .billing
                .create_customer(input, &session.principal.actor),
            customer_after,
        )
        .await
        .map_err(|e| session.failed(e))?;
    Ok(see_other(&format!(
        "/billing/customers/{}?done=created",
        customer.id
    )))
}

/// `GET /billing/customers/{id}/edit`.
pub async fn edit_form(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, ErrorPage> {
    session.require(Action::BillingCustomerWrite)?;
    let customer = visible_customer(&state, &session, &id).await?;
    let all_fields = session.merchant().is_none();
    let packages = if all_fields {
        package_choices(&state, &session, Some(&customer.package_id)).await?
    } else {
        Vec::new()
    };
    Ok(html(
        StatusCode::OK,
        &FormView {
            tabs: tabs(&session),
            csrf: session.csrf.clone(),
            id: Some(customer.id.clone()),
            version: customer.version,
            values: Values::of(&customer),
            packages,
            ask_merchant: false,
            all_fields,
            chrome: session.chrome(),
        },
    ))
}

/// `POST /billing/customers/{id}/edit`: the changes, or for a merchant user a refusal of
/// any field beyond phone and discount (403, as the API's).
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted(session, form): Posted<CustomerForm>,
) -> Result<Response, ErrorPage> {
    session.require(Action::BillingCustomerWrite)?;
    visible_customer(&state, &session, &id).await?;
    let changes = form.changes().map_err(|e| session.failed(e))?;
    if session.merchant().is_some() && changes.beyond_merchant_edits().is_some() {
        return Err(session.problem(crate::frame::Problem::Forbidden));
    }
    session
        .audited(
            &state,
            Action::BillingCustomerWrite,
            format!("billing_customer:{id}"),
            state
                .billing
                .update_customer(&id, changes, &session.principal.actor),
            customer_after,
        )
        .await
        .map_err(|e| session.failed(e))?;
    Ok(see_other(&format!("/billing/customers/{id}?done=edited")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(fields: &[(&str, &str)]) -> CustomerForm {
        serde_urlencoded::from_str(&serde_urlencoded::to_string(fields).unwrap()).unwrap()
    }

    #[test]
    fn a_new_customer_needs_package_name_phone_and_day() {
        let full = [
            ("package_id", "pkg_1"),
            ("name", " Budi "),
            ("phone", "6281234567890"),
            ("billing_day", "5"),
            ("discount", "Rp 10.000"),
            ("nik", ""),
        ];
        let input = form(&full).input("mer_1".into()).unwrap();
        assert_eq!(input.name, "Budi");
        assert_eq!(input.billing_day, 5);
        assert_eq!(input.discount, Some(10_000));
        assert_eq!(input.nik, None);
        for missing in ["package_id", "name", "phone", "billing_day"] {
            let fields: Vec<_> = full
                .iter()
                .filter(|(k, _)| *k != missing)
                .copied()
                .collect();
            let err = form(&fields).input("mer_1".into()).unwrap_err();
            assert!(err.to_string().starts_with(missing), "{missing}: {err}");
        }
        for (field, bad) in [("billing_day", "lima"), ("discount", "10.000,50")] {
            let fields: Vec<_> = full
                .iter()
                .map(|&(k, v)| if k == field { (k, bad) } else { (k, v) })
                .collect();
            let err = form(&fields).input("m".into()).unwrap_err();
            assert!(err.to_string().starts_with(field), "{field}: {err}");
        }
    }

    #[test]
    fn an_edit_changes_what_the_form_carries_and_clears_an_emptied_field() {
        // A merchant user's form: phone and discount, nothing else.
        let changes = form(&[
            ("phone", "6289876543210"),
            ("discount", "5.000"),
            ("version", "3"),
        ])
        .changes()
        .unwrap();
        assert_eq!(changes.beyond_merchant_edits(), None);
        assert_eq!(changes.discount, Some(5_000));
        assert_eq!(changes.version, Some(3));
        // An operator's: the emptied address is cleared, the NIK kept as typed.
        let changes = form(&[("name", "Budi"), ("address", " "), ("nik", "3201")])
            .changes()
            .unwrap();
        assert_eq!(changes.address, Some(None));
        assert_eq!(changes.nik, Some(Some("3201".to_owned())));
        assert_eq!(changes.notes, None);
        assert_eq!(changes.beyond_merchant_edits(), Some("name"));
    }
}

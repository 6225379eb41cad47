//! Users, roles and API tokens (operators only; the matrix gives merchant roles neither):
//! users a page at a time with their role and state, a form to add one (an operator, or a
//! merchant's staff with the merchant's id; the first password is typed by the admin, who
//! hands it over, and is never shown again), disable and enable (`user.write`; the store
//! refuses to disable the last admin); the roles and what each may do, read from the matrix
//! itself; API tokens with their last use, a form to issue one (the token shown once, on the
//! POST's own page, `no-store`), revoke (`api_token.write`).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use gema_admin_api::AppState;
use gema_gateway::GatewayError;
use gema_gateway::auth::{Action, AdminRole, MerchantRole, Role, UserInput, permits};
use gema_gateway::credentials::SecretString;
use gema_store::PageRequest;
use serde::Deserialize;

use crate::frame::{Chrome, ErrorPage, html};
use crate::pages::login::Nothing;
use crate::session::{Posted, Session, see_other};

const PAGE_SIZE: u32 = 50;

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    #[serde(default)]
    after: Option<String>,
}

#[derive(Debug)]
pub struct UserRow {
    pub id: String,
    pub email: String,
    pub name: String,
    pub role: String,
    pub merchant: String,
    pub disabled: bool,
    pub created_ms: i64,
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersView {
    chrome: Chrome,
    rows: Vec<UserRow>,
    write: bool,
    next: Option<String>,
    notice: Option<&'static str>,
    roles: RoleChoices,
}

/// The role pickers of the add-user and issue-token forms: operator roles and merchant roles
/// (a merchant role needs the merchant's id), as the store spells them.
#[derive(Debug)]
pub struct RoleChoices {
    pub operator: Vec<&'static str>,
    pub merchant: Vec<&'static str>,
}

impl RoleChoices {
    fn new() -> Self {
        RoleChoices {
            operator: AdminRole::ALL.iter().map(|r| r.as_str()).collect(),
            merchant: MerchantRole::ALL.iter().map(|r| r.as_str()).collect(),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct DoneQuery {
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    done: Option<String>,
}

/// The notice a redirect back names (`?done=`), as an i18n key; anything else shows none.
fn notice(done: Option<&str>) -> Option<&'static str> {
    match done? {
        "created" => Some("users.created_notice"),
        _ => None,
    }
}

/// The role and merchant a form picked: the role's select value (`operator:ops`,
/// `merchant:owner`) split into the role the store takes, and the merchant id typed beside
/// it, which a merchant role needs and an operator role must not have. A bad pick names its
/// field.
fn picked(role: &str, merchant_id: &str) -> Result<(String, Option<String>), GatewayError> {
    let (role, merchant_role) = match role.split_once(':') {
        Some(("operator", r)) if AdminRole::parse(r).is_some() => (r.to_owned(), false),
        Some(("merchant", r)) if MerchantRole::parse(r).is_some() => (r.to_owned(), true),
        _ => {
            return Err(GatewayError::invalid(
                "role",
                "pick one of the listed roles",
            ));
        }
    };
    let merchant_id = merchant_id.trim();
    let merchant = match (merchant_role, merchant_id.is_empty()) {
        (true, true) => {
            return Err(GatewayError::invalid(
                "merchant_id",
                "a merchant role needs the merchant's id",
            ));
        }
        (false, false) => {
            return Err(GatewayError::invalid(
                "merchant_id",
                "an operator role belongs to no merchant; leave the merchant empty",
            ));
        }
        (true, false) => Some(merchant_id.to_owned()),
        (false, true) => None,
    };
    Ok((role, merchant))
}

pub async fn users(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<DoneQuery>,
) -> Result<Response, ErrorPage> {
    session.require(Action::UserList)?;
    let page = state
        .auth
        .users(&PageRequest {
            after: q.after.filter(|a| !a.is_empty()),
            limit: PAGE_SIZE,
        })
        .await
        .map_err(|e| session.failed(e))?;
    Ok(html(
        StatusCode::OK,
        &UsersView {
            chrome: session.chrome(),
            rows: page
                .items
                .into_iter()
                .map(|u| UserRow {
                    id: u.id,
                    email: u.email,
                    name: u.name,
                    role: u.role,
                    merchant: u.merchant_id.unwrap_or_default(),
                    disabled: u.disabled_ms.is_some(),
                    created_ms: u.created_ms,
                })
                .collect(),
            write: session.may(Action::UserWrite),
            next: page.next_after.map(|a| format!("/users?after={a}")),
            notice: notice(q.done.as_deref()),
            roles: RoleChoices::new(),
        },
    ))
}

#[derive(Debug, Deserialize)]
pub struct NewUserForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    merchant_id: String,
    #[serde(default)]
    password: String,
}

/// `POST /users`: adds a user. The password meets the same rules as everywhere (the service
/// checks them) and is in no audit row, log line or page.
pub async fn create_user(
    State(state): State<AppState>,
    Posted(session, form): Posted<NewUserForm>,
) -> Result<Response, ErrorPage> {
    session.require(Action::UserWrite)?;
    let (role, merchant_id) =
        picked(&form.role, &form.merchant_id).map_err(|e| session.failed(e))?;
    session
        .audited(
            &state,
            Action::UserWrite,
            "user".to_owned(),
            state.auth.create_user(UserInput {
                email: form.email.trim().to_owned(),
                name: form.name.trim().to_owned(),
                role,
                merchant_id,
                password: SecretString::new(form.password),
            }),
            |u| {
                serde_json::json!({ "user_id": u.id, "email": u.email, "role": u.role,
                    "merchant_id": u.merchant_id })
            },
        )
        .await
        .map_err(|e| session.failed(e))?;
    Ok(see_other("/users?done=created"))
}

/// One action's row of the role table: its name and, per role in the header's order,
/// whether that role may do it.
#[derive(Debug)]
pub struct MatrixRow {
    pub action: &'static str,
    pub allowed: Vec<bool>,
}

#[derive(Template)]
#[template(path = "roles.html")]
struct RolesView {
    chrome: Chrome,
    roles: Vec<String>,
    rows: Vec<MatrixRow>,
}

/// `GET /roles`: every role against every action, from the matrix the server enforces.
pub async fn roles(session: Session) -> Result<Response, ErrorPage> {
    session.require(Action::UserList)?;
    let all = Role::all();
    Ok(html(
        StatusCode::OK,
        &RolesView {
            chrome: session.chrome(),
            roles: all.iter().map(Role::to_string).collect(),
            rows: Action::ALL
                .iter()
                .map(|&action| MatrixRow {
                    action: action.name(),
                    allowed: all.iter().map(|&role| permits(role, action)).collect(),
                })
                .collect(),
        },
    ))
}

/// Disables a user (ending every session of theirs) or enables them again.
pub async fn set_disabled(
    State(state): State<AppState>,
    Path((id, change)): Path<(String, String)>,
    Posted(session, Nothing {}): Posted<Nothing>,
) -> Result<Response, ErrorPage> {
    session.require(Action::UserWrite)?;
    let disabled = match change.as_str() {
        "disable" => true,
        "enable" => false,
        _ => return Err(session.problem(crate::frame::Problem::NotFound)),
    };
    session
        .audited(
            &state,
            Action::UserWrite,
            format!("user:{id}"),
            state.auth.set_user_disabled(&id, disabled),
            |u| serde_json::json!({ "disabled": u.disabled_ms.is_some() }),
        )
        .await
        .map_err(|e| session.failed(e))?;
    Ok(see_other("/users"))
}

#[derive(Debug)]
pub struct TokenRow {
    pub id: String,
    pub name: String,
    pub role: String,
    pub merchant: String,
    pub created_at: time::OffsetDateTime,
    pub last_used_at: Option<time::OffsetDateTime>,
    pub revoked: bool,
}

#[derive(Template)]
#[template(path = "tokens.html")]
struct TokensView {
    chrome: Chrome,
    rows: Vec<TokenRow>,
    write: bool,
    next: Option<String>,
    roles: RoleChoices,
}

pub async fn tokens(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<PageQuery>,
) -> Result<Response, ErrorPage> {
    session.require(Action::ApiTokenList)?;
    let page = state
        .auth
        .api_tokens(&PageRequest {
            after: q.after.filter(|a| !a.is_empty()),
            limit: PAGE_SIZE,
        })
        .await
        .map_err(|e| session.failed(e))?;
    Ok(html(
        StatusCode::OK,
        &TokensView {
            chrome: session.chrome(),
            rows: page
                .items
                .into_iter()
                .map(|t| TokenRow {
                    id: t.id,
                    name: t.name,
                    role: t.role,
                    merchant: t.merchant_id.unwrap_or_default(),
                    created_at: t.created_at,
                    last_used_at: t.last_used_at,
                    revoked: t.revoked_at.is_some(),
                })
                .collect(),
            write: session.may(Action::ApiTokenWrite),
            next: page.next_after.map(|a| format!("/tokens?after={a}")),
            roles: RoleChoices::new(),
        },
    ))
}

#[derive(Debug, Deserialize)]
pub struct NewTokenForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    merchant_id: String,
}

#[derive(Template)]
#[template(path = "token_issued.html")]
struct IssuedView {
    chrome: Chrome,
    name: String,
    role: String,
    token: String,
}

/// `POST /tokens`: issues a token and shows it on this response only (the store keeps its
/// digest; the page is `no-store`; the audit row names the token, never its value).
pub async fn create_token(
    State(state): State<AppState>,
    Posted(session, form): Posted<NewTokenForm>,
) -> Result<Response, ErrorPage> {
    session.require(Action::ApiTokenWrite)?;
    let (role, merchant_id) =
        picked(&form.role, &form.merchant_id).map_err(|e| session.failed(e))?;
    let name = form.name.trim().to_owned();
    let (token, secret) = session
        .audited(
            &state,
            Action::ApiTokenWrite,
            "api_token".to_owned(),
            state
                .auth
                .create_api_token(&name, &role, merchant_id.as_deref()),
            |(t, _)| {
                serde_json::json!({ "api_token_id": t.id, "name": t.name, "role": t.role,
                    "merchant_id": t.merchant_id })
            },
        )
        .await
        .map_err(|e| session.failed(e))?;
    Ok(html(
        StatusCode::CREATED,
        &IssuedView {
            chrome: session.chrome(),
            name: token.name,
            role: token.role,
            token: secret.expose().to_owned(),
        },
    ))
}

pub async fn revoke_token(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted(session, Nothing {}): Posted<Nothing>,
) -> Result<Response, ErrorPage> {
    session.require(Action::ApiTokenWrite)?;
    session
        .audited(
            &state,
            Action::ApiTokenWrite,
            format!("api_token:{id}"),
            state.auth.revoke_api_token(&id),
            |t| serde_json::json!({ "revoked": t.revoked_at.is_some() }),
        )
        .await
        .map_err(|e| session.failed(e))?;
    Ok(see_other("/tokens"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_picked_role_says_whose_it_is_and_needs_its_merchant() {
        assert_eq!(
            picked("operator:ops", " ").unwrap(),
            ("ops".to_owned(), None)
        );
        assert_eq!(
            picked("merchant:owner", " mer_1 ").unwrap(),
            ("owner".to_owned(), Some("mer_1".to_owned()))
        );
        for bad in ["", "ops", "operator:owner", "merchant:admin", "root:admin"] {
            let err = picked(bad, "").unwrap_err();
            assert!(err.to_string().starts_with("role"), "{bad}: {err}");
        }
        for (role, merchant) in [("merchant:owner", ""), ("operator:admin", "mer_1")] {
            let err = picked(role, merchant).unwrap_err();
            assert!(err.to_string().starts_with("merchant_id"), "{role}: {err}");
        }
    }
}

//! Users and API tokens (operators only; the matrix gives merchant roles neither): users a
//! page at a time with their role and state, disable and enable (`user.write`; the store
//! refuses to disable the last admin); API tokens with their last use, revoke
//! (`api_token.write`). Creating users and tokens stays with the CLI and the API, where a
//! password or a token is typed or shown once.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use gema_admin_api::AppState;
use gema_gateway::auth::Action;
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
}

pub async fn users(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<PageQuery>,
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

//! Terminals: a till at an outlet (optionally with a static QR reference, unique across
//! terminals), and their queries.

use serde::Serialize;
use time::OffsetDateTime;

use crate::Db;
use crate::db::{Exec, query_as};
use crate::{Page, PageRequest, StoreError, StoreResult};

/// A payment point of an outlet. `label` is the terminal label a dynamic QRIS carries in
/// tag 62.07, unique within the outlet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Terminal {
    pub id: String,
    pub outlet_id: String,
    pub label: String,
    pub name: Option<String>,
    /// The reference this terminal's static QR carries (unique): a paid event for it
    /// creates a transaction for this terminal.
    pub payment_ref: Option<String>,
    /// The terminal's static QRIS payload, base of its dynamic QR codes.
    pub static_qris: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewTerminal {
    pub outlet_id: String,
    pub label: String,
    pub name: Option<String>,
    pub payment_ref: Option<String>,
    pub static_qris: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TerminalPatch {
    pub label: Option<String>,
    pub name: Option<Option<String>>,
    pub payment_ref: Option<Option<String>>,
    pub static_qris: Option<Option<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TerminalFilter {
    pub outlet_id: Option<String>,
    /// Only terminals of this merchant's outlets.
    pub merchant_id: Option<String>,
}

pub(crate) async fn create_terminal(db: &Db, new: NewTerminal) -> StoreResult<Terminal> {
    let mut tx = db.begin_write().await?;
    let outlet: Option<(String,)> = query_as("SELECT id FROM outlets WHERE id = $1")
        .bind(&new.outlet_id)
        .fetch_optional(&mut tx)
        .await?;
    if outlet.is_none() {
        return Err(StoreError::not_found("outlet", new.outlet_id));
    }
    let taken: Option<(String,)> =
        query_as("SELECT id FROM terminals WHERE outlet_id = $1 AND label = $2")
            .bind(&new.outlet_id)
            .bind(&new.label)
            .fetch_optional(&mut tx)
            .await?;
    if let Some((other,)) = taken {
        return Err(StoreError::conflict(
            "label_taken",
            Some("label"),
            format!(
                "terminal {other} of this outlet already has label {}",
                new.label
            ),
        ));
    }
    if let Some(payment_ref) = &new.payment_ref {
        payment_ref_free(&mut tx.exec(), payment_ref, None).await?;
    }
    let now = crate::sql::now();
    let terminal = query_as::<Terminal>(
        "INSERT INTO terminals \
         (id, outlet_id, label, name, payment_ref, static_qris, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $7, $6, $6) RETURNING *",
    )
    .bind(crate::sql::new_id("ter"))
    .bind(new.outlet_id)
    .bind(new.label)
    .bind(new.name)
    .bind(new.payment_ref)
    .bind(now)
    .bind(new.static_qris)
    .fetch_one(&mut tx)
    .await?;
    tx.commit().await?;
    Ok(terminal)
}

pub(crate) async fn get_terminal(db: &Db, id: &str) -> StoreResult<Terminal> {
    query_as::<Terminal>("SELECT * FROM terminals WHERE id = $1")
        .bind(id)
        .fetch_optional(db.read())
        .await?
        .ok_or_else(|| StoreError::not_found("terminal", id))
}

pub(crate) async fn list_terminals(
    db: &Db,
    filter: &TerminalFilter,
    page: &PageRequest,
) -> StoreResult<Page<Terminal>> {
    let rows = query_as::<Terminal>(
        "SELECT * FROM terminals \
         WHERE ($1 IS NULL OR id > $1) AND ($2 IS NULL OR outlet_id = $2) \
         AND ($4 IS NULL OR outlet_id IN \
             (SELECT o.id FROM outlets o WHERE o.merchant_id = $4)) \
         ORDER BY id LIMIT $3",
    )
    .bind(page.after.as_deref())
    .bind(filter.outlet_id.as_deref())
    .bind(crate::sql::fetch_limit(page.limit))
    .bind(filter.merchant_id.as_deref())
    .fetch_all(db.read())
    .await?;
    Ok(crate::sql::paginate(rows, page.limit, |t| &t.id))
}

pub(crate) async fn update_terminal(
    db: &Db,
    id: &str,
    patch: TerminalPatch,
) -> StoreResult<Terminal> {
    let mut tx = db.begin_write().await?;
    let mut terminal =
        query_as::<Terminal>(["SELECT * FROM terminals WHERE id = $1 ", db.row_lock()].concat())
            .bind(id)
            .fetch_optional(&mut tx)
            .await?
            .ok_or_else(|| StoreError::not_found("terminal", id))?;
    if let Some(label) = patch.label {
        if label != terminal.label {
            let taken: Option<(String,)> =
                query_as("SELECT id FROM terminals WHERE outlet_id = $1 AND label = $2")
                    .bind(&terminal.outlet_id)
                    .bind(&label)
                    .fetch_optional(&mut tx)
                    .await?;
            if let Some((other,)) = taken {
                return Err(StoreError::conflict(
                    "label_taken",
                    Some("label"),
                    format!("terminal {other} of this outlet already has label {label}"),
                ));
            }
        }
        terminal.label = label;
    }
    if let Some(name) = patch.name {
        terminal.name = name;
    }
    if let Some(payment_ref) = patch.payment_ref {
        if let Some(payment_ref) = &payment_ref {
            payment_ref_free(&mut tx.exec(), payment_ref, Some(id)).await?;
        }
        terminal.payment_ref = payment_ref;
    }
    if let Some(static_qris) = patch.static_qris {
        terminal.static_qris = static_qris;
    }
    let terminal = query_as::<Terminal>(
        "UPDATE terminals SET label = $1, name = $2, payment_ref = $3, \
         updated_at = $4, static_qris = $6 WHERE id = $5 RETURNING *",
    )
    .bind(terminal.label)
    .bind(terminal.name)
    .bind(terminal.payment_ref)
    .bind(crate::sql::now())
    .bind(id)
    .bind(terminal.static_qris)
    .fetch_one(&mut tx)
    .await?;
    tx.commit().await?;
    Ok(terminal)
}

/// `Conflict` if another terminal (not `except`) already uses this static QR
/// reference.
pub(crate) async fn payment_ref_free(
    conn: &mut Exec<'_>,
    payment_ref: &str,
    except: Option<&str>,
) -> StoreResult<()> {
    let taken: Option<(String,)> =
        query_as("SELECT id FROM terminals WHERE payment_ref = $1 AND ($2 IS NULL OR id <> $2)")
            .bind(payment_ref)
            .bind(except)
            .fetch_optional(&mut *conn)
            .await?;
    match taken {
        Some((other,)) => Err(StoreError::conflict(
            "payment_ref_taken",
            Some("payment_ref"),
            format!("terminal {other} already uses payment_ref {payment_ref}"),
        )),
        None => Ok(()),
    }
}

//! Transactions: an order to be paid at a terminal, its status, its timeline of events,
//! and their queries.

use serde::Serialize;
use time::OffsetDateTime;

use crate::Db;
use crate::PaymentStore;
use crate::db::{Exec, query, query_as};
use crate::{MerchantStatus, Page, PageRequest, StoreError, StoreResult};

string_enum!(
    /// Where a transaction is: pending → paid → refunded; pending → expired | failed.
    /// A paid event after expiry or failure still wins (and is flagged).
    TransactionStatus {
        Pending = "pending",
        Paid = "paid",
        Refunded = "refunded",
        Expired = "expired",
        Failed = "failed",
    }
);

string_enum!(
    /// How the transaction came to exist.
    TransactionSource {
        /// `POST /api/v1/transactions` (an order with an amount, e.g. a dynamic QR).
        Api = "api",
        /// A paid event for a terminal's static QR reference.
        StaticQr = "static_qr",
    }
);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Transaction {
    pub id: String,
    pub order_ref: String,
    pub terminal_id: String,
    pub merchant_id: String,
    /// Whole rupiah.
    pub amount: i64,
    #[sqlx(try_from = "String")]
    pub status: TransactionStatus,
    #[sqlx(try_from = "String")]
    pub source: TransactionSource,
    pub provider: Option<String>,
    pub provider_transaction_id: Option<String>,
    pub issuer: Option<String>,
    pub paid_at: Option<OffsetDateTime>,
    /// Unix milliseconds after which a pending transaction expires.
    pub expires_at_ms: i64,
    /// A paid event arrived after the transaction had expired or failed, and won.
    pub paid_after_expiry: bool,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTransaction {
    pub terminal_id: String,
    pub order_ref: String,
    pub amount: i64,
    pub expires_at_ms: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransactionFilter {
    pub status: Option<TransactionStatus>,
    pub terminal_id: Option<String>,
    pub merchant_id: Option<String>,
    /// Newest first (ids descending; the page's cursor is then the last, oldest id shown),
    /// for the console's lists; oldest first otherwise, as the API pages.
    pub newest_first: bool,
}

/// One entry of a transaction's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct TransactionEvent {
    pub id: String,
    pub transaction_id: Option<String>,
    pub provider: String,
    pub provider_transaction_id: String,
    pub status: String,
    pub raw_status: String,
    pub amount: Option<i64>,
    /// `created`, `applied`, `stale`, `paid_after_expiry`, `amount_mismatch`, `expired`.
    pub effect: String,
    pub inbox_id: Option<String>,
    pub created_at: OffsetDateTime,
}

/// A timeline entry of Gema's own ([`crate::payments::batch::INTERNAL_EVENT`]).
pub(crate) async fn insert_internal_event(
    conn: &mut Exec<'_>,
    transaction_id: &str,
    status: &str,
    amount: i64,
    now: time::OffsetDateTime,
) -> StoreResult<()> {
    let id = crate::sql::new_id("evt");
    query(crate::payments::batch::INTERNAL_EVENT)
        .bind_all(crate::payments::batch::internal_event_params(
            &id,
            transaction_id,
            status,
            amount,
            now,
        ))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub(crate) async fn create_transaction(db: &Db, new: NewTransaction) -> StoreResult<Transaction> {
    let mut tx = db.begin_write().await?;
    let transaction = create_transaction_in(&mut tx, new).await?;
    tx.commit().await?;
    Ok(transaction)
}

/// Creates a pending transaction inside `tx` (with the other rows it goes with).
pub(crate) async fn create_transaction_in(
    tx: &mut crate::Tx,
    new: NewTransaction,
) -> StoreResult<Transaction> {
    let now = crate::sql::now();
    let owner: Option<(String, String)> = query_as(
        "SELECT m.id, m.status FROM terminals t JOIN outlets o ON o.id = t.outlet_id \
         JOIN merchants m ON m.id = o.merchant_id WHERE t.id = $1",
    )
    .bind(&new.terminal_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((merchant_id, status)) = owner else {
        return Err(StoreError::not_found("terminal", new.terminal_id));
    };
    if status != MerchantStatus::Approved.as_str() {
        return Err(StoreError::conflict(
            "merchant_not_approved",
            Some("terminal_id"),
            format!("merchant {merchant_id} is {status}; it cannot take payments"),
        ));
    }
    let taken: Option<(String,)> = query_as("SELECT id FROM transactions WHERE order_ref = $1")
        .bind(&new.order_ref)
        .fetch_optional(&mut *tx)
        .await?;
    if let Some((other,)) = taken {
        return Err(StoreError::conflict(
            "order_ref_taken",
            Some("order_ref"),
            format!(
                "transaction {other} already has order_ref {}",
                new.order_ref
            ),
        ));
    }
    let transaction = query_as::<Transaction>(
        "INSERT INTO transactions (id, order_ref, terminal_id, merchant_id, amount, \
         status, source, expires_at_ms, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 'pending', 'api', $6, $7, $7) RETURNING *",
    )
    .bind(crate::sql::new_id("trx"))
    .bind(new.order_ref)
    .bind(new.terminal_id)
    .bind(merchant_id)
    .bind(new.amount)
    .bind(new.expires_at_ms)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    insert_internal_event(&mut tx.exec(), &transaction.id, "created", new.amount, now).await?;
    Ok(transaction)
}

pub(crate) async fn get_transaction(db: &Db, id: &str) -> StoreResult<Transaction> {
    query_as::<Transaction>("SELECT * FROM transactions WHERE id = $1")
        .bind(id)
        .fetch_optional(db.read())
        .await?
        .ok_or_else(|| StoreError::not_found("transaction", id))
}

pub(crate) async fn list_transactions(
    db: &Db,
    filter: &TransactionFilter,
    page: &PageRequest,
) -> StoreResult<Page<Transaction>> {
    let sql = if filter.newest_first {
        "SELECT * FROM transactions WHERE ($1 IS NULL OR id < $1) \
         AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR terminal_id = $3) \
         AND ($4 IS NULL OR merchant_id = $4) ORDER BY id DESC LIMIT $5"
    } else {
        "SELECT * FROM transactions WHERE ($1 IS NULL OR id > $1) \
         AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR terminal_id = $3) \
         AND ($4 IS NULL OR merchant_id = $4) ORDER BY id LIMIT $5"
    };
    let rows = query_as::<Transaction>(sql)
        .bind(page.after.as_deref())
        .bind(filter.status.map(|s| s.as_str()))
        .bind(filter.terminal_id.as_deref())
        .bind(filter.merchant_id.as_deref())
        .bind(crate::sql::fetch_limit(page.limit))
        .fetch_all(db.read())
        .await?;
    Ok(crate::sql::paginate(rows, page.limit, |t| &t.id))
}

pub(crate) async fn transaction_events(db: &Db, id: &str) -> StoreResult<Vec<TransactionEvent>> {
    db.get_transaction(id).await?;
    Ok(query_as::<TransactionEvent>(
        "SELECT * FROM transaction_events WHERE transaction_id = $1 \
         ORDER BY created_at, id",
    )
    .bind(id)
    .fetch_all(db.read())
    .await?)
}

pub(crate) async fn expire_due_transactions(
    db: &Db,
    now_ms: i64,
    limit: u32,
) -> StoreResult<Vec<String>> {
    let now = crate::sql::now();
    let mut tx = db.begin_write().await?;
    let due: Vec<(String, i64)> = query_as(
        [
            "SELECT id, amount FROM transactions WHERE status = 'pending' \
         AND expires_at_ms <= $1 ORDER BY expires_at_ms LIMIT $2 ",
            db.row_lock(),
        ]
        .concat(),
    )
    .bind(now_ms)
    .bind(i64::from(limit.max(1)))
    .fetch_all(&mut tx)
    .await?;
    for (id, amount) in &due {
        query(
            "UPDATE transactions SET status = 'expired', updated_at = $1 \
             WHERE id = $2 AND status = 'pending'",
        )
        .bind(now)
        .bind(id)
        .execute(&mut tx)
        .await?;
        insert_internal_event(&mut tx.exec(), id, "expired", *amount, now).await?;
    }
    tx.commit().await?;
    Ok(due.into_iter().map(|(id, _)| id).collect())
}

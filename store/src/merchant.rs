//! Merchants: the record, its review status, and their queries. Only an approved
//! merchant's terminals take devices and payments.

use serde::Serialize;
use time::OffsetDateTime;

use crate::Db;
use crate::db::query_as;
use crate::{Page, PageRequest, StoreError, StoreResult};

/// Where a merchant is in its review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MerchantStatus {
    Pending,
    Approved,
    Rejected,
    Suspended,
}

impl MerchantStatus {
    pub const ALL: [MerchantStatus; 4] = [
        MerchantStatus::Pending,
        MerchantStatus::Approved,
        MerchantStatus::Rejected,
        MerchantStatus::Suspended,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MerchantStatus::Pending => "pending",
            MerchantStatus::Approved => "approved",
            MerchantStatus::Rejected => "rejected",
            MerchantStatus::Suspended => "suspended",
        }
    }
}

impl TryFrom<String> for MerchantStatus {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == value)
            .ok_or_else(|| format!("unknown merchant status {value:?}"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Merchant {
    pub id: String,
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    #[sqlx(try_from = "String")]
    pub status: MerchantStatus,
    /// Why the merchant was rejected or suspended.
    pub status_reason: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMerchant {
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
}

/// Changes to a merchant; `None` leaves a field as it is. For the optional fields,
/// `Some(None)` clears the value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MerchantPatch {
    pub name: Option<String>,
    pub email: Option<Option<String>>,
    pub phone: Option<Option<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MerchantFilter {
    pub status: Option<MerchantStatus>,
}

pub(crate) async fn create_merchant(db: &Db, new: NewMerchant) -> StoreResult<Merchant> {
    let now = crate::sql::now();
    let mut tx = db.begin_write().await?;
    let merchant = query_as::<Merchant>(
        "INSERT INTO merchants \
         (id, name, email, phone, status, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING *",
    )
    .bind(crate::sql::new_id("mer"))
    .bind(new.name)
    .bind(new.email)
    .bind(new.phone)
    .bind(MerchantStatus::Pending.as_str())
    .bind(now)
    .fetch_one(&mut tx)
    .await?;
    tx.commit().await?;
    Ok(merchant)
}

pub(crate) async fn get_merchant(db: &Db, id: &str) -> StoreResult<Merchant> {
    query_as::<Merchant>("SELECT * FROM merchants WHERE id = $1")
        .bind(id)
        .fetch_optional(db.read())
        .await?
        .ok_or_else(|| StoreError::not_found("merchant", id))
}

pub(crate) async fn list_merchants(
    db: &Db,
    filter: &MerchantFilter,
    page: &PageRequest,
) -> StoreResult<Page<Merchant>> {
    let rows = query_as::<Merchant>(
        "SELECT * FROM merchants \
         WHERE ($1 IS NULL OR id > $1) AND ($2 IS NULL OR status = $2) \
         ORDER BY id LIMIT $3",
    )
    .bind(page.after.as_deref())
    .bind(filter.status.map(|s| s.as_str()))
    .bind(crate::sql::fetch_limit(page.limit))
    .fetch_all(db.read())
    .await?;
    Ok(crate::sql::paginate(rows, page.limit, |m| &m.id))
}

pub(crate) async fn update_merchant(
    db: &Db,
    id: &str,
    patch: MerchantPatch,
) -> StoreResult<Merchant> {
    let mut tx = db.begin_write().await?;
    let mut merchant =
        query_as::<Merchant>(["SELECT * FROM merchants WHERE id = $1 ", db.row_lock()].concat())
            .bind(id)
            .fetch_optional(&mut tx)
            .await?
            .ok_or_else(|| StoreError::not_found("merchant", id))?;
    if let Some(name) = patch.name {
        merchant.name = name;
    }
    if let Some(email) = patch.email {
        merchant.email = email;
    }
    if let Some(phone) = patch.phone {
        merchant.phone = phone;
    }
    let merchant = query_as::<Merchant>(
        "UPDATE merchants SET name = $1, email = $2, phone = $3, updated_at = $4 \
         WHERE id = $5 RETURNING *",
    )
    .bind(merchant.name)
    .bind(merchant.email)
    .bind(merchant.phone)
    .bind(crate::sql::now())
    .bind(id)
    .fetch_one(&mut tx)
    .await?;
    tx.commit().await?;
    Ok(merchant)
}

pub(crate) async fn transition_merchant(
    db: &Db,
    id: &str,
    from: &[MerchantStatus],
    to: MerchantStatus,
    reason: Option<String>,
) -> StoreResult<Merchant> {
    let mut tx = db.begin_write().await?;
    let merchant =
        query_as::<Merchant>(["SELECT * FROM merchants WHERE id = $1 ", db.row_lock()].concat())
            .bind(id)
            .fetch_optional(&mut tx)
            .await?
            .ok_or_else(|| StoreError::not_found("merchant", id))?;
    if !from.contains(&merchant.status) {
        return Err(StoreError::conflict(
            "invalid_transition",
            None,
            format!(
                "merchant {id} is {}; it cannot become {}",
                merchant.status.as_str(),
                to.as_str()
            ),
        ));
    }
    let merchant = query_as::<Merchant>(
        "UPDATE merchants SET status = $1, status_reason = $2, updated_at = $3 \
         WHERE id = $4 RETURNING *",
    )
    .bind(to.as_str())
    .bind(reason)
    .bind(crate::sql::now())
    .bind(id)
    .fetch_one(&mut tx)
    .await?;
    tx.commit().await?;
    Ok(merchant)
}

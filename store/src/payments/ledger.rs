//! The ledger: gross income, platform fee and merchant payable per paid transaction, and
//! their reversals on refund; and its query.

use crate::Db;
use crate::db::query_as;
use crate::{Page, PageRequest, StoreResult};
use serde::Serialize;
use time::OffsetDateTime;

string_enum!(
    LedgerEntryType {
        GrossIncome = "gross_income",
        PlatformFee = "platform_fee",
        MerchantPayable = "merchant_payable",
        /// A settlement adjustment's effect on what the merchant is paid (signed).
        PayableAdjustment = "payable_adjustment",
        /// Money withheld from a merchant's payouts: a hold adds, a release takes away.
        MerchantHeld = "merchant_held",
    }
);

impl LedgerEntryType {
    /// Entries a settlement batch pays out.
    pub fn is_payable(self) -> bool {
        matches!(self, Self::MerchantPayable | Self::PayableAdjustment)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct LedgerEntry {
    pub id: String,
    /// The transaction it posts; `None` for a settlement adjustment's entries.
    pub transaction_id: Option<String>,
    pub merchant_id: String,
    #[sqlx(try_from = "String")]
    pub entry_type: LedgerEntryType,
    /// Whole rupiah; negative on a refund's reversing entries.
    pub amount: i64,
    pub external_id: String,
    pub reverses_id: Option<String>,
    pub created_at: OffsetDateTime,
    /// The settlement adjustment it posts; `None` for a transaction's entries.
    pub adjustment_id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerFilter {
    pub merchant_id: Option<String>,
    pub transaction_id: Option<String>,
}

pub(crate) async fn list_ledger_entries(
    db: &Db,
    filter: &LedgerFilter,
    page: &PageRequest,
) -> StoreResult<Page<LedgerEntry>> {
    let rows = query_as::<LedgerEntry>(
        "SELECT * FROM ledger_entries WHERE ($1 IS NULL OR id > $1) \
         AND ($2 IS NULL OR merchant_id = $2) \
         AND ($3 IS NULL OR transaction_id = $3) ORDER BY id LIMIT $4",
    )
    .bind(page.after.as_deref())
    .bind(filter.merchant_id.as_deref())
    .bind(filter.transaction_id.as_deref())
    .bind(crate::sql::fetch_limit(page.limit))
    .fetch_all(db.read())
    .await?;
    Ok(crate::sql::paginate(rows, page.limit, |e| &e.id))
}

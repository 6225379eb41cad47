//! Outlets: a merchant's places of business, and their queries.

use serde::Serialize;
use time::OffsetDateTime;

use crate::Db;
use crate::db::query_as;
use crate::{Page, PageRequest, StoreError, StoreResult};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Outlet {
    pub id: String,
    pub merchant_id: String,
    pub name: String,
    pub address: Option<String>,
    pub city: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutlet {
    pub merchant_id: String,
    pub name: String,
    pub address: Option<String>,
    pub city: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutletPatch {
    pub name: Option<String>,
    pub address: Option<Option<String>>,
    pub city: Option<Option<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutletFilter {
    pub merchant_id: Option<String>,
}

pub(crate) async fn create_outlet(db: &Db, new: NewOutlet) -> StoreResult<Outlet> {
    let mut tx = db.begin_write().await?;
    let merchant: Option<(String,)> = query_as("SELECT id FROM merchants WHERE id = $1")
        .bind(&new.merchant_id)
        .fetch_optional(&mut tx)
        .await?;
    if merchant.is_none() {
        return Err(StoreError::not_found("merchant", new.merchant_id));
    }
    let now = crate::sql::now();
    let outlet = query_as::<Outlet>(
        "INSERT INTO outlets \
         (id, merchant_id, name, address, city, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING *",
    )
    .bind(crate::sql::new_id("out"))
    .bind(new.merchant_id)
    .bind(new.name)
    .bind(new.address)
    .bind(new.city)
    .bind(now)
    .fetch_one(&mut tx)
    .await?;
    tx.commit().await?;
    Ok(outlet)
}

pub(crate) async fn get_outlet(db: &Db, id: &str) -> StoreResult<Outlet> {
    query_as::<Outlet>("SELECT * FROM outlets WHERE id = $1")
        .bind(id)
        .fetch_optional(db.read())
        .await?
        .ok_or_else(|| StoreError::not_found("outlet", id))
}

pub(crate) async fn list_outlets(
    db: &Db,
    filter: &OutletFilter,
    page: &PageRequest,
) -> StoreResult<Page<Outlet>> {
    let rows = query_as::<Outlet>(
        "SELECT * FROM outlets \
         WHERE ($1 IS NULL OR id > $1) AND ($2 IS NULL OR merchant_id = $2) \
         ORDER BY id LIMIT $3",
    )
    .bind(page.after.as_deref())
    .bind(filter.merchant_id.as_deref())
    .bind(crate::sql::fetch_limit(page.limit))
    .fetch_all(db.read())
    .await?;
    Ok(crate::sql::paginate(rows, page.limit, |o| &o.id))
}

pub(crate) async fn update_outlet(db: &Db, id: &str, patch: OutletPatch) -> StoreResult<Outlet> {
    let mut tx = db.begin_write().await?;
    let mut outlet =
        query_as::<Outlet>(["SELECT * FROM outlets WHERE id = $1 ", db.row_lock()].concat())
            .bind(id)
            .fetch_optional(&mut tx)
            .await?
            .ok_or_else(|| StoreError::not_found("outlet", id))?;
    if let Some(name) = patch.name {
        outlet.name = name;
    }
    if let Some(address) = patch.address {
        outlet.address = address;
    }
    if let Some(city) = patch.city {
        outlet.city = city;
    }
    let outlet = query_as::<Outlet>(
        "UPDATE outlets SET name = $1, address = $2, city = $3, updated_at = $4 \
         WHERE id = $5 RETURNING *",
    )
    .bind(outlet.name)
    .bind(outlet.address)
    .bind(outlet.city)
    .bind(crate::sql::now())
    .bind(id)
    .fetch_one(&mut tx)
    .await?;
    tx.commit().await?;
    Ok(outlet)
}

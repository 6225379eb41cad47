//! The PostgreSQL backend, for deployments with several gateway nodes.
//!
//! Transactions run at READ COMMITTED; rows a transaction is about to change are read with
//! `FOR UPDATE`, and unique constraints back every "check, then insert" in case two nodes
//! race.

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

use crate::sql::impl_store;
use crate::sql_auth::{auth_helpers, impl_auth_store};
use crate::sql_device_ops::impl_device_ops_store;
use crate::sql_payments::{impl_payment_store, payment_helpers};
use crate::{Backend, ConnectOptions, StoreResult};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, Clone)]
pub struct PostgresStore {
    read: PgPool,
    write: PgPool,
}

impl PostgresStore {
    pub async fn connect(url: &str, options: &ConnectOptions) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect(url)
            .await?;
        Ok(Self {
            read: pool.clone(),
            write: pool,
        })
    }

    async fn begin_write(&self) -> StoreResult<Transaction<'static, Postgres>> {
        Ok(self.write.begin().await?)
    }

    /// A batch of payment events is an ordinary transaction here (see `SqliteStore`'s for
    /// why SQLite's is not).
    async fn begin_batch(&self) -> StoreResult<Transaction<'static, Postgres>> {
        self.begin_write().await
    }

    async fn prefetch_batch(
        tx: &mut Transaction<'static, Postgres>,
        staged: &mut crate::sql_payments::Staged,
        items: &[(crate::InboxEntry, crate::IncomingEvent)],
    ) -> StoreResult<()> {
        prefetch(tx, staged, items).await
    }

    async fn commit_batch(tx: Transaction<'static, Postgres>) -> StoreResult<()> {
        Ok(tx.commit().await?)
    }

    async fn abort_batch(tx: Transaction<'static, Postgres>) {
        if let Err(err) = tx.rollback().await {
            tracing::warn!(error = %err, "rolling back a failed batch failed");
        }
    }
}

impl_store!(
    PostgresStore,
    Backend::Postgres,
    MIGRATOR,
    lock = "FOR UPDATE"
);
impl_payment_store!(PostgresStore, lock = "FOR UPDATE");
payment_helpers!(
    Postgres,
    lock = "FOR UPDATE",
    placeholders = Numbered,
    writes = Cte
);
impl_device_ops_store!(PostgresStore, lock = "FOR UPDATE");
impl_auth_store!(PostgresStore, lock = "FOR UPDATE");
auth_helpers!(Postgres);

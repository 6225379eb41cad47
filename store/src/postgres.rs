//! The PostgreSQL backend, for deployments with several gateway nodes.
//!
//! Transactions run at READ COMMITTED; rows a transaction is about to change are read with
//! `FOR UPDATE`, and unique constraints back every "check, then insert" in case two nodes
//! race. The payment batches run on connections of their own (`postgres_payments`).

use std::sync::Arc;

use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::postgres_payments::BatchConnections;
use crate::{
    ConnectOptions, DeliveryResult, InboxEntry, IncomingEvent, PaymentOutcome, PaymentRules,
    StoreResult,
};

pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, Clone)]
pub(crate) struct PostgresStore {
    pub(crate) read: PgPool,
    pub(crate) write: PgPool,
    /// The payment batches' own connections.
    batches: Arc<BatchConnections>,
}

impl PostgresStore {
    pub async fn connect(url: &str, options: &ConnectOptions) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect(url)
            .await?;
        let batches = Arc::new(BatchConnections::new(url, options.acquire_timeout)?);
        Ok(Self {
            read: pool.clone(),
            write: pool,
            batches,
        })
    }

    /// Applies events, and records delivery results, in one database transaction. Any
    /// failing statement fails the whole batch, which is rolled back.
    pub(crate) async fn apply_in_one_transaction(
        &self,
        items: &[(InboxEntry, IncomingEvent)],
        rules: &dyn PaymentRules,
        deliveries: &[(String, DeliveryResult)],
    ) -> StoreResult<Vec<PaymentOutcome>> {
        self.batches.apply(items, rules, deliveries).await
    }

    /// Delivery results that no payment batch carried, in a transaction of their own.
    pub(crate) async fn write_deliveries(
        &self,
        results: &[(String, DeliveryResult)],
    ) -> StoreResult<()> {
        self.batches.write_deliveries(results).await
    }
}

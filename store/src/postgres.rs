//! The PostgreSQL backend, for deployments with several gateway nodes.
//!
//! Transactions run at READ COMMITTED; rows a transaction is about to change are read with
//! `FOR UPDATE`, and unique constraints back every "check, then insert" in case two nodes
//! race.

use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

use crate::payments::batch::{
    BatchIo, BoundDevice, DeliveryUpdate, INSERT_TRANSACTION, LEDGER_ORIGINALS, Piece,
    Placeholders, STATIC_QR_TERMINAL, Staged, batch_keys, batch_pieces, batch_write_sql,
    bound_devices_sql, insert_chunks, piece_params, recorded_keys_sql, stage_deliveries,
    stage_events, staged_terminals, transaction_params, transactions_by_order_sql,
};
use crate::{
    ConnectOptions, DeliveryResult, InboxEntry, IncomingEvent, PaymentOutcome, PaymentRules,
    StoreResult,
};

pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, Clone)]
pub(crate) struct PostgresStore {
    pub(crate) read: PgPool,
    pub(crate) write: PgPool,
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
}

/// Payment batches: the reads a few statements whatever the batch's size, the writes one
/// ([`batch_write_sql`]).
impl PostgresStore {
    /// Applies events, and records delivery results, in one database transaction. Any
    /// failing statement fails the whole batch, which is rolled back.
    pub(crate) async fn apply_in_one_transaction(
        &self,
        items: &[(InboxEntry, IncomingEvent)],
        rules: &dyn PaymentRules,
        deliveries: &[(String, DeliveryResult)],
    ) -> StoreResult<Vec<PaymentOutcome>> {
        let now = crate::sql::now();
        let mut tx = self.begin_write().await?;
        let applied = async {
            let mut staged = Staged::default();
            prefetch(&mut tx, &mut staged, items).await?;
            let mut io = PgBatch(&mut tx);
            let outcomes = stage_events(&mut io, &mut staged, items, rules, now).await?;
            stage_deliveries(&mut io, &mut staged, deliveries, now).await?;
            flush(&mut tx, &staged, items, now).await?;
            Ok::<_, crate::StoreError>(outcomes)
        }
        .await;
        match applied {
            Ok(outcomes) => {
                tx.commit().await?;
                Ok(outcomes)
            }
            Err(err) => {
                if let Err(rollback) = tx.rollback().await {
                    tracing::warn!(error = %rollback, "rolling back a failed batch failed");
                }
                Err(err)
            }
        }
    }

    /// Delivery results that no payment batch carried, in a transaction of their own.
    pub(crate) async fn write_deliveries(
        &self,
        results: &[(String, DeliveryResult)],
    ) -> StoreResult<()> {
        let now = crate::sql::now();
        let mut tx = self.begin_write().await?;
        let mut staged = Staged::default();
        stage_deliveries(&mut PgBatch(&mut tx), &mut staged, results, now).await?;
        flush(&mut tx, &staged, &[], now).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Reads what a batch's events need, a few statements for the whole batch: their
/// transactions (locked, in order_ref order so concurrent nodes lock alike), then which of
/// the events were recorded before (after the locks, so a copy committed by the lock's
/// previous holder is seen), then the devices bound to those terminals.
async fn prefetch(
    conn: &mut PgConnection,
    staged: &mut Staged,
    items: &[(InboxEntry, IncomingEvent)],
) -> StoreResult<()> {
    let (events, orders) = batch_keys(items);
    for chunk in insert_chunks(&orders) {
        let sql = transactions_by_order_sql(Placeholders::Numbered, chunk.len(), "FOR UPDATE");
        let mut query = sqlx::query_as::<_, crate::Transaction>(&sql);
        for order in chunk {
            query = query.bind(*order);
        }
        for t in query.fetch_all(&mut *conn).await? {
            staged.transactions.insert(t.order_ref.clone(), t);
        }
    }
    for chunk in insert_chunks(&events) {
        let sql = recorded_keys_sql(Placeholders::Numbered, chunk.len());
        let mut query = sqlx::query_as::<_, (String, String, String, String)>(&sql);
        for e in chunk {
            query = query
                .bind(&e.provider)
                .bind(&e.provider_transaction_id)
                .bind(&e.status);
        }
        for (provider, id, status, transaction) in query.fetch_all(&mut *conn).await? {
            staged.known.insert((provider, id, status), transaction);
        }
    }
    prefetch_devices(conn, staged, &staged_terminals(staged)).await
}

async fn prefetch_devices(
    conn: &mut PgConnection,
    staged: &mut Staged,
    terminals: &[impl AsRef<str> + Sync],
) -> StoreResult<()> {
    for chunk in insert_chunks(terminals) {
        let sql = bound_devices_sql(Placeholders::Numbered, chunk.len());
        let mut query = sqlx::query_as::<_, (String, String, i64, Option<String>)>(&sql);
        for terminal in chunk {
            query = query.bind(terminal.as_ref());
            staged.devices.insert(terminal.as_ref().to_owned(), None);
        }
        for (terminal, id, next_sequence, desired_config) in query.fetch_all(&mut *conn).await? {
            staged.devices.insert(
                terminal,
                Some(BoundDevice {
                    id,
                    next_sequence,
                    desired_config,
                }),
            );
        }
    }
    Ok(())
}

/// Writes everything the batch staged in one statement.
async fn flush(
    conn: &mut PgConnection,
    staged: &Staged,
    items: &[(InboxEntry, IncomingEvent)],
    now: time::OffsetDateTime,
) -> StoreResult<()> {
    let updates: Vec<&crate::Transaction> = staged.updates.values().collect();
    let pieces = batch_pieces(staged, &updates);
    if pieces.is_empty() {
        return Ok(());
    }
    let sql = batch_write_sql(&pieces);
    let mut query = crate::db::query(&sql);
    for piece in &pieces {
        query = query.bind_all(piece_params(piece, items, now));
    }
    query.execute(&mut *conn).await?;
    Ok(())
}

/// A batch's transaction, for the staging's other statements.
struct PgBatch<'c>(&'c mut PgConnection);

impl BatchIo for PgBatch<'_> {
    async fn static_qr_terminal(
        &mut self,
        payment_ref: &str,
    ) -> StoreResult<Option<(String, String)>> {
        Ok(sqlx::query_as(STATIC_QR_TERMINAL)
            .bind(payment_ref)
            .fetch_optional(&mut *self.0)
            .await?)
    }

    async fn insert_transaction(&mut self, transaction: &crate::Transaction) -> StoreResult<()> {
        crate::db::query(INSERT_TRANSACTION)
            .bind_all(transaction_params(transaction))
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn insert_internal_event(
        &mut self,
        transaction_id: &str,
        status: &str,
        amount: i64,
        now: time::OffsetDateTime,
    ) -> StoreResult<()> {
        crate::payments::transaction::insert_internal_event(
            &mut self.0.into(),
            transaction_id,
            status,
            amount,
            now,
        )
        .await
    }

    async fn ledger_originals(
        &mut self,
        staged: &mut Staged,
        transaction_id: &str,
        now: time::OffsetDateTime,
    ) -> StoreResult<Vec<(String, String)>> {
        let rows = std::mem::take(&mut staged.ledger);
        for chunk in insert_chunks(&rows) {
            let piece = Piece::Ledger(chunk);
            crate::db::query(piece.sql(Placeholders::Numbered, 1))
                .bind_all(piece_params(&piece, &[], now))
                .execute(&mut *self.0)
                .await?;
        }
        Ok(sqlx::query_as(LEDGER_ORIGINALS)
            .bind(transaction_id)
            .fetch_all(&mut *self.0)
            .await?)
    }

    async fn prefetch_devices(
        &mut self,
        staged: &mut Staged,
        terminals: &[&str],
    ) -> StoreResult<()> {
        prefetch_devices(self.0, staged, terminals).await
    }

    async fn record_one_delivery(
        &mut self,
        announcement_id: &str,
        update: &DeliveryUpdate,
    ) -> StoreResult<bool> {
        crate::payments::announcement::record_one_delivery(
            &mut self.0.into(),
            announcement_id,
            update,
        )
        .await
    }
}

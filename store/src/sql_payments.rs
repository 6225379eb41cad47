//! Payment queries, written once for both backends (see `sql.rs` for the conventions).

/// Implements [`crate::PaymentStore`] for a backend type.
macro_rules! impl_payment_store {
    ($store:ty, lock = $lock:literal) => {
        #[async_trait::async_trait]
        impl $crate::PaymentStore for $store {
            async fn record_inbox(
                &self,
                entry: $crate::InboxEntry,
                outcome: &str,
                detail: Option<&str>,
            ) -> $crate::StoreResult<String> {
                let mut conn = self.write.acquire().await?;
                insert_inbox(&mut *conn, &entry, outcome, detail).await
            }

            async fn apply_payment_events(
                &self,
                items: Vec<($crate::InboxEntry, $crate::IncomingEvent)>,
                rules: &dyn $crate::PaymentRules,
            ) -> $crate::StoreResult<Vec<$crate::StoreResult<$crate::PaymentOutcome>>> {
                let now = $crate::sql::now();
                let mut tx = self.begin_write().await?;
                let mut outcomes = Vec::with_capacity(items.len());
                for (entry, event) in items {
                    // The raw request is kept whatever becomes of the event.
                    let inbox_id = insert_inbox(&mut *tx, &entry, "received", None).await?;
                    let order_ref = event.order_ref.clone();
                    // Each event under its own savepoint: an unknown order or a failure
                    // undoes only that event; the others still commit together.
                    sqlx::query("SAVEPOINT payment_event").execute(&mut *tx).await?;
                    let outcome = apply_one(&mut *tx, &inbox_id, event, rules, now).await;
                    let undo = !matches!(
                        outcome,
                        Ok(ref o) if *o != $crate::PaymentOutcome::UnknownOrder
                    );
                    let end = if undo {
                        "ROLLBACK TO SAVEPOINT payment_event"
                    } else {
                        "RELEASE SAVEPOINT payment_event"
                    };
                    sqlx::query(end).execute(&mut *tx).await?;
                    if undo {
                        sqlx::query("RELEASE SAVEPOINT payment_event").execute(&mut *tx).await?;
                        let (status, detail) = match &outcome {
                            Ok(_) => ("unknown_order", order_ref),
                            Err(err) => ("failed", err.to_string()),
                        };
                        sqlx::query("UPDATE payment_inbox SET outcome = $1, detail = $2 WHERE id = $3")
                            .bind(status)
                            .bind(detail)
                            .bind(&inbox_id)
                            .execute(&mut *tx)
                            .await?;
                    }
                    outcomes.push(outcome);
                }
                tx.commit().await?;
                Ok(outcomes)
            }

            async fn apply_payment_event(
                &self,
                entry: $crate::InboxEntry,
                event: $crate::IncomingEvent,
                rules: &dyn $crate::PaymentRules,
            ) -> $crate::StoreResult<$crate::PaymentOutcome> {
                self.apply_payment_events(vec![(entry, event)], rules)
                    .await?
                    .pop()
                    .unwrap_or(Err($crate::StoreError::Corrupt("no outcome for an event".into())))
            }

            async fn create_transaction(
                &self,
                new: $crate::NewTransaction,
            ) -> $crate::StoreResult<$crate::Transaction> {
                let now = $crate::sql::now();
                let mut tx = self.begin_write().await?;
                let owner: Option<(String, String)> = sqlx::query_as(
                    "SELECT m.id, m.status FROM terminals t JOIN outlets o ON o.id = t.outlet_id \
                     JOIN merchants m ON m.id = o.merchant_id WHERE t.id = $1",
                )
                .bind(&new.terminal_id)
                .fetch_optional(&mut *tx)
                .await?;
                let Some((merchant_id, status)) = owner else {
                    return Err($crate::StoreError::not_found("terminal", new.terminal_id));
                };
                if status != $crate::MerchantStatus::Approved.as_str() {
                    return Err($crate::StoreError::conflict(
                        "merchant_not_approved",
                        Some("terminal_id"),
                        format!("merchant {merchant_id} is {status}; it cannot take payments"),
                    ));
                }
                let taken: Option<(String,)> =
                    sqlx::query_as("SELECT id FROM transactions WHERE order_ref = $1")
                        .bind(&new.order_ref)
                        .fetch_optional(&mut *tx)
                        .await?;
                if let Some((other,)) = taken {
                    return Err($crate::StoreError::conflict(
                        "order_ref_taken",
                        Some("order_ref"),
                        format!("transaction {other} already has order_ref {}", new.order_ref),
                    ));
                }
                let transaction = sqlx::query_as::<_, $crate::Transaction>(
                    "INSERT INTO transactions (id, order_ref, terminal_id, merchant_id, amount, \
                     status, source, expires_at_ms, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, 'pending', 'api', $6, $7, $7) RETURNING *",
                )
                .bind($crate::sql::new_id("trx"))
                .bind(new.order_ref)
                .bind(new.terminal_id)
                .bind(merchant_id)
                .bind(new.amount)
                .bind(new.expires_at_ms)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                insert_internal_event(&mut *tx, &transaction.id, "created", new.amount, now).await?;
                tx.commit().await?;
                Ok(transaction)
            }

            async fn get_transaction(&self, id: &str) -> $crate::StoreResult<$crate::Transaction> {
                sqlx::query_as::<_, $crate::Transaction>("SELECT * FROM transactions WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.read)
                    .await?
                    .ok_or_else(|| $crate::StoreError::not_found("transaction", id))
            }

            async fn list_transactions(
                &self,
                filter: &$crate::TransactionFilter,
                page: &$crate::PageRequest,
            ) -> $crate::StoreResult<$crate::Page<$crate::Transaction>> {
                let rows = sqlx::query_as::<_, $crate::Transaction>(
                    "SELECT * FROM transactions WHERE ($1 IS NULL OR id > $1) \
                     AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR terminal_id = $3) \
                     AND ($4 IS NULL OR merchant_id = $4) ORDER BY id LIMIT $5",
                )
                .bind(page.after.as_deref())
                .bind(filter.status.map(|s| s.as_str()))
                .bind(filter.terminal_id.as_deref())
                .bind(filter.merchant_id.as_deref())
                .bind($crate::sql::fetch_limit(page.limit))
                .fetch_all(&self.read)
                .await?;
                Ok($crate::sql::paginate(rows, page.limit, |t| &t.id))
            }

            async fn transaction_events(
                &self,
                id: &str,
            ) -> $crate::StoreResult<Vec<$crate::TransactionEvent>> {
                self.get_transaction(id).await?;
                Ok(sqlx::query_as::<_, $crate::TransactionEvent>(
                    "SELECT * FROM transaction_events WHERE transaction_id = $1 \
                     ORDER BY created_at, id",
                )
                .bind(id)
                .fetch_all(&self.read)
                .await?)
            }

            async fn transaction_announcements(
                &self,
                id: &str,
            ) -> $crate::StoreResult<Vec<$crate::Announcement>> {
                self.get_transaction(id).await?;
                Ok(sqlx::query_as::<_, $crate::Announcement>(
                    "SELECT * FROM announcements WHERE transaction_id = $1 ORDER BY id",
                )
                .bind(id)
                .fetch_all(&self.read)
                .await?)
            }

            async fn list_ledger_entries(
                &self,
                filter: &$crate::LedgerFilter,
                page: &$crate::PageRequest,
            ) -> $crate::StoreResult<$crate::Page<$crate::LedgerEntry>> {
                let rows = sqlx::query_as::<_, $crate::LedgerEntry>(
                    "SELECT * FROM ledger_entries WHERE ($1 IS NULL OR id > $1) \
                     AND ($2 IS NULL OR merchant_id = $2) \
                     AND ($3 IS NULL OR transaction_id = $3) ORDER BY id LIMIT $4",
                )
                .bind(page.after.as_deref())
                .bind(filter.merchant_id.as_deref())
                .bind(filter.transaction_id.as_deref())
                .bind($crate::sql::fetch_limit(page.limit))
                .fetch_all(&self.read)
                .await?;
                Ok($crate::sql::paginate(rows, page.limit, |e| &e.id))
            }

            async fn expire_due_transactions(
                &self,
                now_ms: i64,
                limit: u32,
            ) -> $crate::StoreResult<Vec<String>> {
                let now = $crate::sql::now();
                let mut tx = self.begin_write().await?;
                let due: Vec<(String, i64)> = sqlx::query_as(concat!(
                    "SELECT id, amount FROM transactions WHERE status = 'pending' \
                     AND expires_at_ms <= $1 ORDER BY expires_at_ms LIMIT $2 ",
                    $lock
                ))
                .bind(now_ms)
                .bind(i64::from(limit.max(1)))
                .fetch_all(&mut *tx)
                .await?;
                for (id, amount) in &due {
                    sqlx::query(
                        "UPDATE transactions SET status = 'expired', updated_at = $1 \
                         WHERE id = $2 AND status = 'pending'",
                    )
                    .bind(now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    insert_internal_event(&mut *tx, id, "expired", *amount, now).await?;
                }
                tx.commit().await?;
                Ok(due.into_iter().map(|(id, _)| id).collect())
            }

            async fn queue_announcement(
                &self,
                transaction_id: &str,
                rules: &dyn $crate::PaymentRules,
            ) -> $crate::StoreResult<$crate::Announcement> {
                let now = $crate::sql::now();
                let mut tx = self.begin_write().await?;
                let transaction = sqlx::query_as::<_, $crate::Transaction>(concat!(
                    "SELECT * FROM transactions WHERE id = $1 ",
                    $lock
                ))
                .bind(transaction_id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| $crate::StoreError::not_found("transaction", transaction_id))?;
                if transaction.status != $crate::TransactionStatus::Paid {
                    return Err($crate::StoreError::conflict(
                        "not_paid",
                        None,
                        format!(
                            "transaction {transaction_id} is {}; only paid transactions are announced",
                            transaction.status.as_str()
                        ),
                    ));
                }
                let announcement = queue_announcement(&mut *tx, &transaction, rules, now).await?;
                tx.commit().await?;
                Ok(announcement)
            }

            async fn due_announcements(
                &self,
                device_id: Option<&str>,
                now_ms: i64,
                limit: u32,
            ) -> $crate::StoreResult<Vec<$crate::AnnouncementDelivery>> {
                Ok(sqlx::query_as::<_, $crate::AnnouncementDelivery>(
                    "SELECT a.id, a.transaction_id, a.device_id, a.sequence, a.attempts, a.expires_at_ms, \
                     t.amount, t.issuer, t.provider, t.paid_at, c.desired AS desired_config \
                     FROM announcements a JOIN transactions t ON t.id = a.transaction_id \
                     LEFT JOIN device_configs c ON c.device_id = a.device_id \
                     WHERE a.status = 'pending' AND a.device_id IS NOT NULL \
                     AND a.next_attempt_at_ms <= $1 AND ($2 IS NULL OR a.device_id = $2) \
                     ORDER BY a.device_id, a.sequence LIMIT $3",
                )
                .bind(now_ms)
                .bind(device_id)
                .bind(i64::from(limit.max(1)))
                .fetch_all(&self.read)
                .await?)
            }

            async fn next_announcement_due_ms(&self) -> $crate::StoreResult<Option<i64>> {
                let (next,): (Option<i64>,) = sqlx::query_as(
                    "SELECT MIN(next_attempt_at_ms) FROM announcements \
                     WHERE status = 'pending' AND device_id IS NOT NULL",
                )
                .fetch_one(&self.read)
                .await?;
                Ok(next)
            }

            async fn record_delivery(
                &self,
                announcement_id: &str,
                result: $crate::DeliveryResult,
            ) -> $crate::StoreResult<()> {
                let mut tx = self.begin_write().await?;
                let found = record_one_delivery(&mut *tx, announcement_id, result).await?;
                tx.commit().await?;
                if !found {
                    return Err($crate::StoreError::not_found("announcement", announcement_id));
                }
                Ok(())
            }

            async fn record_deliveries(
                &self,
                results: Vec<(String, $crate::DeliveryResult)>,
            ) -> $crate::StoreResult<()> {
                let mut tx = self.begin_write().await?;
                for (id, result) in results {
                    record_one_delivery(&mut *tx, &id, result).await?;
                }
                tx.commit().await?;
                Ok(())
            }
        }
    };
}
pub(crate) use impl_payment_store;

/// Helpers shared by the payment queries of both backends, generic over the connection.
macro_rules! payment_helpers {
    ($db:ty, lock = $lock:literal) => {
        /// Keeps a provider request exactly as received; returns its id.
        async fn insert_inbox(
            conn: &mut <$db as sqlx::Database>::Connection,
            entry: &$crate::InboxEntry,
            outcome: &str,
            detail: Option<&str>,
        ) -> $crate::StoreResult<String> {
            let id = $crate::sql::new_id("inb");
            sqlx::query(
                "INSERT INTO payment_inbox \
                 (id, provider, received_at, headers, body, outcome, detail) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&id)
            .bind(&entry.provider)
            .bind(entry.received_at)
            .bind(&entry.headers)
            .bind(&entry.body)
            .bind(outcome)
            .bind(detail)
            .execute(&mut *conn)
            .await?;
            Ok(id)
        }

        /// Everything one event implies, on the caller's transaction: the raw request, the
        /// dedupe key, the state change, ledger postings and the announcement. An unknown
        /// order returns `UnknownOrder` and the caller undoes its savepoint.
        async fn apply_one(
            conn: &mut <$db as sqlx::Database>::Connection,
            inbox_id: &str,
            event: $crate::IncomingEvent,
            rules: &dyn $crate::PaymentRules,
            now: time::OffsetDateTime,
        ) -> $crate::StoreResult<$crate::PaymentOutcome> {
            use $crate::{PaymentOutcome, TransactionStatus, Transition};
            if event.is_test {
                finish_inbox(conn, inbox_id, "test", None).await?;
                return Ok(PaymentOutcome::Test);
            }

            // The dedupe key first: a repeated event stops here.
            let event_id = $crate::sql::new_id("evt");
            let inserted: Option<(String,)> = sqlx::query_as(
                "INSERT INTO transaction_events (id, provider, provider_transaction_id, \
             status, raw_status, amount, effect, inbox_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'received', $7, $8) \
             ON CONFLICT (provider, provider_transaction_id, status) DO NOTHING \
             RETURNING id",
            )
            .bind(&event_id)
            .bind(&event.provider)
            .bind(&event.provider_transaction_id)
            .bind(&event.status)
            .bind(&event.raw_status)
            .bind(event.amount)
            .bind(inbox_id)
            .bind(now)
            .fetch_optional(&mut *conn)
            .await?;
            if inserted.is_none() {
                let earlier: Option<(Option<String>,)> = sqlx::query_as(
                    "SELECT transaction_id FROM transaction_events WHERE provider = $1 \
                 AND provider_transaction_id = $2 AND status = $3",
                )
                .bind(&event.provider)
                .bind(&event.provider_transaction_id)
                .bind(&event.status)
                .fetch_optional(&mut *conn)
                .await?;
                let transaction_id = earlier.and_then(|(t,)| t);
                finish_inbox(conn, inbox_id, "duplicate", transaction_id.as_deref()).await?;
                return Ok(PaymentOutcome::Duplicate { transaction_id });
            }

            let found = sqlx::query_as::<_, $crate::Transaction>(concat!(
                "SELECT * FROM transactions WHERE order_ref = $1 ",
                $lock
            ))
            .bind(&event.order_ref)
            .fetch_optional(&mut *conn)
            .await?;

            let (transaction, created) = match found {
                Some(t) => (t, false),
                None => {
                    // A paid event for a terminal's static QR reference creates the
                    // transaction; anything else for an unknown order is left for the
                    // provider to retry (the event row is rolled back with it).
                    let terminal: Option<(String, String)> = if event.status == "paid" {
                        sqlx::query_as(
                            "SELECT t.id, o.merchant_id FROM terminals t \
                         JOIN outlets o ON o.id = t.outlet_id WHERE t.payment_ref = $1",
                        )
                        .bind(&event.order_ref)
                        .fetch_optional(&mut *conn)
                        .await?
                    } else {
                        None
                    };
                    let Some((terminal_id, merchant_id)) = terminal else {
                        return Ok(PaymentOutcome::UnknownOrder);
                    };
                    let t = sqlx::query_as::<_, $crate::Transaction>(
                        "INSERT INTO transactions (id, order_ref, terminal_id, merchant_id, \
                     amount, status, source, expires_at_ms, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, 'pending', 'static_qr', $6, $7, $7) \
                     RETURNING *",
                    )
                    .bind($crate::sql::new_id("trx"))
                    .bind(format!(
                        "{}:{}",
                        event.provider, event.provider_transaction_id
                    ))
                    .bind(terminal_id)
                    .bind(merchant_id)
                    .bind(event.amount)
                    .bind(now.unix_timestamp() * 1000)
                    .bind(now)
                    .fetch_one(&mut *conn)
                    .await?;
                    (t, true)
                }
            };

            let transition = if event.status == "paid" && event.amount != transaction.amount {
                None
            } else {
                Some(rules.transition(transaction.status, &event.status))
            };
            let (effect, outcome) = match transition {
                None => (
                    "amount_mismatch",
                    PaymentOutcome::AmountMismatch {
                        transaction_id: transaction.id.clone(),
                    },
                ),
                Some(Transition::Ignore) => (
                    "stale",
                    PaymentOutcome::Stale {
                        transaction_id: transaction.id.clone(),
                    },
                ),
                Some(Transition::To {
                    status,
                    flag_paid_after_expiry,
                }) => {
                    let paid_at =
                        (status == TransactionStatus::Paid).then(|| event.paid_at.unwrap_or(now));
                    sqlx::query(
                        "UPDATE transactions SET status = $1, provider = $2, \
                     provider_transaction_id = $3, issuer = COALESCE($4, issuer), \
                     paid_at = COALESCE($5, paid_at), \
                     paid_after_expiry = (paid_after_expiry OR $6), updated_at = $7 \
                     WHERE id = $8",
                    )
                    .bind(status.as_str())
                    .bind(&event.provider)
                    .bind(&event.provider_transaction_id)
                    .bind(&event.issuer)
                    .bind(paid_at)
                    .bind(flag_paid_after_expiry)
                    .bind(now)
                    .bind(&transaction.id)
                    .execute(&mut *conn)
                    .await?;
                    let mut announcement_id = None;
                    match status {
                        TransactionStatus::Paid => {
                            post_ledger(conn, &transaction, rules, now, false).await?;
                            announcement_id =
                                Some(queue_announcement(conn, &transaction, rules, now).await?.id);
                        }
                        TransactionStatus::Refunded => {
                            post_ledger(conn, &transaction, rules, now, true).await?;
                        }
                        _ => {}
                    }
                    let effect = if flag_paid_after_expiry {
                        "paid_after_expiry"
                    } else {
                        "applied"
                    };
                    (
                        effect,
                        PaymentOutcome::Applied {
                            transaction_id: transaction.id.clone(),
                            status,
                            announcement_id,
                        },
                    )
                }
            };
            if created {
                insert_internal_event(conn, &transaction.id, "created", event.amount, now).await?;
            }
            sqlx::query(
                "UPDATE transaction_events SET transaction_id = $1, effect = $2 WHERE id = $3",
            )
            .bind(&transaction.id)
            .bind(effect)
            .bind(&event_id)
            .execute(&mut *conn)
            .await?;
            finish_inbox(conn, inbox_id, outcome.as_str(), Some(&transaction.id)).await?;
            Ok(outcome)
        }

        /// Records an attempt's result on a pending announcement; `false` if there is no
        /// such announcement. A result for an announcement no longer pending changes nothing.
        async fn record_one_delivery(
            conn: &mut <$db as sqlx::Database>::Connection,
            announcement_id: &str,
            result: $crate::DeliveryResult,
        ) -> $crate::StoreResult<bool> {
            use $crate::DeliveryResult;
            let now = $crate::sql::now();
            let (status, error, next_ms, delivered_at, attempted): (
                &str,
                Option<String>,
                Option<i64>,
                Option<time::OffsetDateTime>,
                i64,
            ) = match result {
                DeliveryResult::Delivered => ("delivered", None, None, Some(now), 1),
                DeliveryResult::Retry {
                    error,
                    next_attempt_at_ms,
                } => ("pending", Some(error), Some(next_attempt_at_ms), None, 1),
                DeliveryResult::Failed { error } => ("failed", Some(error), None, None, 1),
                DeliveryResult::Expired => ("expired", None, None, None, 0),
                DeliveryResult::Deferred { next_attempt_at_ms } => {
                    ("pending", None, Some(next_attempt_at_ms), None, 0)
                }
            };
            let done = sqlx::query(
                "UPDATE announcements SET status = $1, attempts = attempts + $7, \
                 last_error = COALESCE($2, last_error), \
                 next_attempt_at_ms = COALESCE($3, next_attempt_at_ms), \
                 delivered_at = COALESCE($4, delivered_at), last_attempt_at = $5, \
                 updated_at = $5 WHERE id = $6 AND status = 'pending'",
            )
            .bind(status)
            .bind(error)
            .bind(next_ms)
            .bind(delivered_at)
            .bind(now)
            .bind(announcement_id)
            .bind(attempted)
            .execute(&mut *conn)
            .await?;
            if done.rows_affected() > 0 {
                return Ok(true);
            }
            let exists: Option<(String,)> =
                sqlx::query_as("SELECT id FROM announcements WHERE id = $1")
                    .bind(announcement_id)
                    .fetch_optional(&mut *conn)
                    .await?;
            Ok(exists.is_some())
        }

        /// `Conflict` if another terminal (not `except`) already uses this static QR
        /// reference.
        async fn payment_ref_free(
            conn: &mut <$db as sqlx::Database>::Connection,
            payment_ref: &str,
            except: Option<&str>,
        ) -> $crate::StoreResult<()> {
            let taken: Option<(String,)> = sqlx::query_as(
                "SELECT id FROM terminals WHERE payment_ref = $1 AND ($2 IS NULL OR id <> $2)",
            )
            .bind(payment_ref)
            .bind(except)
            .fetch_optional(&mut *conn)
            .await?;
            match taken {
                Some((other,)) => Err($crate::StoreError::conflict(
                    "payment_ref_taken",
                    Some("payment_ref"),
                    format!("terminal {other} already uses payment_ref {payment_ref}"),
                )),
                None => Ok(()),
            }
        }

        async fn finish_inbox(
            conn: &mut <$db as sqlx::Database>::Connection,
            inbox_id: &str,
            outcome: &str,
            transaction_id: Option<&str>,
        ) -> $crate::StoreResult<()> {
            sqlx::query("UPDATE payment_inbox SET outcome = $1, transaction_id = $2 WHERE id = $3")
                .bind(outcome)
                .bind(transaction_id)
                .bind(inbox_id)
                .execute(&mut *conn)
                .await?;
            Ok(())
        }

        /// A timeline entry of Gema's own (created, expired): provider `gema`, keyed by the
        /// transaction id.
        async fn insert_internal_event(
            conn: &mut <$db as sqlx::Database>::Connection,
            transaction_id: &str,
            status: &str,
            amount: i64,
            now: time::OffsetDateTime,
        ) -> $crate::StoreResult<()> {
            sqlx::query(
                "INSERT INTO transaction_events (id, transaction_id, provider, \
                 provider_transaction_id, status, raw_status, amount, effect, created_at) \
                 VALUES ($1, $2, 'gema', $2, $3, $3, $4, $3, $5) \
                 ON CONFLICT (provider, provider_transaction_id, status) DO NOTHING",
            )
            .bind($crate::sql::new_id("evt"))
            .bind(transaction_id)
            .bind(status)
            .bind(amount)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        /// Gross income, platform fee and merchant payable for a paid transaction, or their
        /// reversal for a refund. Each posting's external id makes it idempotent.
        async fn post_ledger(
            conn: &mut <$db as sqlx::Database>::Connection,
            transaction: &$crate::Transaction,
            rules: &dyn $crate::PaymentRules,
            now: time::OffsetDateTime,
            reversal: bool,
        ) -> $crate::StoreResult<()> {
            use $crate::LedgerEntryType::*;
            let (fee, payable) = rules.split_fee(transaction.amount);
            let mut rows = Vec::with_capacity(3);
            for (entry_type, amount) in [
                (GrossIncome, transaction.amount),
                (PlatformFee, fee),
                (MerchantPayable, payable),
            ] {
                if reversal {
                    let original: Option<(String,)> =
                        sqlx::query_as("SELECT id FROM ledger_entries WHERE external_id = $1")
                            .bind(format!("{}:{}", transaction.id, entry_type.as_str()))
                            .fetch_optional(&mut *conn)
                            .await?;
                    let Some((original,)) = original else {
                        continue; // nothing was posted, nothing to reverse
                    };
                    rows.push((
                        entry_type,
                        format!("{}:refund:{}", transaction.id, entry_type.as_str()),
                        -amount,
                        Some(original),
                    ));
                } else {
                    rows.push((
                        entry_type,
                        format!("{}:{}", transaction.id, entry_type.as_str()),
                        amount,
                        None,
                    ));
                }
            }
            if rows.is_empty() {
                return Ok(());
            }
            // One statement for all postings (each row 8 parameters).
            let mut sql = String::from(
                "INSERT INTO ledger_entries (id, transaction_id, merchant_id, entry_type, \
                 amount, external_id, reverses_id, created_at) VALUES ",
            );
            for i in 0..rows.len() {
                let p = i * 8;
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                    p + 1,
                    p + 2,
                    p + 3,
                    p + 4,
                    p + 5,
                    p + 6,
                    p + 7,
                    p + 8
                ));
            }
            sql.push_str(" ON CONFLICT (external_id) DO NOTHING");
            let mut query = sqlx::query(&sql);
            for (entry_type, external_id, amount, reverses) in rows {
                query = query
                    .bind($crate::sql::new_id("led"))
                    .bind(&transaction.id)
                    .bind(&transaction.merchant_id)
                    .bind(entry_type.as_str())
                    .bind(amount)
                    .bind(external_id)
                    .bind(reverses)
                    .bind(now);
            }
            query.execute(&mut *conn).await?;
            Ok(())
        }

        /// An announcement for a paid transaction, to the device bound to its terminal now;
        /// with no active bound device it is recorded as `no_device`, not dropped.
        async fn queue_announcement(
            conn: &mut <$db as sqlx::Database>::Connection,
            transaction: &$crate::Transaction,
            rules: &dyn $crate::PaymentRules,
            now: time::OffsetDateTime,
        ) -> $crate::StoreResult<$crate::Announcement> {
            // The bound device and its next announcement sequence number, in one query.
            let device: Option<(String, i64)> = sqlx::query_as(
                "SELECT d.id, COALESCE((SELECT MAX(a.sequence) FROM announcements a \
                 WHERE a.device_id = d.id), 0) + 1 \
                 FROM devices d WHERE d.terminal_id = $1 AND d.status = 'active'",
            )
            .bind(&transaction.terminal_id)
            .fetch_optional(&mut *conn)
            .await?;
            let (device_id, sequence) = match device {
                Some((id, sequence)) => (Some(id), sequence),
                None => (None, 0),
            };
            let status = if device_id.is_some() {
                $crate::AnnouncementStatus::Pending
            } else {
                $crate::AnnouncementStatus::NoDevice
            };
            let now_ms = now.unix_timestamp() * 1000 + i64::from(now.millisecond());
            Ok(sqlx::query_as::<_, $crate::Announcement>(
                "INSERT INTO announcements (id, transaction_id, terminal_id, device_id, status, \
                 sequence, next_attempt_at_ms, expires_at_ms, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $9, $6, $7, $8, $8) RETURNING *",
            )
            .bind($crate::sql::new_id("ann"))
            .bind(&transaction.id)
            .bind(&transaction.terminal_id)
            .bind(device_id)
            .bind(status.as_str())
            .bind(now_ms)
            .bind(now_ms + rules.announcement_ttl_ms())
            .bind(now)
            .bind(sequence)
            .fetch_one(&mut *conn)
            .await?)
        }
    };
}
pub(crate) use payment_helpers;

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
                self.apply_payment_events_and_deliveries(items, rules, Vec::new())
                    .await
            }

            async fn apply_payment_events_and_deliveries(
                &self,
                items: Vec<($crate::InboxEntry, $crate::IncomingEvent)>,
                rules: &dyn $crate::PaymentRules,
                deliveries: Vec<(String, $crate::DeliveryResult)>,
            ) -> $crate::StoreResult<Vec<$crate::StoreResult<$crate::PaymentOutcome>>> {
                let mut failure = match self.apply_in_one_transaction(&items, rules, &deliveries).await {
                    Ok(outcomes) => return Ok(outcomes.into_iter().map(Ok).collect()),
                    Err(err) => err,
                };
                if !deliveries.is_empty() {
                    // Record the results on their own (if they fail too, the announcements
                    // stay pending: the relay re-sends and the device dedupes), then try the
                    // events as a batch again.
                    if let Err(err) = self.record_deliveries(deliveries).await {
                        tracing::error!(error = %err, "recording delivery results failed");
                    }
                    failure = match self.apply_in_one_transaction(&items, rules, &[]).await {
                        Ok(outcomes) => return Ok(outcomes.into_iter().map(Ok).collect()),
                        Err(err) => err,
                    };
                }
                if items.len() == 1 {
                    return Ok(vec![Err(self.record_failed(&items[0].0, failure).await)]);
                }
                tracing::warn!(
                    error = %failure,
                    events = items.len(),
                    "a batch of payment events failed; applying them one by one"
                );
                // One transaction per event, so the event that fails fails alone.
                let mut results = Vec::with_capacity(items.len());
                for item in &items {
                    results.push(self.apply_alone(item, rules).await);
                }
                Ok(results)
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

            async fn next_announcement_due_ms(
                &self,
                after_ms: i64,
            ) -> $crate::StoreResult<Option<i64>> {
                let (next,): (Option<i64>,) = sqlx::query_as(
                    "SELECT MIN(next_attempt_at_ms) FROM announcements \
                     WHERE status = 'pending' AND next_attempt_at_ms > $1 \
                     AND device_id IS NOT NULL",
                )
                .bind(after_ms)
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
                let delivered = record_other_deliveries(&mut *tx, &results).await?;
                mark_delivered(&mut *tx, &delivered).await?;
                tx.commit().await?;
                Ok(())
            }
        }

        impl $store {
            /// Applies events, and records delivery results, in one database transaction (one
            /// commit): what the batch writes is staged and written by `flush_staged`, so a
            /// batch costs a few statements whatever its size. Any failing statement fails the
            /// whole batch, which is rolled back.
            async fn apply_in_one_transaction(
                &self,
                items: &[($crate::InboxEntry, $crate::IncomingEvent)],
                rules: &dyn $crate::PaymentRules,
                deliveries: &[(String, $crate::DeliveryResult)],
            ) -> $crate::StoreResult<Vec<$crate::PaymentOutcome>> {
                let now = $crate::sql::now();
                let mut tx = self.begin_batch().await?;
                let applied = async {
                    let mut staged = $crate::sql_payments::Staged::default();
                    Self::prefetch_batch(&mut tx, &mut staged, items).await?;
                    let mut outcomes = Vec::with_capacity(items.len());
                    for (item, (_, event)) in items.iter().enumerate() {
                        let inbox_id = $crate::sql::new_id("inb");
                        let outcome =
                            stage_event(&mut *tx, &mut staged, &inbox_id, event, rules, now)
                                .await?;
                        let detail = (outcome == $crate::PaymentOutcome::UnknownOrder)
                            .then(|| event.order_ref.clone());
                        staged.inbox.push($crate::sql_payments::InboxRow {
                            transaction_id: $crate::sql_payments::transaction_of(&outcome),
                            id: inbox_id,
                            item,
                            outcome: outcome.as_str(),
                            detail,
                        });
                        outcomes.push(outcome);
                    }
                    staged.delivered = record_other_deliveries(&mut *tx, deliveries).await?;
                    flush_staged(&mut *tx, &mut staged, items, now).await?;
                    Ok::<_, $crate::StoreError>(outcomes)
                }
                .await;
                match applied {
                    Ok(outcomes) => {
                        Self::commit_batch(tx).await?;
                        Ok(outcomes)
                    }
                    Err(err) => {
                        Self::abort_batch(tx).await;
                        Err(err)
                    }
                }
            }

            /// One event in a transaction of its own; if it fails, its raw request is kept.
            async fn apply_alone(
                &self,
                item: &($crate::InboxEntry, $crate::IncomingEvent),
                rules: &dyn $crate::PaymentRules,
            ) -> $crate::StoreResult<$crate::PaymentOutcome> {
                let one = std::slice::from_ref(item);
                match self.apply_in_one_transaction(one, rules, &[]).await {
                    Ok(mut outcome) => outcome.pop().ok_or_else(|| {
                        $crate::StoreError::Corrupt("no outcome for an event".into())
                    }),
                    Err(err) => Err(self.record_failed(&item.0, err).await),
                }
            }

            /// Keeps the raw request of an event whose application failed, and returns the
            /// failure (or, if even that cannot be written, the original failure).
            async fn record_failed(
                &self,
                entry: &$crate::InboxEntry,
                err: $crate::StoreError,
            ) -> $crate::StoreError {
                let detail = err.to_string();
                if let Ok(mut conn) = self.write.acquire().await {
                    if let Err(inbox_err) = insert_inbox(&mut *conn, entry, "failed", Some(&detail)).await {
                        tracing::error!(error = %inbox_err, "could not record a failed payment event");
                    }
                }
                err
            }
        }
    };
}
pub(crate) use impl_payment_store;

/// Helpers shared by the payment queries of both backends, generic over the connection.
macro_rules! payment_helpers {
    (
        $db:ty,
        lock = $lock:literal,
        placeholders = $placeholders:ident,
        writes = $writes:ident
    ) => {
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

        /// Works out what one event does, on the batch's transaction: reads (and locks) its
        /// transaction, updates it, and stages the event, ledger and announcement rows. An
        /// unknown order writes nothing, so the provider's retry applies once it exists.
        async fn stage_event(
            conn: &mut <$db as sqlx::Database>::Connection,
            staged: &mut $crate::sql_payments::Staged,
            inbox_id: &str,
            event: &$crate::IncomingEvent,
            rules: &dyn $crate::PaymentRules,
            now: time::OffsetDateTime,
        ) -> $crate::StoreResult<$crate::PaymentOutcome> {
            use $crate::{PaymentOutcome, TransactionStatus, Transition};
            if event.is_test {
                return Ok(PaymentOutcome::Test);
            }
            let key = (
                event.provider.clone(),
                event.provider_transaction_id.clone(),
                event.status.clone(),
            );
            // Recorded before (read after the batch's row locks), or earlier in this batch.
            // The unique key on transaction_events stays the last word: should anything slip
            // past this check, the insert fails rather than apply twice.
            if let Some(earlier) = staged.known.get(&key) {
                return Ok(PaymentOutcome::Duplicate {
                    transaction_id: (!earlier.is_empty()).then(|| earlier.clone()),
                });
            }
            let event_id = $crate::sql::new_id("evt");
            let found = staged.transactions.get(&event.order_ref).cloned();

            let (transaction, created) = match found {
                Some(t) => (t, false),
                None => {
                    // A paid event for a terminal's static QR reference creates the
                    // transaction; anything else for an unknown order is left for the
                    // provider to retry.
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
                    // Written with the batch's other rows (the last state of each
                    // transaction); a later event of this batch for the same order sees it.
                    let updated = $crate::Transaction {
                        status,
                        provider: Some(event.provider.clone()),
                        provider_transaction_id: Some(event.provider_transaction_id.clone()),
                        issuer: event.issuer.clone().or(transaction.issuer.clone()),
                        paid_at: paid_at.or(transaction.paid_at),
                        paid_after_expiry: transaction.paid_after_expiry || flag_paid_after_expiry,
                        updated_at: now,
                        ..transaction.clone()
                    };
                    staged
                        .updates
                        .insert(transaction.id.clone(), updated.clone());
                    if !created {
                        staged
                            .transactions
                            .insert(event.order_ref.clone(), updated.clone());
                    }
                    let mut announcement_id = None;
                    let mut delivery = None;
                    match status {
                        TransactionStatus::Paid => {
                            staged.stage_ledger(&transaction, rules, false, Vec::new());
                            let (id, to_device) =
                                stage_announcement(conn, staged, &updated, rules, now).await?;
                            announcement_id = Some(id);
                            delivery = to_device.map(Box::new);
                        }
                        TransactionStatus::Refunded => {
                            // The reversal names the original postings, which may be staged
                            // in this very batch: write those first.
                            flush_ledger(conn, staged, now).await?;
                            let originals: Vec<(String, String)> = sqlx::query_as(
                                "SELECT external_id, id FROM ledger_entries \
                                 WHERE transaction_id = $1 AND reverses_id IS NULL",
                            )
                            .bind(&transaction.id)
                            .fetch_all(&mut *conn)
                            .await?;
                            staged.stage_ledger(&transaction, rules, true, originals);
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
                            delivery,
                        },
                    )
                }
            };
            staged.events.push($crate::sql_payments::EventRow {
                id: event_id,
                transaction_id: transaction.id.clone(),
                event: event.clone(),
                effect,
                inbox_id: inbox_id.to_owned(),
            });
            if created {
                insert_internal_event(conn, &transaction.id, "created", event.amount, now).await?;
            }
            staged.known.insert(key, transaction.id);
            Ok(outcome)
        }

        /// Reads what a batch's events need, a few statements for the whole batch: their
        /// transactions (locked, in order_ref order so concurrent nodes lock alike), then which
        /// of the events were recorded before (after the locks, so a copy committed by the
        /// lock's previous holder is seen), then the devices bound to those terminals.
        #[allow(dead_code)] // SQLite reads a batch its own way (`SqliteStore::prefetch_batch`)
        async fn prefetch(
            conn: &mut <$db as sqlx::Database>::Connection,
            staged: &mut $crate::sql_payments::Staged,
            items: &[($crate::InboxEntry, $crate::IncomingEvent)],
        ) -> $crate::StoreResult<()> {
            use $crate::sql_payments::{
                Placeholders, RECORDED_KEYS, insert_chunks, insert_sql, push_params,
            };
            let (events, orders) = $crate::sql_payments::batch_keys(items);
            for chunk in insert_chunks(&orders) {
                let mut sql = String::from("SELECT * FROM transactions WHERE order_ref IN (");
                push_params(&mut sql, Placeholders::$placeholders, 1, chunk.len());
                sql.push_str(concat!(") ORDER BY order_ref ", $lock));
                let mut query = sqlx::query_as::<_, $crate::Transaction>(&sql);
                for order in chunk {
                    query = query.bind(*order);
                }
                for t in query.fetch_all(&mut *conn).await? {
                    staged.transactions.insert(t.order_ref.clone(), t);
                }
            }
            for chunk in insert_chunks(&events) {
                let sql = insert_sql(
                    RECORDED_KEYS.0,
                    Placeholders::$placeholders,
                    chunk.len(),
                    3,
                    RECORDED_KEYS.1,
                );
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
            let terminals: std::collections::BTreeSet<&str> = staged
                .transactions
                .values()
                .map(|t| t.terminal_id.as_str())
                .collect();
            let terminals: Vec<String> = terminals.into_iter().map(str::to_owned).collect();
            let terminals: Vec<&str> = terminals.iter().map(String::as_str).collect();
            prefetch_devices(conn, staged, &terminals).await
        }

        /// The active device bound to each terminal and its next announcement sequence
        /// (`None` for a terminal without one).
        async fn prefetch_devices(
            conn: &mut <$db as sqlx::Database>::Connection,
            staged: &mut $crate::sql_payments::Staged,
            terminals: &[&str],
        ) -> $crate::StoreResult<()> {
            use $crate::sql_payments::{Placeholders, insert_chunks, push_params};
            for chunk in insert_chunks(terminals) {
                let mut sql = format!("{} (", $crate::sql_payments::BOUND_DEVICES);
                push_params(&mut sql, Placeholders::$placeholders, 1, chunk.len());
                sql.push(')');
                let mut query = sqlx::query_as::<_, (String, String, i64, Option<String>)>(&sql);
                for terminal in chunk {
                    query = query.bind(*terminal);
                    staged.devices.insert((*terminal).to_owned(), None);
                }
                for (terminal, device, next, desired_config) in query.fetch_all(&mut *conn).await? {
                    staged.devices.insert(
                        terminal,
                        Some($crate::sql_payments::BoundDevice {
                            id: device,
                            next_sequence: next,
                            desired_config,
                        }),
                    );
                }
            }
            Ok(())
        }

        /// An announcement for a paid transaction, staged; the device is the one bound to its
        /// terminal now, the sequence one past the device's last (counting this batch's).
        /// Returns its id and, when a device is bound, what to deliver.
        async fn stage_announcement(
            conn: &mut <$db as sqlx::Database>::Connection,
            staged: &mut $crate::sql_payments::Staged,
            transaction: &$crate::Transaction,
            rules: &dyn $crate::PaymentRules,
            now: time::OffsetDateTime,
        ) -> $crate::StoreResult<(String, Option<$crate::AnnouncementDelivery>)> {
            if !staged.devices.contains_key(&transaction.terminal_id) {
                prefetch_devices(conn, staged, &[transaction.terminal_id.as_str()]).await?;
            }
            let device = staged
                .devices
                .get_mut(&transaction.terminal_id)
                .and_then(Option::as_mut)
                .map(|device| {
                    let sequence = device.next_sequence;
                    device.next_sequence += 1;
                    (device.id.clone(), sequence, device.desired_config.clone())
                });
            let id = $crate::sql::new_id("ann");
            let expires_at_ms = $crate::sql_payments::unix_ms(now) + rules.announcement_ttl_ms();
            let delivery =
                device.map(
                    |(device_id, sequence, desired_config)| $crate::AnnouncementDelivery {
                        id: id.clone(),
                        transaction_id: transaction.id.clone(),
                        device_id,
                        sequence,
                        attempts: 0,
                        expires_at_ms,
                        amount: transaction.amount,
                        issuer: transaction.issuer.clone(),
                        provider: transaction.provider.clone(),
                        paid_at: transaction.paid_at,
                        desired_config,
                    },
                );
            staged
                .announcements
                .push($crate::sql_payments::AnnouncementRow {
                    id: id.clone(),
                    transaction_id: transaction.id.clone(),
                    terminal_id: transaction.terminal_id.clone(),
                    device_id: delivery.as_ref().map(|d| d.device_id.clone()),
                    sequence: delivery.as_ref().map_or(0, |d| d.sequence),
                    expires_at_ms,
                });
            Ok((id, delivery))
        }

        /// Writes the ledger postings staged so far (a refund reads them back).
        async fn flush_ledger(
            conn: &mut <$db as sqlx::Database>::Connection,
            staged: &mut $crate::sql_payments::Staged,
            now: time::OffsetDateTime,
        ) -> $crate::StoreResult<()> {
            use $crate::sql_payments::{Piece, insert_chunks};
            let rows = std::mem::take(&mut staged.ledger);
            for chunk in insert_chunks(&rows) {
                execute_piece(conn, &Piece::Ledger(chunk), now).await?;
            }
            Ok(())
        }

        /// One piece as a statement of its own (outside a batch's one-query write).
        async fn execute_piece(
            conn: &mut <$db as sqlx::Database>::Connection,
            piece: &$crate::sql_payments::Piece<'_>,
            now: time::OffsetDateTime,
        ) -> $crate::StoreResult<()> {
            let sql = piece.sql($crate::sql_payments::Placeholders::$placeholders, 1);
            bind_piece(sqlx::query(&sql), piece, &[], now)
                .execute(&mut *conn)
                .await?;
            Ok(())
        }

        /// Writes everything a batch staged: each transaction's new state, then the inbox
        /// rows (events name them), the events, the ledger postings and the announcements,
        /// in multi-row statements sent as one query ([`BatchWrite`]): one round trip to the
        /// connection's thread or the server, whatever the batch holds.
        async fn flush_staged(
            conn: &mut <$db as sqlx::Database>::Connection,
            staged: &mut $crate::sql_payments::Staged,
            items: &[($crate::InboxEntry, $crate::IncomingEvent)],
            now: time::OffsetDateTime,
        ) -> $crate::StoreResult<()> {
            use $crate::sql_payments::{Piece, insert_chunks};
            let ledger = std::mem::take(&mut staged.ledger);
            let updates: Vec<&$crate::Transaction> = staged.updates.values().collect();
            let mut pieces = Vec::new();
            pieces.extend(insert_chunks(&updates).map(Piece::Transactions));
            pieces.extend(insert_chunks(&staged.inbox).map(Piece::Inbox));
            pieces.extend(insert_chunks(&staged.events).map(Piece::Events));
            pieces.extend(insert_chunks(&ledger).map(Piece::Ledger));
            pieces.extend(insert_chunks(&staged.announcements).map(Piece::Announcements));
            pieces.extend(insert_chunks(&staged.delivered).map(Piece::Delivered));
            let sql = $crate::sql_payments::batch_write_sql(
                &pieces,
                $crate::sql_payments::Placeholders::$placeholders,
                $crate::sql_payments::BatchWrite::$writes,
            );
            let mut query = sqlx::query(&sql);
            for piece in &pieces {
                query = bind_piece(query, piece, items, now);
            }
            query.execute(&mut *conn).await?;
            Ok(())
        }

        /// Binds one piece's rows, in the order of [`Piece::sql`]'s parameters.
        fn bind_piece<'q>(
            mut query: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>>,
            piece: &$crate::sql_payments::Piece<'q>,
            items: &'q [($crate::InboxEntry, $crate::IncomingEvent)],
            now: time::OffsetDateTime,
        ) -> sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>> {
            use $crate::sql_payments::Piece;
            match piece {
                Piece::Transactions(rows) => {
                    for t in *rows {
                        query = query
                            .bind(&t.id)
                            .bind(t.status.as_str())
                            .bind(&t.provider)
                            .bind(&t.provider_transaction_id)
                            .bind(&t.issuer)
                            .bind(t.paid_at)
                            .bind(t.paid_after_expiry)
                            .bind(t.updated_at);
                    }
                }
                Piece::Inbox(rows) => {
                    for row in *rows {
                        let entry = &items[row.item].0;
                        query = query
                            .bind(&row.id)
                            .bind(&entry.provider)
                            .bind(entry.received_at)
                            .bind(&entry.headers)
                            .bind(&entry.body)
                            .bind(row.outcome)
                            .bind(&row.detail)
                            .bind(&row.transaction_id);
                    }
                }
                Piece::Events(rows) => {
                    for row in *rows {
                        query = query
                            .bind(&row.id)
                            .bind(&row.transaction_id)
                            .bind(&row.event.provider)
                            .bind(&row.event.provider_transaction_id)
                            .bind(&row.event.status)
                            .bind(&row.event.raw_status)
                            .bind(row.event.amount)
                            .bind(row.effect)
                            .bind(&row.inbox_id)
                            .bind(now);
                    }
                }
                Piece::Ledger(rows) => {
                    for row in *rows {
                        query = query
                            .bind(&row.id)
                            .bind(&row.transaction_id)
                            .bind(&row.merchant_id)
                            .bind(row.entry_type)
                            .bind(row.amount)
                            .bind(&row.external_id)
                            .bind(&row.reverses_id)
                            .bind(now);
                    }
                }
                Piece::Delivered(ids) => {
                    query = query.bind(now).bind(now).bind(now);
                    for id in *ids {
                        query = query.bind(id);
                    }
                }
                Piece::Announcements(rows) => {
                    let now_ms = $crate::sql_payments::unix_ms(now);
                    for row in *rows {
                        let status = if row.device_id.is_some() {
                            $crate::AnnouncementStatus::Pending
                        } else {
                            $crate::AnnouncementStatus::NoDevice
                        };
                        query = query
                            .bind(&row.id)
                            .bind(&row.transaction_id)
                            .bind(&row.terminal_id)
                            .bind(&row.device_id)
                            .bind(status.as_str())
                            .bind(row.sequence)
                            .bind(now_ms)
                            .bind(row.expires_at_ms)
                            .bind(now)
                            .bind(now);
                    }
                }
            }
            query
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

        /// Records the results that are not plain deliveries, one by one, and returns the ids
        /// of those that are (they share one statement: [`Piece::Delivered`]).
        async fn record_other_deliveries(
            conn: &mut <$db as sqlx::Database>::Connection,
            results: &[(String, $crate::DeliveryResult)],
        ) -> $crate::StoreResult<Vec<String>> {
            let mut delivered = Vec::new();
            for (id, result) in results {
                match result {
                    $crate::DeliveryResult::Delivered => delivered.push(id.clone()),
                    other => {
                        record_one_delivery(&mut *conn, id, other.clone()).await?;
                    }
                }
            }
            Ok(delivered)
        }

        /// Marks pending announcements delivered, the same as `record_one_delivery` with
        /// `Delivered` for each id, in a few statements.
        async fn mark_delivered(
            conn: &mut <$db as sqlx::Database>::Connection,
            ids: &[String],
        ) -> $crate::StoreResult<()> {
            use $crate::sql_payments::{Piece, insert_chunks};
            let now = $crate::sql::now();
            for chunk in insert_chunks(ids) {
                execute_piece(conn, &Piece::Delivered(chunk), now).await?;
            }
            Ok(())
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
            let now_ms = $crate::sql_payments::unix_ms(now);
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

// ---- staging for the batch apply (plain Rust, shared by both backends) ----

/// Splits rows into multi-row INSERTs of 64, 16, 4 or 1 rows. A batch of any size then uses
/// at most four statement shapes per table, so the prepared-statement cache keeps them
/// instead of parsing a new statement for every batch size. (The widest: 64 rows × 10
/// columns, far below SQLite's 32,766 parameters.)
pub(crate) fn insert_chunks<T>(rows: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        let size = [64, 16, 4, 1]
            .into_iter()
            .find(|size| *size <= rest.len())?;
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        Some(chunk)
    })
}

/// The events of a batch that touch the database (not test notifications), and their order
/// references, sorted and without repeats.
pub(crate) fn batch_keys(
    items: &[(crate::InboxEntry, crate::IncomingEvent)],
) -> (Vec<&crate::IncomingEvent>, Vec<&str>) {
    let events: Vec<&crate::IncomingEvent> = items
        .iter()
        .map(|(_, e)| e)
        .filter(|e| !e.is_test)
        .collect();
    let orders: std::collections::BTreeSet<&str> =
        events.iter().map(|e| e.order_ref.as_str()).collect();
    (events, orders.into_iter().collect())
}

/// Which of the keys `(provider, provider id, status)` in a VALUES list were recorded before:
/// the SQL before and after the list. A join with the keys, not a row-value IN, which SQLite
/// answers by a scan.
pub(crate) const RECORDED_KEYS: (&str, &str) = (
    "SELECT e.provider, e.provider_transaction_id, e.status, \
     COALESCE(e.transaction_id, '') FROM (VALUES ",
    ") v JOIN transaction_events e ON e.provider = v.column1 \
     AND e.provider_transaction_id = v.column2 AND e.status = v.column3",
);

/// The active devices bound to terminals, with each one's next announcement sequence and
/// desired config; followed by a parenthesised list or subquery of terminal ids.
pub(crate) const BOUND_DEVICES: &str = "SELECT d.terminal_id, d.id, \
     COALESCE((SELECT MAX(a.sequence) FROM announcements a WHERE a.device_id = d.id), 0) + 1, \
     c.desired FROM devices d LEFT JOIN device_configs c ON c.device_id = d.id \
     WHERE d.status = 'active' AND d.terminal_id IN";

/// A part of a batch's write: one multi-row statement over some of the staged rows.
pub(crate) enum Piece<'a> {
    /// Transactions the batch changed, set to their final state.
    Transactions(&'a [&'a crate::Transaction]),
    Inbox(&'a [InboxRow]),
    Events(&'a [EventRow]),
    Ledger(&'a [LedgerRow]),
    Announcements(&'a [AnnouncementRow]),
    /// Pending announcements the device acknowledged: marked delivered.
    Delivered(&'a [String]),
}

impl Piece<'_> {
    /// How many parameters [`Self::sql`] has.
    pub fn params(&self) -> usize {
        match self {
            Piece::Transactions(rows) => rows.len() * 8,
            Piece::Inbox(rows) => rows.len() * 8,
            Piece::Events(rows) => rows.len() * 10,
            Piece::Ledger(rows) => rows.len() * 8,
            Piece::Announcements(rows) => rows.len() * 10,
            Piece::Delivered(ids) => 3 + ids.len(),
        }
    }

    /// The statement, its parameters numbered from `first`; they are bound row by row,
    /// column by column.
    pub fn sql(&self, placeholders: Placeholders, first: usize) -> String {
        match self {
            Piece::Transactions(rows) => {
                // One UPDATE for all of them, joined with their new values. PostgreSQL
                // types a VALUES list from its parameters, so they carry casts.
                let mut sql = String::from(
                    "UPDATE transactions SET status = v.column2, provider = v.column3, \
                     provider_transaction_id = v.column4, issuer = v.column5, \
                     paid_at = v.column6, paid_after_expiry = v.column7, \
                     updated_at = v.column8 FROM (VALUES ",
                );
                const TYPES: [&str; 8] = [
                    "text",
                    "text",
                    "text",
                    "text",
                    "text",
                    "timestamptz",
                    "boolean",
                    "timestamptz",
                ];
                for row in 0..rows.len() {
                    sql.push_str(if row == 0 { "(" } else { ", (" });
                    for (column, ty) in TYPES.iter().enumerate() {
                        if column > 0 {
                            sql.push_str(", ");
                        }
                        let n = first + row * TYPES.len() + column;
                        push_param(&mut sql, placeholders, n, ty);
                    }
                    sql.push(')');
                }
                sql.push_str(") AS v WHERE transactions.id = v.column1");
                sql
            }
            Piece::Inbox(rows) => insert_sql_from(
                first,
                "INSERT INTO payment_inbox (id, provider, received_at, headers, body, \
                 outcome, detail, transaction_id) VALUES ",
                placeholders,
                rows.len(),
                8,
                "",
            ),
            Piece::Events(rows) => insert_sql_from(
                first,
                "INSERT INTO transaction_events (id, transaction_id, provider, \
                 provider_transaction_id, status, raw_status, amount, effect, inbox_id, \
                 created_at) VALUES ",
                placeholders,
                rows.len(),
                10,
                "",
            ),
            Piece::Ledger(rows) => insert_sql_from(
                first,
                "INSERT INTO ledger_entries (id, transaction_id, merchant_id, entry_type, \
                 amount, external_id, reverses_id, created_at) VALUES ",
                placeholders,
                rows.len(),
                8,
                " ON CONFLICT (external_id) DO NOTHING",
            ),
            Piece::Announcements(rows) => insert_sql_from(
                first,
                "INSERT INTO announcements (id, transaction_id, terminal_id, device_id, \
                 status, sequence, next_attempt_at_ms, expires_at_ms, created_at, \
                 updated_at) VALUES ",
                placeholders,
                rows.len(),
                10,
                "",
            ),
            Piece::Delivered(ids) => {
                let mut sql = String::from(
                    "UPDATE announcements SET status = 'delivered', attempts = attempts + 1, \
                     (delivered_at, last_attempt_at, updated_at) = (",
                );
                push_params(&mut sql, placeholders, first, 3);
                sql.push_str(") WHERE status = 'pending' AND id IN (");
                push_params(&mut sql, placeholders, first + 3, ids.len());
                sql.push(')');
                sql
            }
        }
    }
}

/// How a batch's writes travel as one query.
#[derive(Debug, Clone, Copy)]
pub(crate) enum BatchWrite {
    /// Statements separated by `;`, then the batch's `COMMIT` (SQLite: sqlx runs every
    /// statement of a query there; see `SqliteStore::begin_batch`).
    Script,
    /// One statement: each write a data-modifying `WITH` clause (PostgreSQL runs them all,
    /// on one snapshot, and checks foreign keys at the statement's end).
    Cte,
}

/// The SQL of a batch's writes, parameters numbered on across the pieces.
pub(crate) fn batch_write_sql(
    pieces: &[Piece<'_>],
    placeholders: Placeholders,
    shape: BatchWrite,
) -> String {
    let mut first = 1;
    let mut parts = Vec::with_capacity(pieces.len());
    for piece in pieces {
        parts.push(piece.sql(placeholders, first));
        first += piece.params();
    }
    match shape {
        BatchWrite::Script => {
            parts.push("COMMIT".into());
            parts.join(";\n")
        }
        BatchWrite::Cte if parts.is_empty() => "SELECT 1".into(),
        BatchWrite::Cte => {
            let clauses: Vec<String> = parts
                .iter()
                .enumerate()
                .map(|(n, sql)| format!("w{n} AS ({sql})"))
                .collect();
            format!("WITH {} SELECT 1", clauses.join(", "))
        }
    }
}

/// How a backend's multi-row INSERTs name their parameters.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Placeholders {
    /// `$1, $2, …` (PostgreSQL).
    Numbered,
    /// `?, ?, …` (SQLite). Binding `$N` parameters in SQLite looks each name up in a list
    /// (`sqlite3_bind_parameter_name`), quadratic in the parameter count: a 256-row insert
    /// spent most of the commit there. Anonymous parameters bind by position.
    Anonymous,
}

/// `head` + `(…), (…)` with one parameter per column of each row + `tail`.
pub(crate) fn insert_sql(
    head: &str,
    placeholders: Placeholders,
    rows: usize,
    columns: usize,
    tail: &str,
) -> String {
    insert_sql_from(1, head, placeholders, rows, columns, tail)
}

/// [`insert_sql`] with its parameters numbered from `first`.
pub(crate) fn insert_sql_from(
    first: usize,
    head: &str,
    placeholders: Placeholders,
    rows: usize,
    columns: usize,
    tail: &str,
) -> String {
    let mut sql = String::with_capacity(head.len() + rows * columns * 5 + tail.len());
    sql.push_str(head);
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        push_params(&mut sql, placeholders, first + row * columns, columns);
        sql.push(')');
    }
    sql.push_str(tail);
    sql
}

/// Appends `count` comma-separated parameters, numbered from `first` where numbered.
pub(crate) fn push_params(
    sql: &mut String,
    placeholders: Placeholders,
    first: usize,
    count: usize,
) {
    for i in 0..count {
        if i > 0 {
            sql.push_str(", ");
        }
        push_param(sql, placeholders, first + i, "");
    }
}

/// Appends parameter `n`, with a cast to `ty` where the parameters are numbered (PostgreSQL)
/// and `ty` is not empty.
fn push_param(sql: &mut String, placeholders: Placeholders, n: usize, ty: &str) {
    use std::fmt::Write;
    match placeholders {
        Placeholders::Numbered if ty.is_empty() => {
            let _ = write!(sql, "${n}");
        }
        Placeholders::Numbered => {
            let _ = write!(sql, "${n}::{ty}");
        }
        Placeholders::Anonymous => sql.push('?'),
    }
}

pub(crate) fn transaction_of(outcome: &crate::PaymentOutcome) -> Option<String> {
    use crate::PaymentOutcome::*;
    match outcome {
        Applied { transaction_id, .. }
        | Stale { transaction_id }
        | AmountMismatch { transaction_id } => Some(transaction_id.clone()),
        Duplicate { transaction_id } => transaction_id.clone(),
        Test | UnknownOrder => None,
    }
}

pub(crate) struct InboxRow {
    pub id: String,
    /// Index of the request in the batch.
    pub item: usize,
    pub outcome: &'static str,
    pub detail: Option<String>,
    pub transaction_id: Option<String>,
}

pub(crate) struct EventRow {
    pub id: String,
    pub transaction_id: String,
    pub event: crate::IncomingEvent,
    pub effect: &'static str,
    pub inbox_id: String,
}

pub(crate) struct LedgerRow {
    pub id: String,
    pub transaction_id: String,
    pub merchant_id: String,
    pub entry_type: &'static str,
    pub amount: i64,
    pub external_id: String,
    pub reverses_id: Option<String>,
}

pub(crate) struct AnnouncementRow {
    pub id: String,
    pub transaction_id: String,
    pub terminal_id: String,
    pub device_id: Option<String>,
    pub sequence: i64,
    pub expires_at_ms: i64,
}

pub(crate) fn unix_ms(t: time::OffsetDateTime) -> i64 {
    t.unix_timestamp() * 1000 + i64::from(t.millisecond())
}

/// The active device bound to a terminal, as a batch sees it.
pub(crate) struct BoundDevice {
    pub id: String,
    /// The sequence number its next announcement gets.
    pub next_sequence: i64,
    /// Its desired config (JSON), for the announcement's language.
    pub desired_config: Option<String>,
}

/// What a batch read before its events, what it will insert, and what it must remember
/// between its events: the transactions by order reference (as the batch left them), the
/// dedupe keys recorded before or applied in the batch (→ their transaction id, `""` if none),
/// and per terminal its bound device and that device's next announcement sequence.
#[derive(Default)]
pub(crate) struct Staged {
    pub inbox: Vec<InboxRow>,
    pub events: Vec<EventRow>,
    pub ledger: Vec<LedgerRow>,
    pub announcements: Vec<AnnouncementRow>,
    /// Announcements to mark delivered with the batch (results the relay handed in).
    pub delivered: Vec<String>,
    /// Each transaction the batch changed, as the batch left it (by id).
    pub updates: std::collections::BTreeMap<String, crate::Transaction>,
    pub transactions: std::collections::HashMap<String, crate::Transaction>,
    pub known: std::collections::HashMap<(String, String, String), String>,
    pub devices: std::collections::HashMap<String, Option<BoundDevice>>,
}

impl Staged {
    /// Gross income, platform fee and merchant payable for a paid transaction, or, for a
    /// refund, the reversal of each of those that was posted (`originals`: external id → id).
    /// Each posting's external id makes it idempotent.
    pub fn stage_ledger(
        &mut self,
        transaction: &crate::Transaction,
        rules: &dyn crate::PaymentRules,
        reversal: bool,
        originals: Vec<(String, String)>,
    ) {
        use crate::LedgerEntryType::*;
        let (fee, payable) = rules.split_fee(transaction.amount);
        for (entry_type, amount) in [
            (GrossIncome, transaction.amount),
            (PlatformFee, fee),
            (MerchantPayable, payable),
        ] {
            let original_external = format!("{}:{}", transaction.id, entry_type.as_str());
            let (external_id, amount, reverses_id) = if reversal {
                let Some((_, original)) = originals.iter().find(|(e, _)| *e == original_external)
                else {
                    continue; // nothing was posted, nothing to reverse
                };
                (
                    format!("{}:refund:{}", transaction.id, entry_type.as_str()),
                    -amount,
                    Some(original.clone()),
                )
            } else {
                (original_external, amount, None)
            };
            self.ledger.push(LedgerRow {
                id: crate::sql::new_id("led"),
                transaction_id: transaction.id.clone(),
                merchant_id: transaction.merchant_id.clone(),
                entry_type: entry_type.as_str(),
                amount,
                external_id,
                reverses_id,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn insert_chunks_cover_every_row_in_order_with_four_shapes() {
        for n in [0usize, 1, 3, 4, 5, 63, 64, 65, 100, 256, 1_000] {
            let rows: Vec<usize> = (0..n).collect();
            let chunks: Vec<&[usize]> = super::insert_chunks(&rows).collect();
            assert_eq!(chunks.concat(), rows, "n = {n}");
            assert!(
                chunks.iter().all(|c| [64, 16, 4, 1].contains(&c.len())),
                "n = {n}"
            );
        }
    }

    #[test]
    fn a_batch_write_numbers_parameters_on_across_its_pieces() {
        use super::{BatchWrite, InboxRow, Piece, Placeholders, batch_write_sql};
        let row = |id: &str| InboxRow {
            id: id.into(),
            item: 0,
            outcome: "applied",
            detail: None,
            transaction_id: None,
        };
        let (first, second) = ([row("a"), row("b")], [row("c")]);
        let pieces = [Piece::Inbox(&first), Piece::Inbox(&second)];
        let cte = batch_write_sql(&pieces, Placeholders::Numbered, BatchWrite::Cte);
        assert!(
            cte.starts_with("WITH w0 AS (INSERT INTO payment_inbox"),
            "{cte}"
        );
        assert!(
            cte.contains("($9, $10, $11, $12, $13, $14, $15, $16)), w1 AS (INSERT"),
            "{cte}"
        );
        assert!(
            cte.ends_with("($17, $18, $19, $20, $21, $22, $23, $24)) SELECT 1"),
            "{cte}"
        );
        let script = batch_write_sql(&pieces, Placeholders::Anonymous, BatchWrite::Script);
        assert_eq!(script.matches('?').count(), 24, "{script}");
        assert_eq!(script.matches(";\nINSERT INTO payment_inbox").count(), 1);
        assert!(script.ends_with(";\nCOMMIT"), "{script}");
    }

    #[test]
    fn insert_sql_numbers_parameters_row_by_row() {
        assert_eq!(
            super::insert_sql(
                "INSERT INTO t (a, b) VALUES ",
                super::Placeholders::Numbered,
                2,
                2,
                " ON CONFLICT DO NOTHING"
            ),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4) ON CONFLICT DO NOTHING"
        );
        assert_eq!(
            super::insert_sql(
                "INSERT INTO t (a) VALUES ",
                super::Placeholders::Anonymous,
                2,
                1,
                ""
            ),
            "INSERT INTO t (a) VALUES (?), (?)"
        );
    }
}

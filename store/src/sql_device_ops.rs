//! [`crate::DeviceOpsStore`], implemented once on [`Db`] for both backends (see `sql.rs`
//! for the conventions).

use crate::db::{Db, query, query_as};

/// `$first, $first+1, …` placeholders for an `IN (…)` list of `n` values.
pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[async_trait::async_trait]
impl crate::DeviceOpsStore for Db {
    async fn record_heartbeat(&self, hb: crate::NewHeartbeat, keep: u32) -> crate::StoreResult<()> {
        let mut tx = self.begin_write().await?;
        query(
            "INSERT INTO device_heartbeats (id, device_id, received_at_ms, battery_pct, \
             charging, signal_dbm, network, firmware_version, audio_pack_version, \
             uptime_s, last_transaction_id, config_version) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(crate::sql::new_id("hb"))
        .bind(&hb.device_id)
        .bind(hb.received_at_ms)
        .bind(hb.battery_pct)
        .bind(hb.charging)
        .bind(hb.signal_dbm)
        .bind(&hb.network)
        .bind(&hb.firmware_version)
        .bind(&hb.audio_pack_version)
        .bind(hb.uptime_s)
        .bind(&hb.last_transaction_id)
        .bind(hb.config_version)
        .execute(&mut tx)
        .await
        .map_err(|err| crate::sql_device_ops::device_missing(err, &hb.device_id))?;
        query(
            "DELETE FROM device_heartbeats WHERE device_id = $1 AND id NOT IN \
             (SELECT id FROM device_heartbeats WHERE device_id = $1 \
              ORDER BY id DESC LIMIT $2)",
        )
        .bind(&hb.device_id)
        .bind(i64::from(keep.max(1)))
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn heartbeats(
        &self,
        device_id: &str,
        limit: u32,
    ) -> crate::StoreResult<Vec<crate::HeartbeatRecord>> {
        Ok(query_as::<crate::HeartbeatRecord>(
            "SELECT * FROM device_heartbeats WHERE device_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(device_id)
        .bind(i64::from(limit.max(1)))
        .fetch_all(self.read())
        .await?)
    }

    async fn latest_heartbeats(
        &self,
        device_ids: &[String],
    ) -> crate::StoreResult<Vec<crate::HeartbeatRecord>> {
        if device_ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT h.* FROM device_heartbeats h WHERE h.device_id IN ({}) \
             AND h.id = (SELECT MAX(l.id) FROM device_heartbeats l WHERE l.device_id = h.device_id)",
            crate::sql_device_ops::placeholders(1, device_ids.len())
        );
        let mut query = query_as::<crate::HeartbeatRecord>(&sql);
        for id in device_ids {
            query = query.bind(id);
        }
        Ok(query.fetch_all(self.read()).await?)
    }

    async fn record_presence(&self, p: crate::PresenceRecord) -> crate::StoreResult<()> {
        let mut tx = self.begin_write().await?;
        // Only a newer change replaces the stored one (events can arrive late).
        query(
            "INSERT INTO device_presence (device_id, connected, reason, changed_at_ms) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (device_id) DO UPDATE SET \
             connected = excluded.connected, reason = excluded.reason, \
             changed_at_ms = excluded.changed_at_ms \
             WHERE device_presence.changed_at_ms <= excluded.changed_at_ms",
        )
        .bind(&p.device_id)
        .bind(p.connected)
        .bind(&p.reason)
        .bind(p.changed_at_ms)
        .execute(&mut tx)
        .await
        .map_err(|err| crate::sql_device_ops::device_missing(err, &p.device_id))?;
        tx.commit().await?;
        Ok(())
    }

    async fn presences(
        &self,
        device_ids: &[String],
    ) -> crate::StoreResult<Vec<crate::PresenceRecord>> {
        if device_ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT * FROM device_presence WHERE device_id IN ({})",
            crate::sql_device_ops::placeholders(1, device_ids.len())
        );
        let mut query = query_as::<crate::PresenceRecord>(&sql);
        for id in device_ids {
            query = query.bind(id);
        }
        Ok(query.fetch_all(self.read()).await?)
    }

    async fn device_config(
        &self,
        device_id: &str,
    ) -> crate::StoreResult<Option<crate::ConfigRecord>> {
        let exists: Option<(String,)> = query_as("SELECT id FROM devices WHERE id = $1")
            .bind(device_id)
            .fetch_optional(self.read())
            .await?;
        if exists.is_none() {
            return Err(crate::StoreError::not_found("device", device_id));
        }
        Ok(
            query_as::<crate::ConfigRecord>("SELECT * FROM device_configs WHERE device_id = $1")
                .bind(device_id)
                .fetch_optional(self.read())
                .await?,
        )
    }

    async fn device_configs(
        &self,
        device_ids: &[String],
    ) -> crate::StoreResult<Vec<crate::ConfigRecord>> {
        if device_ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT * FROM device_configs WHERE device_id IN ({})",
            crate::sql_device_ops::placeholders(1, device_ids.len())
        );
        let mut query = query_as::<crate::ConfigRecord>(&sql);
        for id in device_ids {
            query = query.bind(id);
        }
        Ok(query.fetch_all(self.read()).await?)
    }

    async fn set_desired_config(
        &self,
        device_id: &str,
        expected_version: i64,
        desired: &str,
        now_ms: i64,
    ) -> crate::StoreResult<crate::ConfigRecord> {
        let mut tx = self.begin_write().await?;
        let exists: Option<(String,)> =
            query_as(["SELECT id FROM devices WHERE id = $1 ", self.row_lock()].concat())
                .bind(device_id)
                .fetch_optional(&mut tx)
                .await?;
        if exists.is_none() {
            return Err(crate::StoreError::not_found("device", device_id));
        }
        let current: Option<(i64,)> = query_as(
            [
                "SELECT desired_version FROM device_configs WHERE device_id = $1 ",
                self.row_lock(),
            ]
            .concat(),
        )
        .bind(device_id)
        .fetch_optional(&mut tx)
        .await?;
        let version = current.map_or(0, |(v,)| v);
        if version != expected_version {
            return Err(crate::StoreError::conflict(
                "stale_version",
                Some("version"),
                format!(
                    "the desired config is at version {version}, not {expected_version}; \
                     read it again and re-apply your change"
                ),
            ));
        }
        let record = query_as::<crate::ConfigRecord>(
            "INSERT INTO device_configs (device_id, desired_version, desired, desired_at_ms, \
             push_status, push_attempts) VALUES ($1, $2, $3, $4, 'pending', 0) \
             ON CONFLICT (device_id) DO UPDATE SET desired_version = excluded.desired_version, \
             desired = excluded.desired, desired_at_ms = excluded.desired_at_ms, \
             push_status = 'pending', push_attempts = 0, push_error = NULL \
             RETURNING *",
        )
        .bind(device_id)
        .bind(version + 1)
        .bind(desired)
        .bind(now_ms)
        .fetch_one(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(record)
    }

    async fn record_config_push(
        &self,
        device_id: &str,
        version: i64,
        status: crate::ConfigPushStatus,
        error: Option<&str>,
        now_ms: i64,
    ) -> crate::StoreResult<()> {
        let mut tx = self.begin_write().await?;
        // Only a push still in flight for this version changes: a report that
        // arrived first (applied) is not overwritten by the PUBACK's `sent`.
        query(
            "UPDATE device_configs SET push_status = $1, push_error = $2, \
             push_attempts = push_attempts + 1, pushed_at_ms = $3 \
             WHERE device_id = $4 AND desired_version = $5 \
             AND push_status IN ('pending', 'sent', 'failed')",
        )
        .bind(status.as_str())
        .bind(error)
        .bind(now_ms)
        .bind(device_id)
        .bind(version)
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn requeue_config_push(
        &self,
        device_id: &str,
    ) -> crate::StoreResult<crate::ConfigRecord> {
        let mut tx = self.begin_write().await?;
        let record = query_as::<crate::ConfigRecord>(
            "UPDATE device_configs SET push_status = 'pending', push_error = NULL \
             WHERE device_id = $1 AND desired_version > 0 RETURNING *",
        )
        .bind(device_id)
        .fetch_optional(&mut tx)
        .await?;
        tx.commit().await?;
        record.ok_or_else(|| crate::StoreError::not_found("desired config of device", device_id))
    }

    async fn record_reported_config(
        &self,
        device_id: &str,
        report: crate::ReportedConfigUpdate,
    ) -> crate::StoreResult<crate::ConfigRecord> {
        let mut tx = self.begin_write().await?;
        query(
            "INSERT INTO device_configs (device_id, push_status, reported_version, reported, \
             reported_cause, reported_at_ms) VALUES ($1, 'none', $2, $3, $4, $5) \
             ON CONFLICT (device_id) DO UPDATE SET reported_version = excluded.reported_version, \
             reported = excluded.reported, reported_cause = excluded.reported_cause, \
             reported_at_ms = excluded.reported_at_ms",
        )
        .bind(device_id)
        .bind(report.applied_version)
        .bind(&report.config)
        .bind(&report.cause)
        .bind(report.at_ms)
        .execute(&mut tx)
        .await
        .map_err(|err| crate::sql_device_ops::device_missing(err, device_id))?;
        let settled = match report.cause.as_str() {
            "applied" => Some("applied"),
            "rejected" => Some("rejected"),
            _ => None,
        };
        if let Some(settled) = settled {
            query(
                "UPDATE device_configs SET push_status = $1 WHERE device_id = $2 \
                 AND desired_version = $3 AND desired_version > 0",
            )
            .bind(settled)
            .bind(device_id)
            .bind(report.applied_version)
            .execute(&mut tx)
            .await?;
        }
        let record =
            query_as::<crate::ConfigRecord>("SELECT * FROM device_configs WHERE device_id = $1")
                .bind(device_id)
                .fetch_one(&mut tx)
                .await?;
        tx.commit().await?;
        Ok(record)
    }

    async fn pending_config_pushes(
        &self,
        limit: u32,
    ) -> crate::StoreResult<Vec<crate::ConfigRecord>> {
        Ok(query_as::<crate::ConfigRecord>(
            "SELECT * FROM device_configs WHERE push_status = 'pending' \
             ORDER BY desired_at_ms LIMIT $1",
        )
        .bind(i64::from(limit.max(1)))
        .fetch_all(self.read())
        .await?)
    }

    async fn create_command(
        &self,
        new: crate::NewCommand,
    ) -> crate::StoreResult<crate::CommandRecord> {
        let mut tx = self.begin_write().await?;
        let done = new.status.is_final().then_some(new.now_ms);
        let record = query_as::<crate::CommandRecord>(
            "INSERT INTO device_commands (id, device_id, name, action, interactive, status, \
             expires_at_ms, result_deadline_ms, attempts, message, created_at_ms, completed_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, $10, $11) RETURNING *",
        )
        .bind(crate::sql::new_id("cmd"))
        .bind(&new.device_id)
        .bind(&new.name)
        .bind(&new.action)
        .bind(new.interactive)
        .bind(new.status.as_str())
        .bind(new.expires_at_ms)
        .bind(new.result_deadline_ms)
        .bind(&new.message)
        .bind(new.now_ms)
        .bind(done)
        .fetch_one(&mut tx)
        .await
        .map_err(|err| crate::sql_device_ops::device_missing(err, &new.device_id))?;
        tx.commit().await?;
        Ok(record)
    }

    async fn get_command(
        &self,
        device_id: &str,
        command_id: &str,
    ) -> crate::StoreResult<crate::CommandRecord> {
        query_as::<crate::CommandRecord>(
            "SELECT * FROM device_commands WHERE id = $1 AND device_id = $2",
        )
        .bind(command_id)
        .bind(device_id)
        .fetch_optional(self.read())
        .await?
        .ok_or_else(|| crate::StoreError::not_found("command", command_id))
    }

    async fn list_commands(
        &self,
        device_id: &str,
        page: &crate::PageRequest,
    ) -> crate::StoreResult<crate::Page<crate::CommandRecord>> {
        let rows = query_as::<crate::CommandRecord>(
            "SELECT * FROM device_commands WHERE device_id = $1 \
             AND ($2 IS NULL OR id > $2) ORDER BY id LIMIT $3",
        )
        .bind(device_id)
        .bind(page.after.as_deref())
        .bind(crate::sql::fetch_limit(page.limit))
        .fetch_all(self.read())
        .await?;
        Ok(crate::sql::paginate(rows, page.limit, |c| &c.id))
    }

    async fn due_commands(
        &self,
        device_id: Option<&str>,
        now_ms: i64,
        limit: u32,
    ) -> crate::StoreResult<Vec<crate::CommandRecord>> {
        Ok(query_as::<crate::CommandRecord>(
            "SELECT * FROM device_commands WHERE status = 'queued' AND expires_at_ms > $1 \
             AND ($2 IS NULL OR device_id = $2) ORDER BY id LIMIT $3",
        )
        .bind(now_ms)
        .bind(device_id)
        .bind(i64::from(limit.max(1)))
        .fetch_all(self.read())
        .await?)
    }

    async fn update_command(
        &self,
        command_id: &str,
        update: crate::CommandUpdate,
    ) -> crate::StoreResult<(crate::CommandRecord, bool)> {
        use crate::CommandStatus as S;
        let stamp = match update.to {
            S::Queued => "created_at_ms = created_at_ms",
            S::Sent => "sent_at_ms = COALESCE(sent_at_ms, $4)",
            S::Acknowledged => "acknowledged_at_ms = COALESCE(acknowledged_at_ms, $4)",
            S::Succeeded | S::Failed | S::TimedOut | S::Expired => "completed_at_ms = $4",
        };
        let sql = format!(
            "UPDATE device_commands SET status = $1, result = COALESCE($2, result), \
             message = COALESCE($3, message), attempts = attempts + $5, {stamp} \
             WHERE id = $6 AND status IN ({})",
            crate::sql_device_ops::placeholders(7, update.from.len().max(1))
        );
        let mut tx = self.begin_write().await?;
        let mut query = query(&sql)
            .bind(update.to.as_str())
            .bind(&update.result)
            .bind(&update.message)
            .bind(update.at_ms)
            .bind(i64::from(update.attempt))
            .bind(command_id);
        if update.from.is_empty() {
            query = query.bind("");
        }
        for from in &update.from {
            query = query.bind(from.as_str());
        }
        let changed = query.execute(&mut tx).await? > 0;
        let record =
            query_as::<crate::CommandRecord>("SELECT * FROM device_commands WHERE id = $1")
                .bind(command_id)
                .fetch_optional(&mut tx)
                .await?
                .ok_or_else(|| crate::StoreError::not_found("command", command_id))?;
        tx.commit().await?;
        Ok((record, changed))
    }

    async fn expire_commands(&self, now_ms: i64) -> crate::StoreResult<Vec<crate::CommandRecord>> {
        // A read first: the sweep runs every second and should not take the write
        // lock when nothing is due.
        let due: Option<(String,)> = query_as(
            "SELECT id FROM device_commands WHERE (status = 'queued' AND expires_at_ms <= $1) \
             OR (status IN ('sent', 'acknowledged') AND result_deadline_ms <= $1) LIMIT 1",
        )
        .bind(now_ms)
        .fetch_optional(self.read())
        .await?;
        if due.is_none() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin_write().await?;
        let mut changed = query_as::<crate::CommandRecord>(
            "UPDATE device_commands SET status = 'expired', completed_at_ms = $1, \
             message = COALESCE(message, 'not delivered before its expiry') \
             WHERE status = 'queued' AND expires_at_ms <= $1 RETURNING *",
        )
        .bind(now_ms)
        .fetch_all(&mut tx)
        .await?;
        changed.extend(
            query_as::<crate::CommandRecord>(
                "UPDATE device_commands SET status = 'timed_out', completed_at_ms = $1, \
                 message = COALESCE(message, 'no result from the device in time') \
                 WHERE status IN ('sent', 'acknowledged') AND result_deadline_ms <= $1 \
                 RETURNING *",
            )
            .bind(now_ms)
            .fetch_all(&mut tx)
            .await?,
        );
        tx.commit().await?;
        Ok(changed)
    }

    async fn qr_request(
        &self,
        device_id: &str,
        request_id: &str,
    ) -> crate::StoreResult<Option<crate::QrRequestRecord>> {
        Ok(query_as::<crate::QrRequestRecord>(
            "SELECT * FROM device_qr_requests WHERE device_id = $1 AND request_id = $2",
        )
        .bind(device_id)
        .bind(request_id)
        .fetch_optional(self.read())
        .await?)
    }

    async fn record_qr_request(
        &self,
        r: crate::QrRequestRecord,
    ) -> crate::StoreResult<(crate::QrRequestRecord, bool)> {
        let mut tx = self.begin_write().await?;
        let inserted = query(
            "INSERT INTO device_qr_requests (device_id, request_id, transaction_id, amount, \
             payload, expires_at_ms, status, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, 'shown', $7) \
             ON CONFLICT (device_id, request_id) DO NOTHING",
        )
        .bind(&r.device_id)
        .bind(&r.request_id)
        .bind(&r.transaction_id)
        .bind(r.amount)
        .bind(&r.payload)
        .bind(r.expires_at_ms)
        .bind(r.created_at_ms)
        .execute(&mut tx)
        .await
        .map_err(|err| crate::sql_device_ops::device_missing(err, &r.device_id))?
            > 0;
        let stored = query_as::<crate::QrRequestRecord>(
            "SELECT * FROM device_qr_requests WHERE device_id = $1 AND request_id = $2",
        )
        .bind(&r.device_id)
        .bind(&r.request_id)
        .fetch_one(&mut tx)
        .await?;
        tx.commit().await?;
        Ok((stored, inserted))
    }

    async fn qr_requests_to_close(
        &self,
        limit: u32,
    ) -> crate::StoreResult<Vec<(crate::QrRequestRecord, String)>> {
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            qr: crate::QrRequestRecord,
            transaction_status: String,
        }
        let rows = query_as::<Row>(
            "SELECT q.*, t.status AS transaction_status FROM device_qr_requests q \
             JOIN transactions t ON t.id = q.transaction_id \
             WHERE q.status = 'shown' AND t.status <> 'pending' \
             ORDER BY q.created_at_ms LIMIT $1",
        )
        .bind(i64::from(limit.max(1)))
        .fetch_all(self.read())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.qr, r.transaction_status))
            .collect())
    }

    async fn close_qr_request(
        &self,
        device_id: &str,
        request_id: &str,
        reason: &str,
        now_ms: i64,
    ) -> crate::StoreResult<()> {
        let mut tx = self.begin_write().await?;
        query(
            "UPDATE device_qr_requests SET status = 'closed', close_reason = $1, \
             closed_at_ms = $2 WHERE device_id = $3 AND request_id = $4 AND status = 'shown'",
        )
        .bind(reason)
        .bind(now_ms)
        .bind(device_id)
        .bind(request_id)
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn failed_announcement_counts(
        &self,
        device_ids: &[String],
        since_ms: i64,
    ) -> crate::StoreResult<Vec<(String, i64)>> {
        if device_ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT device_id, COUNT(*) FROM announcements WHERE status = 'failed' \
             AND expires_at_ms > $1 AND device_id IN ({}) GROUP BY device_id",
            crate::sql_device_ops::placeholders(2, device_ids.len())
        );
        let mut query = query_as::<(String, i64)>(&sql).bind(since_ms);
        for id in device_ids {
            query = query.bind(id);
        }
        Ok(query.fetch_all(self.read()).await?)
    }
}

/// A foreign-key failure on a device's row means the device does not exist.
pub(crate) fn device_missing(err: sqlx::Error, device_id: &str) -> crate::StoreError {
    match crate::StoreError::from(err) {
        crate::StoreError::Conflict {
            code: "reference_missing",
            ..
        } => crate::StoreError::not_found("device", device_id),
        other => other,
    }
}

//! Device operations every backend must show: heartbeat history bounds, presence ordering,
//! versioned desired config and its push state.

use std::sync::Arc;

use gema_store::testing::{ApprovedTerminal, approved_terminal_with_device, device};
use gema_store::*;

fn heartbeat(device_id: &str, at_ms: i64, battery: i64) -> NewHeartbeat {
    NewHeartbeat {
        device_id: device_id.into(),
        received_at_ms: at_ms,
        battery_pct: Some(battery),
        charging: battery % 2 == 0,
        signal_dbm: Some(-70),
        network: "4g".into(),
        firmware_version: "1.2.0".into(),
        audio_pack_version: "id-3".into(),
        uptime_s: 4_000_000_000,
        last_transaction_id: Some("trx_1".into()),
        config_version: 3,
    }
}

pub async fn heartbeats_keep_a_bounded_history(store: Arc<dyn Store>) {
    let a = device(&*store, "HB-A").await;
    let b = device(&*store, "HB-B").await;
    for i in 0..7 {
        store
            .record_heartbeat(heartbeat(&a.id, 1_000 + i, 50 + i), 5)
            .await
            .unwrap();
    }
    store
        .record_heartbeat(heartbeat(&b.id, 9_000, 10), 5)
        .await
        .unwrap();
    let history = store.heartbeats(&a.id, 100).await.unwrap();
    assert_eq!(history.len(), 5, "only the newest 5 are kept");
    let times: Vec<i64> = history.iter().map(|h| h.received_at_ms).collect();
    assert_eq!(
        times,
        vec![1_006, 1_005, 1_004, 1_003, 1_002],
        "newest first"
    );
    assert_eq!(history[0].battery_pct, Some(56));
    assert!(history[0].charging);
    assert_eq!(history[0].uptime_s, 4_000_000_000, "large values survive");
    assert_eq!(history[0].network, "4g");

    let latest = store
        .latest_heartbeats(&[a.id.clone(), b.id.clone(), "dev_unknown".into()])
        .await
        .unwrap();
    assert_eq!(latest.len(), 2);
    let of = |id: &str| latest.iter().find(|h| h.device_id == id).unwrap().clone();
    assert_eq!(of(&a.id).received_at_ms, 1_006);
    assert_eq!(of(&b.id).battery_pct, Some(10));
    assert!(store.latest_heartbeats(&[]).await.unwrap().is_empty());

    let err = store
        .record_heartbeat(heartbeat("dev_missing", 1, 1), 5)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
}

pub async fn presence_keeps_the_newest_change(store: Arc<dyn Store>) {
    let a = device(&*store, "PR-A").await;
    let change = |connected: bool, reason: Option<&str>, at: i64| PresenceRecord {
        device_id: a.id.clone(),
        connected,
        reason: reason.map(String::from),
        changed_at_ms: at,
    };
    store
        .record_presences(&[change(true, None, 100)])
        .await
        .unwrap();
    store
        .record_presences(&[change(false, Some("keep_alive_timeout"), 200)])
        .await
        .unwrap();
    // A late event about an earlier instant changes nothing.
    store
        .record_presences(&[change(true, None, 150)])
        .await
        .unwrap();
    let stored = store.presences(std::slice::from_ref(&a.id)).await.unwrap();
    assert_eq!(stored, vec![change(false, Some("keep_alive_timeout"), 200)]);
    store
        .record_presences(&[change(true, None, 300)])
        .await
        .unwrap();
    let stored = store.presences(std::slice::from_ref(&a.id)).await.unwrap();
    assert!(stored[0].connected);
    assert_eq!(stored[0].reason, None);
}

pub async fn presence_batches_write_many_devices_at_once(store: Arc<dyn Store>) {
    // More devices than one statement takes (100 rows, 400 ids), so the batch and every
    // read by a list of devices span statements.
    let mut ids = Vec::new();
    for i in 0..620 {
        ids.push(device(&*store, &format!("PB-{i}")).await.id);
    }
    let record = |id: &str, connected: bool, at: i64| PresenceRecord {
        device_id: id.into(),
        connected,
        reason: (!connected).then(|| "connection_lost".to_string()),
        changed_at_ms: at,
    };
    // The first one already has a newer change stored: the batch does not undo it.
    store
        .record_presences(&[record(&ids[0], false, 5_000)])
        .await
        .unwrap();
    let mut batch: Vec<PresenceRecord> = ids.iter().map(|id| record(id, true, 1_000)).collect();
    // A device twice in one batch: its newest change counts, wherever it stands.
    batch.push(record(&ids[1], false, 1_500));
    batch.insert(0, record(&ids[2], false, 2_000));
    // A device deleted since it connected is skipped, not a failure of the batch.
    batch.push(record("dev_missing", true, 1_000));
    store.record_presences(&batch).await.unwrap();

    let stored = store.presences(&ids).await.unwrap();
    assert_eq!(stored.len(), ids.len(), "every device has its row");
    let of = |id: &str| stored.iter().find(|p| p.device_id == id).unwrap().clone();
    assert_eq!(of(&ids[0]), record(&ids[0], false, 5_000));
    assert_eq!(of(&ids[1]), record(&ids[1], false, 1_500));
    assert_eq!(of(&ids[2]), record(&ids[2], false, 2_000));
    for id in &ids[3..] {
        assert_eq!(of(id), record(id, true, 1_000));
    }
    assert!(
        store
            .presences(&["dev_missing".to_string()])
            .await
            .unwrap()
            .is_empty()
    );
    store.record_presences(&[]).await.unwrap();

    // The other reads by a list of devices answer for all of them too.
    store.start_sessions("node-a", &ids, 1_000).await.unwrap();
    let sessions = store.device_sessions(&ids).await.unwrap();
    assert_eq!(sessions.len(), ids.len(), "a session row per device");
    assert!(store.device_configs(&ids).await.unwrap().is_empty());
    assert!(store.latest_heartbeats(&ids).await.unwrap().is_empty());
    assert!(
        store
            .failed_announcement_counts(&ids, 0)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn desired_config_versions_guard_concurrent_writers(store: Arc<dyn Store>) {
    let a = device(&*store, "CF-A").await;
    assert_eq!(store.device_config(&a.id).await.unwrap(), None);
    let err = store.device_config("dev_missing").await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");

    let first = store
        .set_desired_config(&a.id, 0, r#"{"volume":5}"#, 1_000)
        .await
        .unwrap();
    assert_eq!(first.desired_version, 1);
    assert_eq!(first.desired.as_deref(), Some(r#"{"volume":5}"#));
    assert_eq!(first.push_status, ConfigPushStatus::Pending);

    // A writer that read version 0 is too late now.
    let err = store
        .set_desired_config(&a.id, 0, r#"{"volume":9}"#, 1_001)
        .await
        .unwrap_err();
    match err {
        StoreError::Conflict { code, field, .. } => {
            assert_eq!((code, field), ("stale_version", Some("version")));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let second = store
        .set_desired_config(&a.id, 1, r#"{"volume":7}"#, 1_002)
        .await
        .unwrap();
    assert_eq!(second.desired_version, 2);

    let pending = store.pending_config_pushes(None, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].device_id, a.id);

    // A PUBACK for an old version changes nothing; for the current one it is `sent`.
    store
        .record_config_push(&a.id, 1, ConfigPushStatus::Sent, None, 1_003)
        .await
        .unwrap();
    let now = store.device_config(&a.id).await.unwrap().unwrap();
    assert_eq!(now.push_status, ConfigPushStatus::Pending);
    store
        .record_config_push(&a.id, 2, ConfigPushStatus::Sent, None, 1_004)
        .await
        .unwrap();
    let now = store.device_config(&a.id).await.unwrap().unwrap();
    assert_eq!(now.push_status, ConfigPushStatus::Sent);
    assert_eq!(now.push_attempts, 1);
    assert_eq!(now.pushed_at_ms, Some(1_004));
    assert!(
        store
            .pending_config_pushes(None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // The device applies version 2.
    let applied = store
        .record_reported_config(
            &a.id,
            ReportedConfigUpdate {
                applied_version: 2,
                cause: "applied".into(),
                config: r#"{"volume":7}"#.into(),
                at_ms: 1_005,
            },
        )
        .await
        .unwrap();
    assert_eq!(applied.push_status, ConfigPushStatus::Applied);
    assert_eq!(applied.reported_version, Some(2));
    // A late PUBACK outcome does not undo the settled push.
    store
        .record_config_push(&a.id, 2, ConfigPushStatus::Sent, None, 1_006)
        .await
        .unwrap();
    let now = store.device_config(&a.id).await.unwrap().unwrap();
    assert_eq!(now.push_status, ConfigPushStatus::Applied);

    // A local change is stored as reported without touching the push.
    let local = store
        .record_reported_config(
            &a.id,
            ReportedConfigUpdate {
                applied_version: 2,
                cause: "local_change".into(),
                config: r#"{"volume":8}"#.into(),
                at_ms: 1_007,
            },
        )
        .await
        .unwrap();
    assert_eq!(local.push_status, ConfigPushStatus::Applied);
    assert_eq!(local.reported.as_deref(), Some(r#"{"volume":8}"#));
    assert_eq!(local.reported_cause.as_deref(), Some("local_change"));

    // An operator's retry makes it due again.
    let again = store.requeue_config_push(&a.id).await.unwrap();
    assert_eq!(again.push_status, ConfigPushStatus::Pending);
    assert_eq!(
        store
            .device_configs(std::slice::from_ref(&a.id))
            .await
            .unwrap()
            .len(),
        1
    );
}

pub async fn a_report_before_any_desired_config_is_kept(store: Arc<dyn Store>) {
    let a = device(&*store, "CF-B").await;
    let record = store
        .record_reported_config(
            &a.id,
            ReportedConfigUpdate {
                applied_version: 0,
                cause: "boot".into(),
                config: r#"{"volume":4}"#.into(),
                at_ms: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(record.desired_version, 0);
    assert_eq!(record.desired, None);
    assert_eq!(record.push_status, ConfigPushStatus::None);
    let err = store.requeue_config_push(&a.id).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    // The first desired config is version 1 on top of the report.
    let first = store
        .set_desired_config(&a.id, 0, r#"{"volume":6}"#, 20)
        .await
        .unwrap();
    assert_eq!(first.desired_version, 1);
    assert_eq!(first.reported.as_deref(), Some(r#"{"volume":4}"#));
    let err = store
        .record_reported_config(
            "dev_missing",
            ReportedConfigUpdate {
                applied_version: 0,
                cause: "boot".into(),
                config: "{}".into(),
                at_ms: 1,
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
}

fn command(device_id: &str, status: CommandStatus, expires: i64) -> NewCommand {
    NewCommand {
        device_id: device_id.into(),
        name: "reboot".into(),
        action: r#"{"name":"reboot"}"#.into(),
        interactive: false,
        status,
        message: None,
        expires_at_ms: expires,
        result_deadline_ms: expires + 1_000,
        now_ms: 100,
    }
}

fn update(from: &[CommandStatus], to: CommandStatus, at_ms: i64) -> CommandUpdate {
    CommandUpdate {
        from: from.to_vec(),
        to,
        result: None,
        message: None,
        at_ms,
        attempt: false,
    }
}

pub async fn commands_move_through_their_states_once(store: Arc<dyn Store>) {
    use CommandStatus::*;
    let a = device(&*store, "CMD-A").await;
    let b = device(&*store, "CMD-B").await;
    let first = store
        .create_command(command(&a.id, Queued, 10_000))
        .await
        .unwrap();
    assert_eq!(first.status, Queued);
    assert!(first.id.starts_with("cmd_"));
    let second = store
        .create_command(command(&a.id, Queued, 20_000))
        .await
        .unwrap();
    let failed = store
        .create_command(NewCommand {
            interactive: true,
            message: Some("device offline".into()),
            ..command(&b.id, Failed, 20_000)
        })
        .await
        .unwrap();
    assert_eq!(failed.status, Failed);
    assert_eq!(failed.completed_at_ms, Some(100));

    let due = store
        .due_commands(Some(&a.id), 5_000, None, 10)
        .await
        .unwrap();
    let ids: Vec<_> = due.iter().map(|c| c.id.clone()).collect();
    assert_eq!(
        ids,
        vec![first.id.clone(), second.id.clone()],
        "oldest first"
    );
    assert!(
        store
            .due_commands(None, 5_000, None, 10)
            .await
            .unwrap()
            .len()
            == 2
    );
    assert_eq!(
        store
            .due_commands(None, 10_000, None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    // A page at a time, after the last id of the one before.
    let page = store.due_commands(None, 5_000, None, 1).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].id, first.id);
    let page = store
        .due_commands(None, 5_000, Some(&first.id), 1)
        .await
        .unwrap();
    assert_eq!(page[0].id, second.id);
    assert!(
        store
            .due_commands(None, 5_000, Some(&second.id), 1)
            .await
            .unwrap()
            .is_empty()
    );

    // queued → sent (an attempt) → acknowledged → succeeded with a result.
    let (sent, changed) = store
        .update_command(
            &first.id,
            CommandUpdate {
                attempt: true,
                ..update(&[Queued], Sent, 1_000)
            },
        )
        .await
        .unwrap();
    assert!(changed);
    assert_eq!(
        (sent.status, sent.attempts, sent.sent_at_ms),
        (Sent, 1, Some(1_000))
    );
    let (acked, _) = store
        .update_command(&first.id, update(&[Queued, Sent], Acknowledged, 1_100))
        .await
        .unwrap();
    assert_eq!(acked.acknowledged_at_ms, Some(1_100));
    let (done, changed) = store
        .update_command(
            &first.id,
            CommandUpdate {
                result: Some(r#"{"volume":"7"}"#.into()),
                ..update(&[Queued, Sent, Acknowledged], Succeeded, 1_200)
            },
        )
        .await
        .unwrap();
    assert!(changed);
    assert_eq!(done.status, Succeeded);
    assert_eq!(done.result.as_deref(), Some(r#"{"volume":"7"}"#));
    assert_eq!(done.completed_at_ms, Some(1_200));
    // A late result for a finished command changes nothing.
    let (same, changed) = store
        .update_command(
            &first.id,
            update(&[Queued, Sent, Acknowledged], Failed, 1_300),
        )
        .await
        .unwrap();
    assert!(!changed);
    assert_eq!(same.status, Succeeded);

    // Expiry: the queued one expires; a sent one times out at its result deadline.
    let third = store
        .create_command(command(&a.id, Queued, 30_000))
        .await
        .unwrap();
    store
        .update_command(&third.id, update(&[Queued], Sent, 2_000))
        .await
        .unwrap();
    let changed = store.expire_commands(20_000).await.unwrap();
    assert_eq!(changed.len(), 1);
    assert_eq!(
        (changed[0].id.clone(), changed[0].status),
        (second.id.clone(), Expired)
    );
    let changed = store.expire_commands(31_000).await.unwrap();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].status, TimedOut);
    assert!(changed[0].message.is_some());
    assert!(store.expire_commands(99_000).await.unwrap().is_empty());

    let page = store
        .list_commands(&a.id, &PageRequest::first(2))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2);
    let rest = store
        .list_commands(
            &a.id,
            &PageRequest {
                after: page.next_after.clone(),
                limit: 2,
            },
        )
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.next_after, None);

    let err = store.get_command(&b.id, &first.id).await.unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { .. }),
        "another device's command"
    );
    assert_eq!(store.get_command(&a.id, &first.id).await.unwrap(), done);
    let err = store
        .update_command("cmd_missing", update(&[Queued], Sent, 1))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }));
    let err = store
        .create_command(command("dev_missing", Queued, 1))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }));
}

pub async fn qr_requests_are_kept_once_and_closed_when_their_transaction_moves(
    store: Arc<dyn Store>,
) {
    let (ApprovedTerminal { terminal, .. }, device) =
        approved_terminal_with_device(&*store, "QR-A").await;
    let expires_at_ms = crate::payments::now_ms() + 300_000;
    let transaction = |order_ref: &str| NewTransaction {
        terminal_id: terminal.id.clone(),
        order_ref: order_ref.into(),
        amount: 25_000,
        expires_at_ms,
    };
    let request = NewQrRequest {
        device_id: device.id.clone(),
        request_id: "req-1".into(),
        payload: "000201...".into(),
        created_at_ms: 5,
    };
    assert_eq!(store.qr_request(&device.id, "req-1").await.unwrap(), None);
    let (stored, created) = store
        .create_qr_request(transaction("QR-ORDER-1"), request.clone())
        .await
        .unwrap();
    assert!(created);
    assert_eq!(stored.status, "shown");
    assert_eq!(stored.show_status, "pending", "its qr_show is owed");
    assert_eq!(stored.clear_status, None);
    assert_eq!(stored.owed(), Some(QrDownlink::Show));
    let t = store.get_transaction(&stored.transaction_id).await.unwrap();
    assert_eq!(t.status, TransactionStatus::Pending);
    assert_eq!((t.amount, t.expires_at_ms), (25_000, expires_at_ms));

    // A second copy of the same request keeps the first QR and makes no transaction.
    let (again, created) = store
        .create_qr_request(
            transaction("QR-ORDER-2"),
            NewQrRequest {
                payload: "other".into(),
                ..request.clone()
            },
        )
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(again, stored);
    let made = || async {
        store
            .list_transactions(
                &TransactionFilter {
                    terminal_id: Some(terminal.id.clone()),
                    ..TransactionFilter::default()
                },
                &PageRequest::first(10),
            )
            .await
            .unwrap()
            .items
            .len()
    };
    assert_eq!(made().await, 1, "no second transaction");

    // The owed show: due for the device whenever it connects, for the sweep once its next
    // attempt is due; sent counts an attempt; delivered ends it.
    let now = 1_000;
    assert_eq!(
        store.due_qr_downlinks(None, now, 10).await.unwrap().len(),
        1
    );
    store
        .qr_downlink_sent(&device.id, "req-1", QrDownlink::Show, now + 30_000)
        .await
        .unwrap();
    assert!(
        store
            .due_qr_downlinks(None, now, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let on_connect = store
        .due_qr_downlinks(Some(&device.id), now, 10)
        .await
        .unwrap();
    assert_eq!(on_connect.len(), 1);
    assert_eq!(on_connect[0].attempts, 1);
    assert_eq!(
        store
            .due_qr_downlinks(None, now + 30_000, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        store
            .finish_qr_downlink(&device.id, &t.id, QrDownlink::Show, "delivered")
            .await
            .unwrap()
    );
    assert!(
        !store
            .finish_qr_downlink(&device.id, &t.id, QrDownlink::Show, "delivered")
            .await
            .unwrap(),
        "only once"
    );
    assert!(
        store
            .due_qr_downlinks(Some(&device.id), now, 10)
            .await
            .unwrap()
            .is_empty()
    );

    assert!(
        store.qr_requests_to_close(10).await.unwrap().is_empty(),
        "still pending"
    );
    let expired = store
        .expire_due_transactions(t.expires_at_ms + 1, 10)
        .await
        .unwrap();
    assert_eq!(expired, vec![t.id.clone()]);
    let due = store.qr_requests_to_close(10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].0.request_id, "req-1");
    assert_eq!(due[0].1, "expired");
    assert!(
        store
            .close_qr_request(&device.id, "req-1", "expired", 99)
            .await
            .unwrap()
    );
    assert!(store.qr_requests_to_close(10).await.unwrap().is_empty());
    let closed = store
        .qr_request(&device.id, "req-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(closed.status, "closed");
    assert_eq!(closed.close_reason.as_deref(), Some("expired"));
    assert_eq!(closed.closed_at_ms, Some(99));
    assert_eq!(
        closed.owed(),
        Some(QrDownlink::Clear),
        "its qr_clear is owed"
    );
    assert_eq!(closed.attempts, 0);

    // Past the QR's own expiry nothing is due, and the sweep ends what was owed.
    assert!(
        store
            .due_qr_downlinks(Some(&device.id), expires_at_ms, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.expire_qr_downlinks(expires_at_ms).await.unwrap(), 1);
    let ended = store
        .qr_request(&device.id, "req-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ended.clear_status.as_deref(), Some("expired"));
    assert_eq!(ended.show_status, "delivered");
    assert_eq!(ended.owed(), None);

    let err = store
        .create_qr_request(
            transaction("QR-ORDER-3"),
            NewQrRequest {
                device_id: "dev_missing".into(),
                ..request
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    assert_eq!(made().await, 1, "nothing left behind");
}

pub async fn failed_announcements_are_counted_per_device(store: Arc<dyn Store>) {
    use crate::payments::{Rules, event, inbox, now_ms, order};
    let (ApprovedTerminal { terminal, .. }, device) =
        approved_terminal_with_device(&*store, "FAIL-A").await;
    let (_, quiet) = approved_terminal_with_device(&*store, "FAIL-B").await;
    for n in 0..3 {
        let order_ref = format!("FAIL-ORD-{n}");
        order(&*store, &terminal, &order_ref, 1_000).await;
        store
            .apply_payment_event(inbox(), event(&order_ref, "paid", 1_000), &Rules)
            .await
            .unwrap();
    }
    let due = store
        .due_announcements(Some(&device.id), now_ms() + 1, 10)
        .await
        .unwrap();
    assert_eq!(due.len(), 3);
    assert_eq!(due[0].desired_config, None, "no desired config yet");
    store
        .set_desired_config(&device.id, 0, r#"{"language":"en"}"#, 1)
        .await
        .unwrap();
    let due = store
        .due_announcements(Some(&device.id), now_ms() + 1, 10)
        .await
        .unwrap();
    assert_eq!(due.len(), 3, "the config join adds no rows");
    assert_eq!(
        due[0].desired_config.as_deref(),
        Some(r#"{"language":"en"}"#)
    );
    for a in &due[..2] {
        store
            .record_delivery(
                &a.id,
                DeliveryResult::Failed {
                    error: "no ack".into(),
                },
            )
            .await
            .unwrap();
    }
    let ids = [device.id.clone(), quiet.id.clone()];
    let counts = store.failed_announcement_counts(&ids, 0).await.unwrap();
    assert_eq!(counts, vec![(device.id.clone(), 2)]);
    // Only those expiring after the window's start count.
    let late = due[0].expires_at_ms.max(due[1].expires_at_ms);
    assert!(
        store
            .failed_announcement_counts(&ids, late)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .failed_announcement_counts(&[], 0)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Pending config pushes page by `(desired_at_ms, device_id)`, so a sweep reaches every one
/// of them however many older ones (devices offline, or on other nodes) come first.
pub async fn pending_config_pushes_page_past_the_oldest(store: Arc<dyn Store>) {
    let mut devices = Vec::new();
    for (serial, at) in [
        ("PG-A", 3_000),
        ("PG-B", 1_000),
        ("PG-C", 1_000),
        ("PG-D", 2_000),
    ] {
        let d = device(&*store, serial).await;
        store
            .set_desired_config(&d.id, 0, r#"{"volume":4}"#, at)
            .await
            .unwrap();
        devices.push((at, d.id));
    }
    devices.sort();
    let mut seen = Vec::new();
    let mut after: Option<(i64, String)> = None;
    loop {
        let page = store
            .pending_config_pushes(after.as_ref().map(|(at, id)| (*at, id.as_str())), 3)
            .await
            .unwrap();
        assert!(page.len() <= 3);
        seen.extend(
            page.iter()
                .map(|r| (r.desired_at_ms.unwrap(), r.device_id.clone())),
        );
        match page.last() {
            Some(last) if page.len() == 3 => {
                after = Some((last.desired_at_ms.unwrap(), last.device_id.clone()));
            }
            _ => break,
        }
    }
    assert_eq!(seen, devices, "every pending push once, oldest first");
}

//! People behaviours every backend must show: users, session rotation with reuse detection,
//! login-failure windows and the audit log.

use std::sync::Arc;

use gema_store::testing::{ApprovedTerminal, approved_terminal_with_device};
use gema_store::*;

async fn merchant(store: &Arc<dyn Store>) -> Merchant {
    merchant_or_error(store).await.unwrap()
}

fn new_user(email: &str, kind: UserKind, role: &str, merchant_id: Option<String>) -> NewUser {
    NewUser {
        email: email.into(),
        name: "Sri".into(),
        kind,
        role: role.into(),
        merchant_id,
        password_hash: "pbkdf2-sha256$1$c2FsdA$aGFzaA".into(),
        now_ms: 1_000,
    }
}

fn session(user_id: &str, n: u32, now_ms: i64) -> NewAuthSession {
    NewAuthSession {
        user_id: user_id.into(),
        access_hash: format!("access-{n}"),
        refresh_hash: format!("refresh-{n}"),
        access_expires_ms: now_ms + 900_000,
        refresh_expires_ms: now_ms + 86_400_000,
        user_agent: Some("test".into()),
        source: Some("127.0.0.1".into()),
        now_ms,
    }
}

pub async fn users_round_trip_and_emails_are_unique(store: Arc<dyn Store>) {
    assert_eq!(store.count_admin_users().await.unwrap(), 0);
    let admin = store
        .create_user(new_user("ops@gema.test", UserKind::Admin, "admin", None))
        .await
        .unwrap();
    assert_eq!(store.count_admin_users().await.unwrap(), 1);
    assert_eq!(store.get_user(&admin.id).await.unwrap(), admin);
    let (found, hash) = store
        .user_for_login("ops@gema.test")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, admin);
    assert_eq!(hash, "pbkdf2-sha256$1$c2FsdA$aGFzaA");
    assert!(
        store
            .user_for_login("nobody@gema.test")
            .await
            .unwrap()
            .is_none()
    );

    let err = store
        .create_user(new_user("ops@gema.test", UserKind::Admin, "viewer", None))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                code: "email_taken",
                ..
            }
        ),
        "{err:?}"
    );

    let err = store
        .create_user(new_user(
            "owner@gema.test",
            UserKind::Merchant,
            "owner",
            Some("mer_unknown".into()),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::NotFound {
                entity: "merchant",
                ..
            }
        ),
        "{err:?}"
    );

    let m = merchant(&store).await;
    let owner = store
        .create_user(new_user(
            "owner@gema.test",
            UserKind::Merchant,
            "owner",
            Some(m.id.clone()),
        ))
        .await
        .unwrap();
    assert_eq!(owner.merchant_id.as_deref(), Some(m.id.as_str()));
    // Merchant users and operators of other roles are not admin users.
    store
        .create_user(new_user(
            "viewer@gema.test",
            UserKind::Admin,
            "viewer",
            None,
        ))
        .await
        .unwrap();
    assert_eq!(store.count_admin_users().await.unwrap(), 1);

    let page = store.list_users(&PageRequest::first(1)).await.unwrap();
    assert_eq!(page.items, vec![admin.clone()]);
    let rest = store
        .list_users(&PageRequest {
            after: page.next_after,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 2);
    assert_eq!(rest.items[0], owner);
    assert_eq!(rest.items[1].role, "viewer");
    assert!(rest.next_after.is_none());
}

pub async fn refresh_rotates_and_reuse_revokes_the_family(store: Arc<dyn Store>) {
    let user = store
        .create_user(new_user("a@gema.test", UserKind::Admin, "admin", None))
        .await
        .unwrap();
    let first = store
        .create_session(session(&user.id, 1, 10_000))
        .await
        .unwrap();
    let (live, who) = store
        .session_by_access("access-1", 10_001)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(live, first);
    assert_eq!(who, user);
    // An expired access token is not a session.
    assert!(
        store
            .session_by_access("access-1", 10_000 + 900_000)
            .await
            .unwrap()
            .is_none()
    );

    let RefreshOutcome::Rotated {
        session: second, ..
    } = store
        .refresh_session("refresh-1", session("ignored", 2, 20_000))
        .await
        .unwrap()
    else {
        panic!("first refresh must rotate");
    };
    assert_eq!(second.family_id, first.family_id);
    assert_eq!(second.user_id, user.id);
    // The old pair is dead, the new one works.
    assert!(
        store
            .session_by_access("access-1", 20_001)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .session_by_access("access-2", 20_001)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        store.list_sessions(&user.id, 20_001).await.unwrap(),
        vec![*second.clone()]
    );

    // The old refresh token again: reuse. The whole family dies, including the new pair.
    let outcome = store
        .refresh_session("refresh-1", session("ignored", 3, 30_000))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        RefreshOutcome::Reused {
            family_id: first.family_id.clone(),
            user_id: user.id.clone()
        }
    );
    assert!(
        store
            .session_by_access("access-2", 30_001)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store
            .refresh_session("refresh-2", session("ignored", 4, 30_002))
            .await
            .unwrap(),
        RefreshOutcome::Invalid
    );
    assert!(
        store
            .list_sessions(&user.id, 30_003)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .refresh_session("refresh-unknown", session("x", 5, 30_004))
            .await
            .unwrap(),
        RefreshOutcome::Invalid
    );
}

pub async fn a_used_session_slides_but_not_past_its_refresh_expiry(store: Arc<dyn Store>) {
    let user = store
        .create_user(new_user("a@gema.test", UserKind::Admin, "admin", None))
        .await
        .unwrap();
    let s = store
        .create_session(session(&user.id, 1, 10_000))
        .await
        .unwrap();
    let expiry = |store: Arc<dyn Store>| {
        let user_id = user.id.clone();
        async move {
            store
                .list_sessions(&user_id, 10_001)
                .await
                .unwrap()
                .pop()
                .unwrap()
                .access_expires_ms
        }
    };
    assert_eq!(expiry(store.clone()).await, 910_000);
    // Less than a minute later than now: not written.
    store
        .extend_session(&s.id, 910_000 + 59_000, 20_000)
        .await
        .unwrap();
    assert_eq!(expiry(store.clone()).await, 910_000);
    // Used ten minutes later: slides to ten minutes later.
    store
        .extend_session(&s.id, 610_000 + 900_000, 610_000)
        .await
        .unwrap();
    assert_eq!(expiry(store.clone()).await, 1_510_000);
    assert!(
        store
            .session_by_access("access-1", 1_000_000)
            .await
            .unwrap()
            .is_some(),
        "a session in use stays alive past its first expiry"
    );
    // Never past the refresh token's expiry.
    store
        .extend_session(&s.id, 86_400_000 * 2, 1_400_000)
        .await
        .unwrap();
    assert_eq!(expiry(store.clone()).await, 10_000 + 86_400_000);
    // An expired session does not come back.
    let t = store
        .create_session(session(&user.id, 2, 10_000))
        .await
        .unwrap();
    store
        .extend_session(&t.id, 2_000_000 + 900_000, 2_000_000)
        .await
        .unwrap();
    assert!(
        store
            .session_by_access("access-2", 2_000_001)
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn sessions_revoke_per_user_and_on_password_change(store: Arc<dyn Store>) {
    let a = store
        .create_user(new_user("a@gema.test", UserKind::Admin, "admin", None))
        .await
        .unwrap();
    let b = store
        .create_user(new_user("b@gema.test", UserKind::Admin, "viewer", None))
        .await
        .unwrap();
    let a1 = store
        .create_session(session(&a.id, 1, 1_000))
        .await
        .unwrap();
    let _a2 = store
        .create_session(session(&a.id, 2, 1_000))
        .await
        .unwrap();
    let b1 = store
        .create_session(session(&b.id, 3, 1_000))
        .await
        .unwrap();
    assert_ne!(a1.family_id, b1.family_id);

    // B cannot revoke A's session: it is not found for B.
    let err = store
        .revoke_session(&b.id, &a1.id, 2_000)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    store.revoke_session(&a.id, &a1.id, 2_000).await.unwrap();
    assert!(
        store
            .session_by_access("access-1", 2_001)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .session_by_access("access-2", 2_001)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        store
            .refresh_session("refresh-1", session("x", 9, 2_002))
            .await
            .unwrap(),
        RefreshOutcome::Invalid
    );

    store
        .set_user_password(&a.id, "pbkdf2-sha256$1$bmV3$bmV3", 3_000)
        .await
        .unwrap();
    assert!(
        store
            .session_by_access("access-2", 3_001)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .session_by_access("access-3", 3_001)
            .await
            .unwrap()
            .is_some()
    );
    let (_, hash) = store.user_for_login("a@gema.test").await.unwrap().unwrap();
    assert_eq!(hash, "pbkdf2-sha256$1$bmV3$bmV3");
}

pub async fn login_failures_count_in_a_window(store: Arc<dyn Store>) {
    for at in [100, 200, 300] {
        store
            .record_login_failure("a@gema.test", "10.0.0.1", at, 0)
            .await
            .unwrap();
    }
    store
        .record_login_failure("b@gema.test", "10.0.0.1", 400, 0)
        .await
        .unwrap();
    // Recording a failure forgets those before the horizon: only 300 and 400 stay.
    store
        .record_login_failure("c@gema.test", "10.0.0.9", 400, 250)
        .await
        .unwrap();
    let old = store
        .login_failures("a@gema.test", "10.0.0.1", 0)
        .await
        .unwrap();
    assert_eq!(
        old,
        FailureCounts {
            by_account: 1,
            by_source: 2
        }
    );
    let counts = store
        .login_failures("a@gema.test", "10.0.0.1", 300)
        .await
        .unwrap();
    assert_eq!(
        counts,
        FailureCounts {
            by_account: 1,
            by_source: 2
        }
    );
    store.clear_login_failures("a@gema.test").await.unwrap();
    let counts = store
        .login_failures("a@gema.test", "10.0.0.2", 0)
        .await
        .unwrap();
    assert_eq!(
        counts,
        FailureCounts {
            by_account: 0,
            by_source: 0
        }
    );
}

pub async fn audit_entries_filter_and_page(store: Arc<dyn Store>) {
    for (i, (actor, action)) in [
        ("user:a", "login"),
        ("user:a", "merchant.create"),
        ("user:b", "login"),
        ("user:a", "login"),
    ]
    .into_iter()
    .enumerate()
    {
        store
            .append_audit(NewAuditEntry {
                at_ms: 1_000 * (i as i64 + 1),
                actor: actor.into(),
                action: action.into(),
                target: Some(format!("t{i}")),
                outcome: "ok".into(),
                request_id: Some(format!("req-{i}")),
                source: Some("127.0.0.1".into()),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let all = store
        .list_audit(&AuditFilter::default(), &PageRequest::first(50))
        .await
        .unwrap();
    assert_eq!(all.items.len(), 4);
    assert_eq!(all.items[1].action, "merchant.create");

    let logins_of_a = store
        .list_audit(
            &AuditFilter {
                actor: Some("user:a".into()),
                action: Some("login".into()),
                ..Default::default()
            },
            &PageRequest::first(1),
        )
        .await
        .unwrap();
    assert_eq!(logins_of_a.items.len(), 1);
    assert_eq!(logins_of_a.items[0].target.as_deref(), Some("t0"));
    let next = store
        .list_audit(
            &AuditFilter {
                actor: Some("user:a".into()),
                action: Some("login".into()),
                ..Default::default()
            },
            &PageRequest {
                after: logins_of_a.next_after,
                limit: 1,
            },
        )
        .await
        .unwrap();
    assert_eq!(next.items.len(), 1);
    assert_eq!(next.items[0].target.as_deref(), Some("t3"));
    assert!(next.next_after.is_none());

    let window = store
        .list_audit(
            &AuditFilter {
                from_ms: Some(2_000),
                to_ms: Some(4_000),
                ..Default::default()
            },
            &PageRequest::first(50),
        )
        .await
        .unwrap();
    let targets: Vec<_> = window
        .items
        .iter()
        .map(|e| e.target.clone().unwrap())
        .collect();
    assert_eq!(targets, ["t1", "t2"]);
    let by_target = store
        .list_audit(
            &AuditFilter {
                target: Some("t2".into()),
                ..Default::default()
            },
            &PageRequest::first(50),
        )
        .await
        .unwrap();
    assert_eq!(by_target.items.len(), 1);
    assert_eq!(by_target.items[0].actor, "user:b");
}

pub async fn terminal_and_device_lists_filter_by_merchant(store: Arc<dyn Store>) {
    let (
        ApprovedTerminal {
            merchant: a,
            terminal: ta,
            ..
        },
        da,
    ) = approved_terminal_with_device(&*store, "SN-a").await;
    let (
        ApprovedTerminal {
            merchant: b,
            terminal: tb,
            ..
        },
        db,
    ) = approved_terminal_with_device(&*store, "SN-b").await;
    // An unbound device belongs to no merchant.
    store
        .create_device(NewDevice {
            serial: "SN-loose".into(),
            model: "SB-100".into(),
            firmware_version: None,
            secret_hash: "h".into(),
        })
        .await
        .unwrap();
    for (m, t, d) in [(&a, &ta, &da), (&b, &tb, &db)] {
        let terminals = store
            .list_terminals(
                &TerminalFilter {
                    merchant_id: Some(m.id.clone()),
                    ..Default::default()
                },
                &PageRequest::first(50),
            )
            .await
            .unwrap();
        assert_eq!(terminals.items, vec![t.clone()]);
        let devices = store
            .list_devices(
                &DeviceFilter {
                    merchant_id: Some(m.id.clone()),
                    ..Default::default()
                },
                &PageRequest::first(50),
            )
            .await
            .unwrap();
        assert_eq!(devices.items, vec![d.clone()]);
    }
    let all = store
        .list_devices(&DeviceFilter::default(), &PageRequest::first(50))
        .await
        .unwrap();
    assert_eq!(all.items.len(), 3);
}

pub async fn idempotency_keys_claim_replay_and_expire(store: Arc<dyn Store>) {
    use IdempotencyBegin::*;
    let begin = |key: &'static str, hash: &'static str, now: i64| {
        let store = store.clone();
        async move {
            store
                .begin_idempotency("user:a", key, hash, now, now - 86_400_000)
                .await
                .unwrap()
        }
    };
    assert_eq!(begin("k1", "h1", 1_000).await, Started);
    assert_eq!(begin("k1", "h1", 1_001).await, InProgress);
    assert_eq!(begin("k1", "h2", 1_002).await, Mismatch);
    // Another caller's key of the same name is its own.
    assert_eq!(
        store
            .begin_idempotency("user:b", "k1", "h9", 1_003, 0)
            .await
            .unwrap(),
        Started
    );
    store
        .finish_idempotency("user:a", "k1", 201, Some("{\"id\":1}"))
        .await
        .unwrap();
    assert_eq!(
        begin("k1", "h1", 1_004).await,
        Replay {
            status: 201,
            body: Some("{\"id\":1}".into())
        }
    );
    assert_eq!(begin("k1", "h2", 1_005).await, Mismatch);

    // A failed first attempt releases the key; a finished one cannot be released.
    assert_eq!(begin("k2", "h1", 2_000).await, Started);
    store.abandon_idempotency("user:a", "k2").await.unwrap();
    assert_eq!(begin("k2", "h1", 2_001).await, Started);
    store.abandon_idempotency("user:a", "k1").await.unwrap();
    assert!(matches!(begin("k1", "h1", 2_002).await, Replay { .. }));

    // After 24 hours the key is forgotten.
    assert_eq!(begin("k1", "h2", 1_000 + 86_400_001).await, Started);
}

pub async fn concurrent_claims_of_one_key_start_once(store: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .begin_idempotency("user:a", "same", "h", 5_000, 0)
                .await
                .unwrap()
        }));
    }
    let mut started = 0;
    for task in tasks {
        match task.await.unwrap() {
            IdempotencyBegin::Started => started += 1,
            IdempotencyBegin::InProgress => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(started, 1);
}

pub async fn api_tokens_have_roles_and_revoke(store: Arc<dyn Store>) {
    let ci = store
        .create_api_token("ci", "ops", None, "hash-ci")
        .await
        .unwrap();
    assert_eq!((ci.role.as_str(), ci.merchant_id.as_deref()), ("ops", None));
    let err = store
        .create_api_token("ci", "viewer", None, "hash-ci-2")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                code: "name_taken",
                ..
            }
        ),
        "{err:?}"
    );
    let err = store
        .create_api_token("pos", "viewer", Some("mer_missing"), "hash-pos")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    let m = merchant(&store).await;
    let pos = store
        .create_api_token("pos", "viewer", Some(&m.id), "hash-pos")
        .await
        .unwrap();
    assert_eq!(pos.merchant_id.as_deref(), Some(m.id.as_str()));

    let used = store.use_api_token("hash-ci").await.unwrap().unwrap();
    assert_eq!(used.id, ci.id);
    assert!(used.last_used_at.is_some());
    assert!(store.use_api_token("hash-unknown").await.unwrap().is_none());

    let revoked = store.revoke_api_token(&ci.id).await.unwrap();
    assert!(revoked.revoked_at.is_some());
    assert!(store.use_api_token("hash-ci").await.unwrap().is_none());
    // The name is free again once its token is revoked.
    store
        .create_api_token("ci", "viewer", None, "hash-ci-3")
        .await
        .unwrap();
    let err = store.revoke_api_token("tok_missing").await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    let all = store
        .list_api_tokens(&PageRequest::first(50))
        .await
        .unwrap();
    assert_eq!(all.items.len(), 3);
    assert_eq!(all.items[0].id, ci.id);
}

pub async fn totp_sets_up_enables_refuses_replays_and_spends_recovery_codes(store: Arc<dyn Store>) {
    let user = store
        .create_user(new_user("t@gema.test", UserKind::Admin, "ops", None))
        .await
        .unwrap();
    assert_eq!(store.totp_state(&user.id).await.unwrap(), None);
    store.set_totp_secret(&user.id, "FIRST").await.unwrap();
    store.set_totp_secret(&user.id, "SECRET").await.unwrap();
    assert_eq!(
        store.totp_state(&user.id).await.unwrap(),
        Some(TotpState {
            secret: "SECRET".into(),
            enabled_ms: None,
            last_step: None
        })
    );
    store
        .enable_totp(&user.id, 100, &["r1".into(), "r2".into()], 5_000)
        .await
        .unwrap();
    let state = store.totp_state(&user.id).await.unwrap().unwrap();
    assert_eq!(
        (state.enabled_ms, state.last_step),
        (Some(5_000), Some(100))
    );
    let err = store.set_totp_secret(&user.id, "OTHER").await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                code: "totp_enabled",
                ..
            }
        ),
        "{err:?}"
    );
    let err = store
        .enable_totp(&user.id, 101, &[], 6_000)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                code: "totp_not_pending",
                ..
            }
        ),
        "{err:?}"
    );

    assert!(
        !store.use_totp_step(&user.id, 100).await.unwrap(),
        "a step is used once"
    );
    assert!(!store.use_totp_step(&user.id, 99).await.unwrap());
    assert!(store.use_totp_step(&user.id, 101).await.unwrap());

    assert!(
        store
            .use_recovery_code(&user.id, "r1", 7_000)
            .await
            .unwrap()
    );
    assert!(
        !store
            .use_recovery_code(&user.id, "r1", 7_001)
            .await
            .unwrap()
    );
    assert!(
        !store
            .use_recovery_code(&user.id, "nope", 7_002)
            .await
            .unwrap()
    );

    store.disable_totp(&user.id).await.unwrap();
    assert_eq!(store.totp_state(&user.id).await.unwrap(), None);
    assert!(
        !store
            .use_recovery_code(&user.id, "r2", 8_000)
            .await
            .unwrap()
    );
}

pub async fn users_disable_end_sessions_but_never_the_last_admin(store: Arc<dyn Store>) {
    let root = store
        .create_user(new_user("root@gema.test", UserKind::Admin, "admin", None))
        .await
        .unwrap();
    let ops = store
        .create_user(new_user("ops@gema.test", UserKind::Admin, "ops", None))
        .await
        .unwrap();
    let err = store
        .set_user_disabled(&root.id, true, 1_000)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                code: "last_admin",
                ..
            }
        ),
        "{err:?}"
    );
    store
        .create_session(session(&ops.id, 1, 1_000))
        .await
        .unwrap();
    let disabled = store.set_user_disabled(&ops.id, true, 2_000).await.unwrap();
    assert_eq!(disabled.disabled_ms, Some(2_000));
    assert!(
        store
            .session_by_access("access-1", 2_001)
            .await
            .unwrap()
            .is_none()
    );
    let enabled = store
        .set_user_disabled(&ops.id, false, 3_000)
        .await
        .unwrap();
    assert_eq!(enabled.disabled_ms, None);
    assert!(
        store
            .session_by_access("access-1", 3_001)
            .await
            .unwrap()
            .is_none(),
        "enabling again does not bring old sessions back"
    );
    let second = store
        .create_user(new_user("root2@gema.test", UserKind::Admin, "admin", None))
        .await
        .unwrap();
    store
        .set_user_disabled(&root.id, true, 4_000)
        .await
        .unwrap();
    assert_eq!(store.count_admin_users().await.unwrap(), 1);
    let err = store
        .set_user_disabled(&second.id, true, 5_000)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                code: "last_admin",
                ..
            }
        ),
        "{err:?}"
    );
    let err = store
        .set_user_disabled("usr_missing", true, 5_000)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
}

fn scoped_entry() -> NewAuditEntry {
    NewAuditEntry {
        at_ms: 5_000,
        actor: "user:usr_a".into(),
        action: "merchant.write".into(),
        target: Some("/api/v1/merchants".into()),
        request_id: Some("req-1".into()),
        source: Some("10.0.0.1".into()),
        before_json: Some("{}".into()),
        ..Default::default()
    }
}

async fn audit_rows(store: &Arc<dyn Store>) -> Vec<AuditEntry> {
    store
        .list_audit(&AuditFilter::default(), &PageRequest::first(50))
        .await
        .unwrap()
        .items
}

async fn merchant_count(store: &Arc<dyn Store>) -> usize {
    store
        .list_merchants(&MerchantFilter::default(), &PageRequest::first(50))
        .await
        .unwrap()
        .items
        .len()
}

pub async fn an_audit_scope_writes_one_row_with_its_first_committed_write(store: Arc<dyn Store>) {
    // Two write transactions in one scope: one row, written by the first, with the
    // scope's entry and the interim outcome.
    let (created, written) = audit_scope(scoped_entry(), async {
        let created = merchant(&store).await;
        store
            .update_merchant(
                &created.id,
                MerchantPatch {
                    name: Some("Warung Bu Sri 2".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        created
    })
    .await;
    let id = written.expect("the scope's first commit wrote its row");
    let rows = audit_rows(&store).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].id, id);
    assert_eq!(rows[0].outcome, SCOPED_OUTCOME);
    assert_eq!(
        (rows[0].actor.as_str(), rows[0].action.as_str()),
        ("user:usr_a", "merchant.write")
    );
    assert_eq!(rows[0].before_json.as_deref(), Some("{}"));
    assert_eq!(rows[0].request_id.as_deref(), Some("req-1"));

    // The caller finishes it.
    let after = format!("{{\"id\":\"{}\"}}", created.id);
    assert!(store.finish_audit(&id, "201", Some(&after)).await.unwrap());
    let rows = audit_rows(&store).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].outcome, "201");
    assert_eq!(rows[0].after_json.as_deref(), Some(after.as_str()));
    assert!(
        !store
            .finish_audit("aud_missing", "201", None)
            .await
            .unwrap()
    );

    // A scope whose transaction rolls back (an outlet of a missing merchant) writes no
    // row; neither does one that only reads.
    let (refused, written) = audit_scope(scoped_entry(), async {
        store
            .create_outlet(NewOutlet {
                merchant_id: "mer_missing".into(),
                name: "Nowhere".into(),
                address: None,
                city: None,
            })
            .await
    })
    .await;
    assert!(refused.is_err());
    assert_eq!(written, None);
    let ((), written) = audit_scope(scoped_entry(), async {
        store.get_merchant(&created.id).await.unwrap();
    })
    .await;
    assert_eq!(written, None);
    assert_eq!(audit_rows(&store).await.len(), 1, "no row without a commit");

    // Writes outside any scope carry no row.
    merchant(&store).await;
    assert_eq!(audit_rows(&store).await.len(), 1);

    // A write another task commits on the scope's behalf carries the row when handed
    // the scope, and the scope learns of it.
    let ((), written) = audit_scope(scoped_entry(), async {
        let carried = CarriedAuditScope::current().expect("in a scope");
        let worker_store = store.clone();
        tokio::spawn(carried.enter(async move {
            merchant(&worker_store).await;
        }))
        .await
        .unwrap();
    })
    .await;
    let id = written.expect("the worker's commit wrote the scope's row");
    assert!(audit_rows(&store).await.iter().any(|row| row.id == id));
    assert_eq!(audit_rows(&store).await.len(), 2);
    assert!(
        CarriedAuditScope::current().is_none(),
        "no scope outside one"
    );
}

pub async fn a_write_whose_audit_row_fails_is_rolled_back(store: Arc<dyn Store>, url: &str) {
    gema_store::testing::refuse_audit_rows(url).await;
    let (result, written) = audit_scope(scoped_entry(), merchant_or_error(&store)).await;
    assert!(
        matches!(result, Err(StoreError::Audit(_))),
        "the write fails with the audit row: {result:?}"
    );
    assert_eq!(written, None);
    assert_eq!(merchant_count(&store).await, 0, "the write was rolled back");
    assert!(audit_rows(&store).await.is_empty());

    // A statement-per-transaction write that an admin request reaches fails the same way.
    let device = store
        .create_device(NewDevice {
            serial: "SN-AUDIT".into(),
            model: "GM-1".into(),
            firmware_version: None,
            secret_hash: "hash-1".into(),
        })
        .await
        .unwrap();
    let (result, _) = audit_scope(scoped_entry(), store.revoke_device_secret(&device.id)).await;
    assert!(matches!(result, Err(StoreError::Audit(_))), "{result:?}");
    let device = store.get_device(&device.id).await.unwrap();
    assert_eq!(
        device.credential.revoked_at, None,
        "the revocation was rolled back"
    );

    // Unscoped writes are not audited, so the trigger does not touch them.
    merchant(&store).await;
    assert_eq!(merchant_count(&store).await, 1);
}

async fn merchant_or_error(store: &Arc<dyn Store>) -> StoreResult<Merchant> {
    store
        .create_merchant(NewMerchant {
            name: "Warung Bu Sri".into(),
            email: None,
            phone: None,
        })
        .await
}

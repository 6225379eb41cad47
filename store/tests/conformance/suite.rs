//! The behaviours every `Store` backend must show.

use std::sync::Arc;

use gema_store::testing;
use gema_store::*;

fn merchant(name: &str) -> NewMerchant {
    NewMerchant {
        name: name.into(),
        email: Some(format!(
            "{}@example.com",
            name.to_lowercase().replace(' ', ".")
        )),
        phone: None,
    }
}

fn device(serial: &str) -> NewDevice {
    NewDevice {
        serial: serial.into(),
        model: "SB-100".into(),
        firmware_version: Some("1.0.0".into()),
        secret_hash: format!("hash-of-{serial}"),
    }
}

fn conflict_code(err: StoreError) -> (&'static str, Option<&'static str>) {
    match err {
        StoreError::Conflict { code, field, .. } => (code, field),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

fn assert_not_found(err: StoreError, entity: &str) {
    match err {
        StoreError::NotFound { entity: e, .. } => assert_eq!(e, entity),
        other => panic!("expected {entity} not found, got {other:?}"),
    }
}

/// A merchant (approved unless told otherwise), an outlet and `n` terminals.
async fn terminals(store: &dyn Store, n: usize, approve: bool) -> (Merchant, Vec<Terminal>) {
    let m = store
        .create_merchant(merchant("Warung Sari"))
        .await
        .unwrap();
    let m = if approve {
        testing::approve(store, &m).await
    } else {
        m
    };
    let outlet = store
        .create_outlet(NewOutlet {
            merchant_id: m.id.clone(),
            name: "Pasar Baru".into(),
            address: None,
            city: Some("Jakarta".into()),
        })
        .await
        .unwrap();
    let mut ts = Vec::new();
    for i in 0..n {
        ts.push(testing::terminal(store, &outlet, &format!("A{i:02}"), None).await);
    }
    (m, ts)
}

pub async fn migrations_apply_once(store: Arc<dyn Store>) {
    let status = store.migration_status().await.unwrap();
    assert!(status.pending.is_empty(), "{status:?}");
    assert!(!status.applied.is_empty());
    assert_eq!(store.migrate().await.unwrap(), 0);
    store.ping().await.unwrap();
}

pub async fn merchants_round_trip_and_patch(store: Arc<dyn Store>) {
    let created = store.create_merchant(merchant("Toko Budi")).await.unwrap();
    assert!(created.id.starts_with("mer_"));
    assert_eq!(created.status, MerchantStatus::Pending);
    assert_eq!(store.get_merchant(&created.id).await.unwrap(), created);

    let patched = store
        .update_merchant(
            &created.id,
            MerchantPatch {
                name: Some("Toko Budi Jaya".into()),
                email: Some(None),
                phone: Some(Some("+6281234567890".into())),
            },
        )
        .await
        .unwrap();
    assert_eq!(patched.name, "Toko Budi Jaya");
    assert_eq!(patched.email, None);
    assert_eq!(patched.phone.as_deref(), Some("+6281234567890"));
    assert!(patched.updated_at >= created.updated_at);
    assert_eq!(patched.created_at, created.created_at);

    // An empty patch changes nothing but the update time.
    let same = store
        .update_merchant(&created.id, MerchantPatch::default())
        .await
        .unwrap();
    assert_eq!(same.name, patched.name);
    assert_eq!(same.phone, patched.phone);
}

pub async fn merchant_lists_page_by_cursor_and_filter(store: Arc<dyn Store>) {
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            store
                .create_merchant(merchant(&format!("M{i}")))
                .await
                .unwrap()
                .id,
        );
    }
    store
        .transition_merchant(
            &ids[1],
            &[MerchantStatus::Pending],
            MerchantStatus::Approved,
            None,
        )
        .await
        .unwrap();

    let mut seen = Vec::new();
    let mut page = PageRequest::first(2);
    loop {
        let got = store
            .list_merchants(&MerchantFilter::default(), &page)
            .await
            .unwrap();
        assert!(got.items.len() <= 2);
        seen.extend(got.items.into_iter().map(|m| m.id));
        match got.next_after {
            Some(after) => page.after = Some(after),
            None => break,
        }
    }
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "pages cover every merchant once, in id order");

    let approved = store
        .list_merchants(
            &MerchantFilter {
                status: Some(MerchantStatus::Approved),
            },
            &PageRequest::first(50),
        )
        .await
        .unwrap();
    assert_eq!(
        approved.items.iter().map(|m| &m.id).collect::<Vec<_>>(),
        vec![&ids[1]]
    );
    assert_eq!(approved.next_after, None);
}

pub async fn merchant_transitions_follow_the_rules(store: Arc<dyn Store>) {
    use MerchantStatus::*;
    let m = store.create_merchant(merchant("Kopi Kita")).await.unwrap();
    let rejected = store
        .transition_merchant(&m.id, &[Pending], Rejected, Some("KTP unreadable".into()))
        .await
        .unwrap();
    assert_eq!(rejected.status, Rejected);
    assert_eq!(rejected.status_reason.as_deref(), Some("KTP unreadable"));

    let err = store
        .transition_merchant(&m.id, &[Pending, Suspended], Approved, None)
        .await
        .unwrap_err();
    assert_eq!(conflict_code(err).0, "invalid_transition");
    assert_eq!(store.get_merchant(&m.id).await.unwrap().status, Rejected);
}

pub async fn outlets_need_an_existing_merchant(store: Arc<dyn Store>) {
    let err = store
        .create_outlet(NewOutlet {
            merchant_id: "mer_missing".into(),
            name: "Nowhere".into(),
            address: None,
            city: None,
        })
        .await
        .unwrap_err();
    assert_not_found(err, "merchant");

    let (m, _) = terminals(&*store, 0, false).await;
    let other = store.create_merchant(merchant("Other")).await.unwrap();
    store
        .create_outlet(NewOutlet {
            merchant_id: other.id.clone(),
            name: "Other outlet".into(),
            address: None,
            city: None,
        })
        .await
        .unwrap();
    let mine = store
        .list_outlets(
            &OutletFilter {
                merchant_id: Some(m.id.clone()),
            },
            &PageRequest::first(50),
        )
        .await
        .unwrap();
    assert_eq!(mine.items.len(), 1);
    assert_eq!(mine.items[0].merchant_id, m.id);

    let patched = store
        .update_outlet(
            &mine.items[0].id,
            OutletPatch {
                city: Some(None),
                ..OutletPatch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(patched.city, None);
    assert_eq!(patched.name, "Pasar Baru");
}

pub async fn terminal_labels_are_unique_per_outlet(store: Arc<dyn Store>) {
    let (_, ts) = terminals(&*store, 2, true).await;
    let err = store
        .create_terminal(NewTerminal {
            outlet_id: ts[0].outlet_id.clone(),
            label: ts[0].label.clone(),
            name: None,
            payment_ref: None,
            static_qris: None,
        })
        .await
        .unwrap_err();
    assert_eq!(conflict_code(err), ("label_taken", Some("label")));

    let err = store
        .update_terminal(
            &ts[1].id,
            TerminalPatch {
                label: Some(ts[0].label.clone()),
                ..TerminalPatch::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(conflict_code(err), ("label_taken", Some("label")));

    // The same label in another outlet is fine.
    let (_, other) = terminals(&*store, 1, true).await;
    assert_eq!(other[0].label, ts[0].label);

    let renamed = store
        .update_terminal(
            &ts[1].id,
            TerminalPatch {
                label: Some("KASIR2".into()),
                name: Some(Some("Second till".into())),
                payment_ref: None,
                static_qris: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(renamed.label, "KASIR2");
    let listed = store
        .list_terminals(
            &TerminalFilter {
                outlet_id: Some(ts[0].outlet_id.clone()),
                ..Default::default()
            },
            &PageRequest::first(50),
        )
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 2);
}

pub async fn device_serials_are_unique(store: Arc<dyn Store>) {
    let d = store.create_device(device("SN-0001")).await.unwrap();
    assert!(d.id.starts_with("dev_"));
    assert_eq!(d.status, DeviceStatus::Active);
    assert_eq!(d.terminal_id, None);
    assert_eq!(store.get_device(&d.id).await.unwrap(), d);

    let err = store.create_device(device("SN-0001")).await.unwrap_err();
    assert_eq!(conflict_code(err), ("serial_taken", Some("serial")));
    let all = store
        .list_devices(&DeviceFilter::default(), &PageRequest::first(50))
        .await
        .unwrap();
    assert_eq!(all.items.len(), 1, "the duplicate left no row behind");

    let disabled = store
        .update_device(
            &d.id,
            DevicePatch {
                status: Some(DeviceStatus::Disabled),
                firmware_version: Some(Some("1.1.0".into())),
                model: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(disabled.status, DeviceStatus::Disabled);
    assert_eq!(disabled.firmware_version.as_deref(), Some("1.1.0"));
    let listed = store
        .list_devices(
            &DeviceFilter {
                status: Some(DeviceStatus::Active),
                terminal_id: None,
                ..Default::default()
            },
            &PageRequest::first(50),
        )
        .await
        .unwrap();
    assert!(listed.items.is_empty());
}

pub async fn device_credentials_rotate_and_revoke(store: Arc<dyn Store>) {
    let d = store.create_device(device("SN-0002")).await.unwrap();
    assert_eq!(d.credential.status, CredentialStatus::Active);
    assert_eq!(
        store.device_secret_hash(&d.id).await.unwrap().as_deref(),
        Some("hash-of-SN-0002")
    );

    let rotated = store.set_device_secret_hash(&d.id, "second").await.unwrap();
    assert!(rotated.credential.issued_at >= d.credential.issued_at);
    assert_eq!(
        store.device_secret_hash(&d.id).await.unwrap().as_deref(),
        Some("second")
    );

    let revoked = store.revoke_device_secret(&d.id).await.unwrap();
    assert_eq!(revoked.credential.status, CredentialStatus::Revoked);
    let revoked_at = revoked.credential.revoked_at.expect("revocation time");
    assert_eq!(store.device_secret_hash(&d.id).await.unwrap(), None);
    let again = store.revoke_device_secret(&d.id).await.unwrap();
    assert_eq!(again.credential.revoked_at, Some(revoked_at));

    let reissued = store.set_device_secret_hash(&d.id, "third").await.unwrap();
    assert_eq!(reissued.credential.status, CredentialStatus::Active);
    assert_eq!(reissued.credential.revoked_at, None);
}

pub async fn binding_follows_the_rules_and_keeps_history(store: Arc<dyn Store>) {
    let (_, ts) = terminals(&*store, 2, true).await;
    let d1 = store.create_device(device("SN-1")).await.unwrap();
    let d2 = store.create_device(device("SN-2")).await.unwrap();

    let bound = store.bind_device(&d1.id, &ts[0].id).await.unwrap();
    assert_eq!(bound.terminal_id.as_deref(), Some(ts[0].id.as_str()));
    // Same binding again is a no-op.
    store.bind_device(&d1.id, &ts[0].id).await.unwrap();
    assert_eq!(store.device_bindings(&d1.id).await.unwrap().len(), 1);

    let err = store.bind_device(&d2.id, &ts[0].id).await.unwrap_err();
    assert_eq!(conflict_code(err).0, "terminal_occupied");
    let err = store.bind_device(&d1.id, &ts[1].id).await.unwrap_err();
    assert_eq!(conflict_code(err).0, "device_already_bound");

    let unbound = store.unbind_device(&d1.id).await.unwrap();
    assert_eq!(unbound.terminal_id, None);
    let err = store.unbind_device(&d1.id).await.unwrap_err();
    assert_eq!(conflict_code(err).0, "device_not_bound");

    store.bind_device(&d1.id, &ts[1].id).await.unwrap();
    let history = store.device_bindings(&d1.id).await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].terminal_id, ts[0].id);
    assert!(history[0].unbound_at.is_some());
    assert_eq!(history[1].terminal_id, ts[1].id);
    assert_eq!(history[1].unbound_at, None);

    let on_terminal = store
        .list_devices(
            &DeviceFilter {
                terminal_id: Some(ts[1].id.clone()),
                status: None,
                ..Default::default()
            },
            &PageRequest::first(50),
        )
        .await
        .unwrap();
    assert_eq!(on_terminal.items.len(), 1);
    assert_eq!(on_terminal.items[0].id, d1.id);
}

pub async fn failed_binds_leave_nothing_behind(store: Arc<dyn Store>) {
    use MerchantStatus::*;
    let (pending, pending_ts) = terminals(&*store, 1, false).await;
    let d = store.create_device(device("SN-3")).await.unwrap();

    let err = store
        .bind_device(&d.id, &pending_ts[0].id)
        .await
        .unwrap_err();
    assert_eq!(
        conflict_code(err),
        ("merchant_not_approved", Some("terminal_id"))
    );

    store
        .transition_merchant(&pending.id, &[Pending], Rejected, Some("fraud".into()))
        .await
        .unwrap();
    let err = store
        .bind_device(&d.id, &pending_ts[0].id)
        .await
        .unwrap_err();
    assert_eq!(conflict_code(err).0, "merchant_not_approved");

    let err = store.bind_device(&d.id, "ter_missing").await.unwrap_err();
    assert_not_found(err, "terminal");

    let (_, ts) = terminals(&*store, 1, true).await;
    let disabled = store
        .update_device(
            &d.id,
            DevicePatch {
                status: Some(DeviceStatus::Disabled),
                ..DevicePatch::default()
            },
        )
        .await
        .unwrap();
    let err = store
        .bind_device(&disabled.id, &ts[0].id)
        .await
        .unwrap_err();
    assert_eq!(conflict_code(err).0, "device_disabled");

    let after = store.get_device(&d.id).await.unwrap();
    assert_eq!(after.terminal_id, None);
    assert!(store.device_bindings(&d.id).await.unwrap().is_empty());
}

pub async fn concurrent_binds_to_one_terminal_let_one_win(store: Arc<dyn Store>) {
    let (_, ts) = terminals(&*store, 1, true).await;
    let mut devices = Vec::new();
    for i in 0..8 {
        devices.push(
            store
                .create_device(device(&format!("SN-C{i}")))
                .await
                .unwrap(),
        );
    }
    let attempts = devices.iter().map(|d| {
        let store = store.clone();
        let device_id = d.id.clone();
        let terminal_id = ts[0].id.clone();
        tokio::spawn(async move { store.bind_device(&device_id, &terminal_id).await })
    });
    let results = futures_util::future::join_all(attempts).await;
    let mut won = 0;
    for result in results {
        match result.expect("task") {
            Ok(_) => won += 1,
            Err(StoreError::Conflict { .. }) => {}
            Err(other) => panic!("a losing bind must be a conflict, got {other:?}"),
        }
    }
    assert_eq!(won, 1);
    let bound = store
        .list_devices(
            &DeviceFilter {
                terminal_id: Some(ts[0].id.clone()),
                status: None,
                ..Default::default()
            },
            &PageRequest::first(50),
        )
        .await
        .unwrap();
    assert_eq!(bound.items.len(), 1);
}

pub async fn admin_tokens_are_found_by_hash_until_revoked(store: Arc<dyn Store>) {
    assert_eq!(store.count_active_admin_tokens().await.unwrap(), 0);
    let token = store.create_admin_token("bootstrap", "h1").await.unwrap();
    assert_eq!(store.count_active_admin_tokens().await.unwrap(), 1);
    let used = store.use_api_token("h1").await.unwrap().expect("found");
    assert_eq!(used.id, token.id);
    assert!(used.last_used_at.is_some());
    assert!(store.use_api_token("h2").await.unwrap().is_none());
    assert_eq!(
        store.revoke_admin_tokens_named("bootstrap").await.unwrap(),
        1
    );
    assert!(store.use_api_token("h1").await.unwrap().is_none());
    assert_eq!(store.count_active_admin_tokens().await.unwrap(), 0);
}

pub async fn unknown_ids_are_not_found(store: Arc<dyn Store>) {
    assert_not_found(store.get_merchant("mer_x").await.unwrap_err(), "merchant");
    assert_not_found(store.get_outlet("out_x").await.unwrap_err(), "outlet");
    assert_not_found(store.get_terminal("ter_x").await.unwrap_err(), "terminal");
    assert_not_found(store.get_device("dev_x").await.unwrap_err(), "device");
    assert_not_found(
        store
            .update_merchant("mer_x", MerchantPatch::default())
            .await
            .unwrap_err(),
        "merchant",
    );
    assert_not_found(store.unbind_device("dev_x").await.unwrap_err(), "device");
    assert_not_found(store.device_bindings("dev_x").await.unwrap_err(), "device");
    assert_not_found(
        store.device_secret_hash("dev_x").await.unwrap_err(),
        "device",
    );
    assert_not_found(
        store.revoke_device_secret("dev_x").await.unwrap_err(),
        "device",
    );
    assert_not_found(
        store
            .create_terminal(NewTerminal {
                outlet_id: "out_x".into(),
                label: "A01".into(),
                name: None,
                payment_ref: None,
                static_qris: None,
            })
            .await
            .unwrap_err(),
        "outlet",
    );
}

fn certificate(device_id: &str, serial: &str) -> gema_store::NewDeviceCertificate {
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap();
    gema_store::NewDeviceCertificate {
        serial: serial.into(),
        device_id: device_id.into(),
        fingerprint: format!("fp-{serial}"),
        key_type: "ecdsa_p256".into(),
        not_before: now,
        not_after: now + time::Duration::days(365),
        issued_via: "api".into(),
    }
}

pub async fn device_certificates_revoke_supersede_and_follow_the_credential(store: Arc<dyn Store>) {
    use gema_store::{AuthMethod, CertificateStatus};
    let d = store.create_device(device("SN-CERT")).await.unwrap();
    assert_eq!(d.last_auth, None);
    let unknown = store
        .insert_device_certificate(certificate("dev_nobody", "aa"))
        .await;
    assert!(
        matches!(unknown, Err(StoreError::NotFound { .. })),
        "{unknown:?}"
    );

    let first = store
        .insert_device_certificate(certificate(&d.id, "01"))
        .await
        .unwrap();
    assert_eq!(first.status, CertificateStatus::Active);
    let second = store
        .insert_device_certificate(certificate(&d.id, "02"))
        .await
        .unwrap();
    assert_eq!(
        store
            .device_certificate_by_fingerprint("fp-02")
            .await
            .unwrap(),
        Some(second.clone())
    );

    // Using the older certificate supersedes nothing; using the newer supersedes the older.
    assert!(
        store
            .use_device_certificate(&d.id, "01")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.get_device(&d.id).await.unwrap().last_auth,
        Some(AuthMethod::Certificate)
    );
    let superseded = store.use_device_certificate(&d.id, "02").await.unwrap();
    assert_eq!(superseded.len(), 1);
    assert_eq!(superseded[0].serial, "01");
    assert_eq!(superseded[0].status, CertificateStatus::Superseded);
    let listed = store.revoked_device_certificates(0).await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|r| r.fingerprint.as_str())
            .collect::<Vec<_>>(),
        ["fp-01"]
    );

    store
        .set_device_last_auth(&d.id, AuthMethod::Password)
        .await
        .unwrap();
    assert_eq!(
        store.get_device(&d.id).await.unwrap().last_auth,
        Some(AuthMethod::Password)
    );

    // Revoking one, then the device's credential, which takes the rest with it.
    let third = store
        .insert_device_certificate(certificate(&d.id, "03"))
        .await
        .unwrap();
    let revoked = store.revoke_device_certificate(&d.id, "02").await.unwrap();
    assert_eq!(revoked.status, CertificateStatus::Revoked);
    assert!(revoked.revoked_at.is_some());
    assert!(matches!(
        store.revoke_device_certificate("dev_other", "03").await,
        Err(StoreError::NotFound { .. })
    ));
    store.revoke_device_secret(&d.id).await.unwrap();
    let all = store.device_certificates(&d.id).await.unwrap();
    assert_eq!(
        all.iter()
            .map(|c| (c.serial.as_str(), c.status))
            .collect::<Vec<_>>(),
        [
            ("01", CertificateStatus::Superseded),
            ("02", CertificateStatus::Revoked),
            (third.serial.as_str(), CertificateStatus::Revoked),
        ]
    );
    let mut fingerprints: Vec<_> = store
        .revoked_device_certificates(0)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.fingerprint)
        .collect();
    fingerprints.sort();
    assert_eq!(fingerprints, ["fp-01", "fp-02", "fp-03"]);
    assert!(matches!(
        store.device_certificates("dev_nobody").await,
        Err(StoreError::NotFound { .. })
    ));
}

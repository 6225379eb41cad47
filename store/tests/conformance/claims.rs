//! Provisioning by claim: a claim's use limit and expiry hold under concurrency, a serial is
//! provisioned once unless an operator allows it again, and a refusal writes nothing.

use std::sync::Arc;

use gema_store::*;

const HOUR_MS: i64 = 3_600_000;

fn now_ms() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap()
}

async fn claim(store: &dyn Store, max_uses: i64, expires_at_ms: i64) -> Claim {
    store
        .create_claim(NewClaim {
            name: "batch 24A".into(),
            secret_hash: "hash-of-claim-secret".into(),
            serials: ClaimSerials::Pattern("SB24A-*".into()),
            max_uses,
            expires_at_ms,
        })
        .await
        .unwrap()
}

fn attempt(claim: &Claim, serial: &str) -> ProvisionByClaim {
    ProvisionByClaim {
        claim_id: claim.id.clone(),
        serial: serial.into(),
        model: "SB-1".into(),
        firmware_version: Some("1.0.0".into()),
        secret_hash: format!("hash-for-{serial}"),
        now_ms: now_ms(),
    }
}

pub async fn claims_round_trip_list_and_revoke(store: Arc<dyn Store>) {
    let a = claim(&*store, 10, now_ms() + HOUR_MS).await;
    let b = store
        .create_claim(NewClaim {
            name: "list".into(),
            secret_hash: "h".into(),
            serials: ClaimSerials::List(vec!["X-1".into(), "X-2".into()]),
            max_uses: 2,
            expires_at_ms: now_ms() + HOUR_MS,
        })
        .await
        .unwrap();
    assert!(a.id.starts_with("clm_"));
    assert_eq!(a.uses, 0);
    assert_eq!(a.status, ClaimStatus::Active);
    assert_eq!(store.get_claim(&b.id).await.unwrap(), b);
    assert_eq!(
        b.serials,
        ClaimSerials::List(vec!["X-1".into(), "X-2".into()])
    );
    assert_eq!(
        store.claim_secret_hash(&a.id).await.unwrap(),
        "hash-of-claim-secret"
    );
    let page = store.list_claims(&PageRequest::first(1)).await.unwrap();
    assert_eq!(page.items, vec![a.clone()]);
    let rest = store
        .list_claims(&PageRequest {
            after: page.next_after.clone(),
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(rest.items, vec![b.clone()]);

    let revoked = store.revoke_claim(&a.id).await.unwrap();
    assert_eq!(revoked.status, ClaimStatus::Revoked);
    assert!(revoked.revoked_at.is_some());
    assert_eq!(store.revoke_claim(&a.id).await.unwrap(), revoked);
    assert!(matches!(
        store.get_claim("clm_nope").await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.claim_secret_hash("clm_nope").await,
        Err(StoreError::NotFound { .. })
    ));
}

pub async fn concurrent_provisionings_never_pass_the_use_limit(store: Arc<dyn Store>) {
    let c = claim(&*store, 40, now_ms() + HOUR_MS).await;
    let attempts = (0..50).map(|i| {
        let store = store.clone();
        let attempt = attempt(&c, &format!("SB24A-{i:04}"));
        tokio::spawn(async move { store.provision_by_claim(attempt).await })
    });
    let results = futures_util::future::join_all(attempts).await;
    let mut provisioned = Vec::new();
    let mut exhausted = 0;
    for result in results {
        match result.expect("task").expect("no store error") {
            Ok(p) => provisioned.push(p),
            Err(ClaimRefusal::Exhausted) => exhausted += 1,
            Err(other) => panic!("unexpected refusal {other:?}"),
        }
    }
    assert_eq!(provisioned.len(), 40);
    assert_eq!(exhausted, 10);
    let mut uses: Vec<i64> = provisioned.iter().map(|p| p.uses).collect();
    uses.sort_unstable();
    assert_eq!(uses, (1..=40).collect::<Vec<_>>(), "each use counted once");
    for p in &provisioned {
        assert!(!p.reprovisioned);
        assert_eq!(
            p.device.terminal_id, None,
            "provisioned devices start unbound"
        );
        assert_eq!(
            store.device_secret_hash(&p.device.id).await.unwrap(),
            Some(format!("hash-for-{}", p.device.serial))
        );
    }
    assert_eq!(store.get_claim(&c.id).await.unwrap().uses, 40);
    assert_eq!(store.claim_provisionings(&c.id).await.unwrap().len(), 40);
}

pub async fn concurrent_provisionings_of_one_serial_let_one_win(store: Arc<dyn Store>) {
    let a = claim(&*store, 100, now_ms() + HOUR_MS).await;
    let b = claim(&*store, 100, now_ms() + HOUR_MS).await;
    let attempts = (0..12).map(|i| {
        let store = store.clone();
        let attempt = attempt(if i % 2 == 0 { &a } else { &b }, "SB24A-SAME");
        tokio::spawn(async move { store.provision_by_claim(attempt).await })
    });
    let results = futures_util::future::join_all(attempts).await;
    let mut won = 0;
    for result in results {
        match result.expect("task").expect("no store error") {
            Ok(_) => won += 1,
            Err(ClaimRefusal::SerialTaken) => {}
            Err(other) => panic!("unexpected refusal {other:?}"),
        }
    }
    assert_eq!(won, 1);
    let uses =
        store.get_claim(&a.id).await.unwrap().uses + store.get_claim(&b.id).await.unwrap().uses;
    assert_eq!(uses, 1, "a refused attempt takes no use");
}

pub async fn a_serial_is_provisioned_again_only_when_allowed(store: Arc<dyn Store>) {
    let c = claim(&*store, 10, now_ms() + HOUR_MS).await;
    let first = store
        .provision_by_claim(attempt(&c, "SB24A-1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store
            .provision_by_claim(attempt(&c, "SB24A-1"))
            .await
            .unwrap(),
        Err(ClaimRefusal::SerialTaken)
    );
    // A serial registered by hand is taken too.
    store
        .create_device(NewDevice {
            serial: "SB24A-HAND".into(),
            model: "SB-1".into(),
            firmware_version: None,
            secret_hash: "h".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        store
            .provision_by_claim(attempt(&c, "SB24A-HAND"))
            .await
            .unwrap(),
        Err(ClaimRefusal::SerialTaken)
    );
    assert!(matches!(
        store.allow_reprovision("SB24A-HAND").await,
        Err(StoreError::NotFound { .. })
    ));

    let allowed = store.allow_reprovision("SB24A-1").await.unwrap();
    assert!(allowed.reprovision_allowed);
    let mut again = attempt(&c, "SB24A-1");
    again.secret_hash = "the-new-hash".into();
    let second = store.provision_by_claim(again).await.unwrap().unwrap();
    assert!(second.reprovisioned);
    assert_eq!(second.device.id, first.device.id, "the same device");
    assert_eq!(
        store.device_secret_hash(&first.device.id).await.unwrap(),
        Some("the-new-hash".into())
    );
    let record = store.claim_provisionings(&c.id).await.unwrap();
    assert_eq!(record.len(), 1);
    assert_eq!(record[0].times, 2);
    assert!(!record[0].reprovision_allowed, "allowed once");
    assert_eq!(
        store
            .provision_by_claim(attempt(&c, "SB24A-1"))
            .await
            .unwrap(),
        Err(ClaimRefusal::SerialTaken)
    );
    assert_eq!(store.get_claim(&c.id).await.unwrap().uses, 2);
}

pub async fn expired_revoked_and_unknown_claims_provision_nothing(store: Arc<dyn Store>) {
    let expired = claim(&*store, 10, now_ms() - 1).await;
    assert_eq!(
        store
            .provision_by_claim(attempt(&expired, "SB24A-1"))
            .await
            .unwrap(),
        Err(ClaimRefusal::Expired)
    );
    let revoked = claim(&*store, 10, now_ms() + HOUR_MS).await;
    store.revoke_claim(&revoked.id).await.unwrap();
    assert_eq!(
        store
            .provision_by_claim(attempt(&revoked, "SB24A-1"))
            .await
            .unwrap(),
        Err(ClaimRefusal::Revoked)
    );
    let mut unknown = attempt(&revoked, "SB24A-1");
    unknown.claim_id = "clm_nope".into();
    assert_eq!(
        store.provision_by_claim(unknown).await.unwrap(),
        Err(ClaimRefusal::UnknownClaim)
    );
    let one = claim(&*store, 1, now_ms() + HOUR_MS).await;
    store
        .provision_by_claim(attempt(&one, "SB24A-2"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store
            .provision_by_claim(attempt(&one, "SB24A-3"))
            .await
            .unwrap(),
        Err(ClaimRefusal::Exhausted)
    );
    for c in [&expired, &revoked] {
        assert_eq!(store.get_claim(&c.id).await.unwrap().uses, 0);
    }
    assert!(
        store
            .list_devices(&DeviceFilter::default(), &PageRequest::first(10))
            .await
            .unwrap()
            .items
            .iter()
            .all(|d| d.serial == "SB24A-2")
    );
}

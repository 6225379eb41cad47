//! The scheduled settlement run: merchants on a daily schedule get their batch once the
//! Jakarta cut-off passed, once (a second pass, or another node, makes nothing); manual
//! merchants wait for a person; a merchant with settings of its own follows them.

use std::sync::Arc;

use gema_gateway::GatewayError;
use gema_gateway::clock::ManualClock;
use gema_gateway::settlement::{
    AdjustmentInput, GenerateInput, PayoutSettingsInput, Settlement, SettlementSettings,
};
use gema_gateway::testing::temp_store;
use gema_gateway::whatsapp::{WhatsApp, WhatsAppSettings};
use gema_store::testing::payable_merchant;
use gema_store::{BatchFilter, PageRequest, PayoutSchedule, Store};
use time::OffsetDateTime;

/// A manual clock that starts at `now`.
fn clock_at(now: OffsetDateTime) -> Arc<ManualClock> {
    Arc::new(ManualClock::new(
        i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap(),
    ))
}

/// The settlement service on `store` and `clock`, with no WhatsApp sender configured (no
/// payout notices).
fn settlement(
    store: &Arc<dyn Store>,
    clock: &Arc<ManualClock>,
    settings: SettlementSettings,
) -> Settlement {
    let whatsapp = WhatsApp::new(
        store.clone(),
        clock.clone(),
        WhatsAppSettings::default(),
        "test".into(),
    );
    Settlement::new(store.clone(), clock.clone(), settings, whatsapp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_schedule_batches_once_after_its_cutoff() {
    let (store, _dir) = temp_store().await;
    let mut merchants = Vec::new();
    for tag in ["daily", "manual", "own"] {
        let t = payable_merchant(&*store, tag, &format!("SCH-{tag}")).await;
        merchants.push(t.merchant.id);
    }
    // Ledger ids carry the real time, so the clock starts at the real now.
    let now = OffsetDateTime::now_utc();
    let clock = clock_at(now);
    let service = settlement(
        &store,
        &clock,
        SettlementSettings {
            schedule: PayoutSchedule::Daily,
            minimum_payout: 1,
            // The cut-off is the minute that just passed, in Jakarta.
            cutoff_time: {
                let local =
                    (now - time::Duration::minutes(1)).to_offset(gema_gateway::settlement::JAKARTA);
                format!("{:02}:{:02}", local.hour(), local.minute())
            },
            ..SettlementSettings::default()
        },
    );
    // One merchant pays out by hand, one has a weekly schedule whose day is not today.
    service
        .put_payout_settings(
            &merchants[1],
            PayoutSettingsInput {
                schedule: "manual".into(),
                minimum_amount: 1,
                cutoff_time: "00:00".into(),
                weekly_day: None,
            },
        )
        .await
        .unwrap();
    // The day after tomorrow: neither today nor the day the clock moves to below.
    let today = now
        .to_offset(gema_gateway::settlement::JAKARTA)
        .weekday()
        .number_from_monday();
    let not_today = (today + 1) % 7 + 1;
    service
        .put_payout_settings(
            &merchants[2],
            PayoutSettingsInput {
                schedule: "weekly".into(),
                minimum_amount: 1,
                cutoff_time: "23:59".into(),
                weekly_day: Some(i64::from(not_today)),
            },
        )
        .await
        .unwrap();

    // Today's cut-off (HH:MM:59 of the minute before this one) is most likely before the
    // payments, so this pass finds nothing of them; tomorrow's pass takes them.
    let made = service.run_schedule().await.unwrap();
    let batches = store
        .list_settlement_batches(&BatchFilter::default(), &PageRequest::first(50))
        .await
        .unwrap()
        .items;
    // Had the payments been made before that cut-off (a minute turning over during the
    // test), this pass took them and tomorrow's finds nothing.
    if made == 0 {
        assert!(batches.is_empty());
    }
    clock.advance(std::time::Duration::from_secs(24 * 3600));
    let later = service.run_schedule().await.unwrap();
    let batches = store
        .list_settlement_batches(&BatchFilter::default(), &PageRequest::first(50))
        .await
        .unwrap()
        .items;
    assert_eq!(made + later, 1, "one batch, for the daily merchant only");
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].merchant_id, merchants[0]);
    assert_eq!(batches[0].generated_by, "schedule");
    // Again at the same time: the run is recorded, nothing new.
    assert_eq!(service.run_schedule().await.unwrap(), 0);
    let balance = store.merchant_balance(&merchants[1]).await.unwrap();
    assert_eq!(balance.unbatched, 99_300, "the manual merchant waits");
    let balance = store.merchant_balance(&merchants[2]).await.unwrap();
    assert_eq!(
        balance.unbatched, 99_300,
        "the weekly merchant waits for its day"
    );
}

/// An adjustment is any i64 the request carries; the store adds it to the batch's net
/// amount, so a release of `i64::MAX` overflowed there (a panic in a debug build, a
/// wrapped "would pay -9223372036854675809 rupiah" conflict in a release one). It is
/// refused as invalid, and the batch is unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adjustment_beyond_any_payout_is_invalid_not_an_overflow() {
    let (store, _dir) = temp_store().await;
    let merchant = payable_merchant(&*store, "adj", "ADJ-1").await.merchant.id;
    let now = OffsetDateTime::now_utc();
    let clock = clock_at(now);
    let service = settlement(
        &store,
        &clock,
        SettlementSettings {
            minimum_payout: 1,
            ..SettlementSettings::default()
        },
    );
    let made = service
        .generate(
            GenerateInput {
                cutoff: None,
                merchant_ids: Some(vec![merchant]),
            },
            "test",
        )
        .await
        .unwrap();
    let batch = made.batches[0].clone();
    for (kind, amount) in [
        ("release", i64::MAX),
        ("manual", i64::MAX),
        ("fee_correction", i64::MIN),
        ("chargeback", i64::MIN),
        ("manual", 1_000_000_000_001),
    ] {
        let input = AdjustmentInput {
            adjustment_type: kind.into(),
            amount,
            reason: "overflow".into(),
        };
        match service.adjust(&batch.id, input, "test").await {
            Err(GatewayError::Invalid { field, .. }) => assert_eq!(field, "amount"),
            other => panic!("{kind} {amount}: {other:?}"),
        }
    }
    assert_eq!(service.batch(&batch.id).await.unwrap(), batch);
}

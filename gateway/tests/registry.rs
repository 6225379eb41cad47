//! The registry's credential and validation rules against a real SQLite store.

use std::sync::Arc;

use gema_gateway::registry::DeviceInput;
use gema_gateway::{GatewayError, Registry};
use gema_store::{DevicePatch, DeviceStatus, NewMerchant, Store};

async fn registry() -> (Registry, Arc<dyn Store>, tempfile::TempDir) {
    let (store, dir) = gema_gateway::testing::temp_store().await;
    (Registry::new(store.clone()), store, dir)
}

fn sb(serial: &str) -> DeviceInput {
    DeviceInput {
        serial: serial.into(),
        model: "SB-100".into(),
        firmware_version: None,
    }
}

#[tokio::test]
async fn an_issued_secret_verifies_until_rotated_or_revoked() {
    let (registry, store, _dir) = registry().await;
    let (device, first) = registry.create_device(sb("SN-1")).await.unwrap();
    assert_eq!(first.username, device.id);
    let stored = store.device_secret_hash(&device.id).await.unwrap().unwrap();
    assert!(!stored.contains(first.secret.expose()), "stored in clear");

    assert!(
        registry
            .verify_device_secret(&device.id, first.secret.expose())
            .await
            .unwrap()
    );
    assert!(
        !registry
            .verify_device_secret(&device.id, "guess")
            .await
            .unwrap()
    );
    assert!(
        !registry
            .verify_device_secret("dev_unknown", first.secret.expose())
            .await
            .unwrap()
    );

    let (_, second) = registry.rotate_device_secret(&device.id).await.unwrap();
    assert!(
        !registry
            .verify_device_secret(&device.id, first.secret.expose())
            .await
            .unwrap()
    );
    assert!(
        registry
            .verify_device_secret(&device.id, second.secret.expose())
            .await
            .unwrap()
    );

    registry.revoke_device_secret(&device.id).await.unwrap();
    assert!(
        !registry
            .verify_device_secret(&device.id, second.secret.expose())
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn a_disabled_device_does_not_verify() {
    let (registry, _store, _dir) = registry().await;
    let (device, issued) = registry.create_device(sb("SN-2")).await.unwrap();
    registry
        .update_device(
            &device.id,
            DevicePatch {
                status: Some(DeviceStatus::Disabled),
                ..DevicePatch::default()
            },
        )
        .await
        .unwrap();
    assert!(
        !registry
            .verify_device_secret(&device.id, issued.secret.expose())
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn invalid_input_names_the_field_and_writes_nothing() {
    let (registry, store, _dir) = registry().await;
    let err = registry
        .create_merchant(NewMerchant {
            name: "Warung".into(),
            email: Some("not-an-email".into()),
            phone: None,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, GatewayError::Invalid { field: "email", .. }),
        "{err:?}"
    );
    let err = registry.create_device(sb("has space")).await.unwrap_err();
    assert!(
        matches!(
            err,
            GatewayError::Invalid {
                field: "serial",
                ..
            }
        ),
        "{err:?}"
    );

    let merchants = store
        .list_merchants(&Default::default(), &gema_store::PageRequest::first(10))
        .await
        .unwrap();
    assert!(merchants.items.is_empty());
}

/// Whether `token` authenticates, by the daemon's one lookup of a bearer token.
async fn is_live(store: &dyn Store, token: &str) -> bool {
    store
        .use_api_token(&gema_gateway::credentials::hash_admin_token(token))
        .await
        .unwrap()
        .is_some()
}

#[tokio::test]
async fn the_bootstrap_token_is_issued_once_and_rotation_kills_the_old_one() {
    let (registry, store, _dir) = registry().await;
    let token = registry
        .ensure_bootstrap_token()
        .await
        .unwrap()
        .expect("first start");
    assert!(registry.ensure_bootstrap_token().await.unwrap().is_none());
    assert!(is_live(&*store, token.expose()).await);
    assert!(!is_live(&*store, "gema_wrong").await);

    let rotated = registry.rotate_bootstrap_token().await.unwrap();
    assert!(!is_live(&*store, token.expose()).await);
    assert!(is_live(&*store, rotated.expose()).await);
}

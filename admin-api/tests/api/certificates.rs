//! Device certificates over the API: a CSR signed by the device CA, the refusals (another
//! device's name, RSA and P-384 keys, garbage), the list, revocation, and that revoking the
//! device's credential revokes its certificates. On SQLite and on PostgreSQL.

use axum::http::StatusCode;
use serde_json::json;

use crate::helpers::{TestApi, assert_envelope, field};

/// A 2048-bit RSA CSR for `CN=dev_rsa`, made once with `openssl req -new -newkey rsa:2048`
/// (rcgen cannot make RSA keys).
const RSA_CSR: &str = include_str!("fixtures/rsa-2048.csr");

macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(crate::helpers::TestApi::with_providers(false).await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    if let Some(api) = crate::helpers::TestApi::on_postgres(false).await {
                        super::$test(api).await;
                    }
                }
            )*
        }
    };
}

on_both_backends!(
    a_csr_naming_the_device_is_signed_listed_and_audited,
    csrs_with_another_name_a_weak_key_or_garbage_are_refused_naming_the_csr,
    revoking_a_certificate_or_the_device_marks_it_revoked,
);

/// A PEM CSR with `common_name` (none when `None`) for a new key of `alg`.
pub fn csr(common_name: Option<&str>, alg: &'static rcgen::SignatureAlgorithm) -> String {
    let key = rcgen::KeyPair::generate_for(alg).unwrap();
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    if let Some(cn) = common_name {
        dn.push(rcgen::DnType::CommonName, cn);
    }
    params.distinguished_name = dn;
    params.serialize_request(&key).unwrap().pem().unwrap()
}

async fn a_csr_naming_the_device_is_signed_listed_and_audited(api: TestApi) {
    let (device, _) = api.device("SN-CERT-1").await;
    let path = format!("/api/v1/devices/{device}/certificates");
    for alg in [&rcgen::PKCS_ECDSA_P256_SHA256, &rcgen::PKCS_ED25519] {
        let r = api
            .post(&path, json!({ "csr": csr(Some(&device), alg) }))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let pem = r.body["certificate_pem"].as_str().unwrap();
        let der = gema_certs::first_certificate_der(pem).unwrap();
        assert_eq!(
            gema_certs::certificate_serial_hex(&der).unwrap(),
            r.body["serial"].as_str().unwrap()
        );
        assert!(
            r.body["chain_pem"]
                .as_str()
                .unwrap()
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        assert!(r.body["not_after"].is_string());
    }
    let listed = api.get(&path).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    let listed = listed.body.as_array().unwrap().clone();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["status"], "active");
    assert_eq!(listed[0]["key_type"], "ecdsa_p256");
    assert_eq!(listed[1]["key_type"], "ed25519");
    assert_eq!(listed[0]["issued_via"], "api");

    let audit = api.get("/api/v1/audit-logs?limit=200").await;
    assert_eq!(audit.status, StatusCode::OK);
    assert!(
        audit.body.to_string().contains("/certificates"),
        "the signing is audited: {}",
        audit.body
    );

    let unknown = api
        .post(
            "/api/v1/devices/dev_nobody/certificates",
            json!({ "csr": csr(Some("dev_nobody"), &rcgen::PKCS_ECDSA_P256_SHA256) }),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.body);
}

async fn csrs_with_another_name_a_weak_key_or_garbage_are_refused_naming_the_csr(api: TestApi) {
    let (device, _) = api.device("SN-CERT-2").await;
    let path = format!("/api/v1/devices/{device}/certificates");
    let p384 = csr(Some(&device), &rcgen::PKCS_ECDSA_P384_SHA384);
    let refused = [
        (
            csr(Some("dev_someone_else"), &rcgen::PKCS_ECDSA_P256_SHA256),
            "another name",
        ),
        (csr(None, &rcgen::PKCS_ECDSA_P256_SHA256), "no name"),
        (RSA_CSR.to_string(), "RSA"),
        (p384, "P-384"),
        ("not a csr".to_string(), "garbage"),
        (
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
                .to_string(),
            "bad DER",
        ),
        ("x".repeat(20_000), "too large"),
    ];
    for (body, why) in refused {
        let r = api.post(&path, json!({ "csr": body })).await;
        assert_envelope(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert_eq!(field(&r), "csr", "{why}: {}", r.body);
    }
    let missing = api.post(&path, json!({})).await;
    assert!(missing.status.is_client_error(), "{}", missing.body);
    assert_eq!(field(&missing), "csr", "{}", missing.body);
    let listed = api.get(&path).await;
    assert_eq!(listed.body.as_array().unwrap().len(), 0, "nothing issued");
}

async fn revoking_a_certificate_or_the_device_marks_it_revoked(api: TestApi) {
    let (device, _) = api.device("SN-CERT-3").await;
    let path = format!("/api/v1/devices/{device}/certificates");
    let mut serials = Vec::new();
    for _ in 0..2 {
        let r = api
            .post(
                &path,
                json!({ "csr": csr(Some(&device), &rcgen::PKCS_ECDSA_P256_SHA256) }),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        serials.push(r.body["serial"].as_str().unwrap().to_string());
    }
    let revoked = api
        .post(&format!("{path}/{}/revoke", serials[0]), json!({}))
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);
    assert_eq!(revoked.body["status"], "revoked");
    assert!(revoked.body["revoked_at"].is_string());
    let unknown = api.post(&format!("{path}/00ff/revoke"), json!({})).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.body);

    let r = api
        .post(
            &format!("/api/v1/devices/{device}/credentials/revoke"),
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let listed = api.get(&path).await;
    let statuses: Vec<_> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(statuses, ["revoked", "revoked"]);
    // A revoked device gets no new certificate until its credential is rotated.
    let r = api
        .post(
            &path,
            json!({ "csr": csr(Some(&device), &rcgen::PKCS_ECDSA_P256_SHA256) }),
        )
        .await;
    assert_envelope(&r, StatusCode::CONFLICT, "device_revoked");
    let device_view = api.get(&format!("/api/v1/devices/{device}")).await;
    assert_eq!(device_view.body["last_auth"], serde_json::Value::Null);
}

//! Optional mTLS on the same port: a certificate from the device CA authenticates the device
//! named in it, checked against the registry.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rumqttc::mqttbytes::v4::ConnectReturnCode;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpStream;

use crate::helpers::{RawClient, TestBroker, secret};

struct DeviceCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl DeviceCa {
    fn new() -> Self {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "Gema device CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        Self { cert, key }
    }

    fn issue(&self, device_id: &str) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, device_id);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (
            cert.der().clone(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    }
}

async fn start_with_device_ca(ca: &DeviceCa) -> TestBroker {
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("device-ca.pem");
    std::fs::write(&ca_path, ca.cert.pem()).unwrap();
    // The broker reads the device CA once, at start.
    TestBroker::start_with(|c| c.tls.client_ca = Some(ca_path.clone())).await
}

async fn client_with_cert(
    t: &TestBroker,
    cert: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
) -> std::io::Result<RawClient<tokio_rustls::client::TlsStream<TcpStream>>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut &t.ca_pem[..]) {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match cert {
        Some((c, k)) => builder.with_client_auth_cert(vec![c], k).unwrap(),
        None => builder.with_no_client_auth(),
    };
    let tcp = TcpStream::connect(t.broker.tls_addr()).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    Ok(RawClient::new(tls))
}

#[tokio::test]
async fn a_device_certificate_authenticates_without_a_password() {
    let ca = DeviceCa::new();
    let t = start_with_device_ca(&ca).await;
    let mut c = client_with_cert(&t, Some(ca.issue("a"))).await.unwrap();
    let ack = c.connect_as("a", "", |c| c.login = None).await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    c.ping().await;
}

#[tokio::test]
async fn a_certificate_cannot_be_used_for_another_device_or_an_unknown_one() {
    let ca = DeviceCa::new();
    let t = start_with_device_ca(&ca).await;
    let mut c = client_with_cert(&t, Some(ca.issue("a"))).await.unwrap();
    let ack = c.connect_as("b", &secret("b"), |_| {}).await;
    assert_eq!(ack.code, ConnectReturnCode::NotAuthorized);

    let mut c = client_with_cert(&t, Some(ca.issue("a"))).await.unwrap();
    let ack = c.connect_as("b", "", |c| c.login = None).await;
    assert_eq!(ack.code, ConnectReturnCode::BadClientId);

    let mut c = client_with_cert(&t, Some(ca.issue("unknown")))
        .await
        .unwrap();
    let ack = c.connect_as("unknown", "", |c| c.login = None).await;
    assert_eq!(ack.code, ConnectReturnCode::NotAuthorized);
}

#[tokio::test]
async fn a_certificate_from_another_ca_fails_the_handshake_and_passwords_still_work() {
    let ca = DeviceCa::new();
    let t = start_with_device_ca(&ca).await;
    let other = DeviceCa::new();
    let refused = match client_with_cert(&t, Some(other.issue("a"))).await {
        // TLS 1.3: the client learns of the refusal on its first read.
        Ok(mut c) => {
            let mut connect = rumqttc::mqttbytes::v4::Connect::new("a");
            connect.login = None;
            c.send(&rumqttc::mqttbytes::v4::Packet::Connect(connect))
                .await;
            c.recv().await.is_none()
        }
        Err(_) => true,
    };
    assert!(refused);

    let mut c = client_with_cert(&t, None).await.unwrap();
    let ack = c.connect_as("a", &secret("a"), |_| {}).await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
}

#[tokio::test]
async fn the_authenticator_sees_the_certificates_serial_and_fingerprint_and_can_refuse_it() {
    let ca = DeviceCa::new();
    let t = start_with_device_ca(&ca).await;
    let (cert, key) = ca.issue("a");
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).unwrap();
    let serial = parsed
        .tbs_certificate
        .raw_serial()
        .iter()
        .skip_while(|b| **b == 0)
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    let fingerprint = gema_certs::certificate_fingerprint(cert.as_ref());

    let mut c = client_with_cert(&t, Some((cert.clone(), key.clone_key())))
        .await
        .unwrap();
    let ack = c.connect_as("a", "", |c| c.login = None).await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    assert_eq!(
        t.registry.presented_certificates.lock().unwrap().clone(),
        [gema_broker::ClientCertificate {
            serial,
            fingerprint: fingerprint.clone(),
        }]
    );

    // Revoked: the handshake completes, CONNECT is refused with 0x05.
    t.registry
        .revoked_certificates
        .lock()
        .unwrap()
        .push(fingerprint);
    let mut c = client_with_cert(&t, Some((cert, key))).await.unwrap();
    let ack = c.connect_as("a", "", |c| c.login = None).await;
    assert_eq!(ack.code, ConnectReturnCode::NotAuthorized);
}

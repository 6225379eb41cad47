//! TLS for the device listener: a rustls server configuration built once, whose certificate
//! is held behind a resolver so it can be swapped without a restart, and optional device
//! client certificates (mTLS) verified against the device CA.
//!
//! Certificate files are read at start and on reload only, never per accept.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{
    ClientHello, ResolvesServerCert, ServerSessionMemoryCache, WebPkiClientVerifier,
};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};

use crate::error::BrokerError;

/// Server certificate and key, reloadable.
#[derive(Debug)]
pub(crate) struct ReloadableCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    /// Modification times seen at the last load.
    seen: Mutex<(Option<SystemTime>, Option<SystemTime>)>,
}

fn mtime(path: &Path) -> Option<SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn tls_err(path: &Path, reason: impl ToString) -> BrokerError {
    BrokerError::Tls {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

pub(crate) fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, BrokerError> {
    let pem = fs::read(path).map_err(|e| tls_err(path, e))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err(path, e))?;
    if certs.is_empty() {
        return Err(tls_err(path, "no PEM certificate"));
    }
    Ok(certs)
}

fn load_certified_key(cert_path: &Path, key_path: &Path) -> Result<Arc<CertifiedKey>, BrokerError> {
    let certs = load_certs(cert_path)?;
    let pem = fs::read(key_path).map_err(|e| tls_err(key_path, e))?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| tls_err(key_path, e))?
        .ok_or_else(|| tls_err(key_path, "no PEM private key"))?;
    let signing =
        rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| tls_err(key_path, e))?;
    let certified = CertifiedKey::new(certs, signing);
    certified.keys_match().map_err(|e| tls_err(cert_path, e))?;
    Ok(Arc::new(certified))
}

impl ReloadableCert {
    pub(crate) fn load(cert_path: &Path, key_path: &Path) -> Result<Self, BrokerError> {
        let seen = (mtime(cert_path), mtime(key_path));
        let current = load_certified_key(cert_path, key_path)?;
        Ok(Self {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            current: RwLock::new(current),
            seen: Mutex::new(seen),
        })
    }

    /// Re-reads both files. On error the previous certificate stays in service.
    pub(crate) fn reload(&self) -> Result<(), BrokerError> {
        let seen = (mtime(&self.cert_path), mtime(&self.key_path));
        let fresh = load_certified_key(&self.cert_path, &self.key_path)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = seen;
        metrics::counter!("gema_broker_certificate_reloads_total").increment(1);
        tracing::info!(cert = %self.cert_path.display(), "server certificate reloaded");
        Ok(())
    }

    /// Reloads if either file's modification time changed since the last load.
    pub(crate) fn reload_if_changed(&self) -> Result<bool, BrokerError> {
        let now = (mtime(&self.cert_path), mtime(&self.key_path));
        let changed = *self.seen.lock().unwrap_or_else(|e| e.into_inner()) != now;
        if changed {
            self.reload()?;
        }
        Ok(changed)
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

/// Builds the server configuration: TLS 1.2 and 1.3, session resumption (stateful cache and
/// tickets), and client certificates optional-but-verified when a device CA is given.
pub(crate) fn server_config(
    cert: Arc<ReloadableCert>,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, BrokerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| BrokerError::TlsConfig(e.to_string()))?;
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in load_certs(ca)? {
                roots.add(c).map_err(|e| tls_err(ca, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider_for(&provider),
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| BrokerError::TlsConfig(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(cert);
    config.session_storage = ServerSessionMemoryCache::new(4096);
    config.ticketer =
        rustls::crypto::ring::Ticketer::new().map_err(|e| BrokerError::TlsConfig(e.to_string()))?;
    Ok(Arc::new(config))
}

fn provider_for(p: &Arc<CryptoProvider>) -> Arc<CryptoProvider> {
    p.clone()
}

/// The device id named by a client certificate (its subject common name, which must be a
/// valid device id), and the certificate's serial and fingerprint.
pub(crate) fn device_id_from_certificate(
    cert: &CertificateDer<'_>,
) -> Option<(String, crate::auth::ClientCertificate)> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let raw = parsed.tbs_certificate.raw_serial();
    let first = raw.iter().position(|b| *b != 0).unwrap_or(raw.len());
    let certificate = crate::auth::ClientCertificate {
        serial: hex(&raw[first..]),
        fingerprint: hex(ring::digest::digest(&ring::digest::SHA256, cert.as_ref()).as_ref()),
    };
    let cn = parsed
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_owned();
    gema_firmware_protocol::topic::validate_device_id(&cn).ok()?;
    Some((cn, certificate))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

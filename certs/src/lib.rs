//! TLS material for Gema.
//!
//! Three jobs: the device CA that issues soundboxes' client certificates from their CSRs
//! (`device_ca`); and on a development or first-run install, create a private CA and a server
//! certificate signed by it (ECDSA P-256, via `rcgen`) in the data directory, so the MQTT
//! listener has something to serve with zero configuration; and for any certificate file,
//! report when it expires, so `/health/deep` and operators see an expiry coming.
//!
//! This crate reads and writes files only where it is told to; it holds no global state and
//! depends on no other workspace crate.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

mod device_ca;

pub use device_ca::{
    CsrError, DEVICE_URI_PREFIX, DeviceCa, DeviceCaFiles, DeviceCsr, DeviceKeyType,
    IssuedDeviceCertificate, MAX_CSR_PEM, certificate_fingerprint, certificate_serial_hex,
    first_certificate_der,
};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// How long the generated development CA is valid.
pub const DEV_CA_VALIDITY: Duration = Duration::days(3650);
/// How long a generated server certificate is valid.
pub const DEV_SERVER_VALIDITY: Duration = Duration::days(365);
/// A generated server certificate closer than this to its expiry is re-issued (at start,
/// and by a running daemon's periodic check; `[tls] renew_before_days` overrides it).
pub const DEV_SERVER_RENEW_BEFORE: Duration = Duration::days(30);

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("reading or writing {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("generating certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds a certificate that cannot be parsed: {reason}")]
    Parse { path: PathBuf, reason: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CertError + '_ {
    move |source| CertError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where a server's TLS material lives on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA certificate a device must trust (given to technicians).
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

/// The development PKI in one directory: `ca.pem`, `ca.key`, `server.pem`, `server.key`.
#[derive(Debug, Clone)]
pub struct DevPki {
    dir: PathBuf,
}

/// What [`DevPki::ensure`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevPkiOutcome {
    /// Everything was there and valid for long enough.
    Existing,
    /// A new CA and server certificate were created.
    CreatedCa,
    /// The CA was kept; the server certificate was missing, expiring, or lacked a host name,
    /// and was re-issued.
    ReissuedServer,
}

impl DevPki {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn files(&self) -> TlsFiles {
        TlsFiles {
            ca_cert: self.dir.join("ca.pem"),
            server_cert: self.dir.join("server.pem"),
            server_key: self.dir.join("server.key"),
        }
    }

    fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }

    /// Makes sure a CA and a server certificate for `hostnames` exist, creating or re-issuing
    /// what is missing. `hostnames` are DNS names or IP addresses put in the server
    /// certificate's subject alternative names.
    pub fn ensure(&self, hostnames: &[String]) -> Result<DevPkiOutcome, CertError> {
        self.ensure_renewing(hostnames, DEV_SERVER_RENEW_BEFORE)
    }

    /// [`DevPki::ensure`], re-issuing a server certificate that expires within
    /// `renew_before` (one of [`DEV_SERVER_VALIDITY`] or more re-issues it every time).
    pub fn ensure_renewing(
        &self,
        hostnames: &[String],
        renew_before: Duration,
    ) -> Result<DevPkiOutcome, CertError> {
        fs::create_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        let files = self.files();
        let ca_key_path = self.ca_key();

        if !files.ca_cert.exists() || !ca_key_path.exists() {
            let (ca_cert_pem, ca_key_pem) = generate_ca()?;
            write_file(&files.ca_cert, ca_cert_pem.as_bytes(), false)?;
            write_file(&ca_key_path, ca_key_pem.as_bytes(), true)?;
            self.issue_server(hostnames)?;
            return Ok(DevPkiOutcome::CreatedCa);
        }

        let needs_server = match certificate_info(&files.server_cert) {
            Ok(info) => {
                info.not_after - OffsetDateTime::now_utc() < renew_before
                    || hostnames.iter().any(|h| !info.names.contains(h))
                    || !files.server_key.exists()
            }
            Err(_) => true,
        };
        if needs_server {
            self.issue_server(hostnames)?;
            return Ok(DevPkiOutcome::ReissuedServer);
        }
        Ok(DevPkiOutcome::Existing)
    }

    /// The CA's certificate and private key, as PEM (after [`DevPki::ensure`]).
    pub fn ca_pem(&self) -> Result<(String, String), CertError> {
        let files = self.files();
        let key_path = self.ca_key();
        let cert = fs::read_to_string(&files.ca_cert).map_err(io_err(&files.ca_cert))?;
        let key = fs::read_to_string(&key_path).map_err(io_err(&key_path))?;
        Ok((cert, key))
    }

    /// Makes `ca_cert_pem` / `ca_key_pem` this directory's CA (one CA shared by several
    /// nodes, so a device that moves between them trusts every one), re-issuing the server
    /// certificate from it if the CA changed. Returns whether it changed.
    pub fn adopt_ca(
        &self,
        ca_cert_pem: &str,
        ca_key_pem: &str,
        hostnames: &[String],
    ) -> Result<bool, CertError> {
        // Refuse material that cannot sign before replacing anything on disk.
        issue_server_cert(ca_cert_pem, ca_key_pem, hostnames)?;
        fs::create_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        if self
            .ca_pem()
            .ok()
            .as_ref()
            .map(|(c, k)| (c.as_str(), k.as_str()))
            == Some((ca_cert_pem, ca_key_pem))
        {
            return Ok(false);
        }
        write_file(&self.files().ca_cert, ca_cert_pem.as_bytes(), false)?;
        write_file(&self.ca_key(), ca_key_pem.as_bytes(), true)?;
        self.issue_server(hostnames)?;
        Ok(true)
    }

    fn issue_server(&self, hostnames: &[String]) -> Result<(), CertError> {
        let files = self.files();
        let ca_key_path = self.ca_key();
        let ca_key_pem = fs::read_to_string(&ca_key_path).map_err(io_err(&ca_key_path))?;
        let ca_cert_pem = fs::read_to_string(&files.ca_cert).map_err(io_err(&files.ca_cert))?;
        let (cert_pem, key_pem) = issue_server_cert(&ca_cert_pem, &ca_key_pem, hostnames)?;
        // Each file replaced whole (a running broker may read them at any moment): it sees
        // the old pair, or a new key with the old certificate (which it refuses, keeping
        // what it serves), then the new pair.
        replace_file(&files.server_key, key_pem.as_bytes(), true)?;
        replace_file(&files.server_cert, cert_pem.as_bytes(), false)?;
        Ok(())
    }
}

/// Writes `contents` beside `path` and renames it over `path`.
fn replace_file(path: &Path, contents: &[u8], private: bool) -> Result<(), CertError> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".new");
    let temporary = path.with_file_name(name);
    write_file(&temporary, contents, private)?;
    fs::rename(&temporary, path).map_err(io_err(path))
}

fn write_file(path: &Path, contents: &[u8], private: bool) -> Result<(), CertError> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path).map_err(io_err(path))?;
    file.write_all(contents).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Gema");
    dn.push(DnType::CommonName, common_name);
    dn
}

/// A new self-signed ECDSA P-256 CA: `(certificate PEM, private key PEM)`.
pub fn generate_ca() -> Result<(String, String), CertError> {
    self_signed_ca(
        "Gema development CA",
        BasicConstraints::Unconstrained,
        DEV_CA_VALIDITY,
    )
}

/// A new self-signed ECDSA P-256 CA named `common_name` (organisation "Gema"), valid from an
/// hour ago for `validity`: `(certificate PEM, private key PEM)`.
pub(crate) fn self_signed_ca(
    common_name: &str,
    constraints: BasicConstraints,
    validity: Duration,
) -> Result<(String, String), CertError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(common_name);
    params.is_ca = IsCa::Ca(constraints);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + validity;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A server certificate for `hostnames`, signed by the given CA: `(certificate PEM, key PEM)`.
pub fn issue_server_cert(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    hostnames: &[String],
) -> Result<(String, String), CertError> {
    let ca_key = KeyPair::from_pem(ca_key_pem)?;
    let ca_params = CertificateParams::from_ca_cert_pem(ca_cert_pem)?;
    let ca_cert = ca_params.self_signed(&ca_key)?;

    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(hostnames.to_vec())?;
    params.distinguished_name = distinguished_name("Gema MQTT server");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + DEV_SERVER_VALIDITY;
    let cert = params.signed_by(&key, &ca_cert, &ca_key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// What an operator wants to know about a certificate file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    pub subject: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// DNS names and IP addresses from the subject alternative names.
    pub names: Vec<String>,
}

impl CertificateInfo {
    /// Whole days until expiry (negative once expired).
    pub fn days_left(&self, now: OffsetDateTime) -> i64 {
        (self.not_after - now).whole_days()
    }
}

/// Reads the first certificate of a PEM file.
pub fn certificate_info(path: &Path) -> Result<CertificateInfo, CertError> {
    let pem = fs::read(path).map_err(io_err(path))?;
    parse_certificate_pem(&pem).map_err(|err| match err {
        ParseError::NoCertificate => CertError::NoCertificate {
            path: path.to_path_buf(),
        },
        ParseError::Invalid(reason) => CertError::Parse {
            path: path.to_path_buf(),
            reason,
        },
    })
}

enum ParseError {
    NoCertificate,
    Invalid(String),
}

fn parse_certificate_pem(pem: &[u8]) -> Result<CertificateInfo, ParseError> {
    let der = rustls_pemfile::certs(&mut &pem[..])
        .next()
        .ok_or(ParseError::NoCertificate)?
        .map_err(|e| ParseError::Invalid(e.to_string()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| ParseError::Invalid(e.to_string()))?;
    let validity = cert.validity();
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(dns) => names.push(dns.to_string()),
                x509_parser::extensions::GeneralName::IPAddress(bytes) => {
                    if let Some(ip) = ip_from_bytes(bytes) {
                        names.push(ip.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    Ok(CertificateInfo {
        subject: cert.subject().to_string(),
        not_before: validity.not_before.to_datetime(),
        not_after: validity.not_after.to_datetime(),
        names,
    })
}

fn ip_from_bytes(bytes: &[u8]) -> Option<std::net::IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts() -> Vec<String> {
        vec![
            "localhost".into(),
            "127.0.0.1".into(),
            "gema.example".into(),
        ]
    }

    #[test]
    fn first_ensure_creates_a_ca_and_a_server_certificate_for_the_hosts() {
        let dir = tempfile::tempdir().unwrap();
        let pki = DevPki::new(dir.path());
        assert_eq!(pki.ensure(&hosts()).unwrap(), DevPkiOutcome::CreatedCa);

        let files = pki.files();
        let ca = certificate_info(&files.ca_cert).unwrap();
        assert!(ca.subject.contains("Gema development CA"), "{}", ca.subject);
        let server = certificate_info(&files.server_cert).unwrap();
        for host in hosts() {
            assert!(
                server.names.contains(&host),
                "{host} missing from {:?}",
                server.names
            );
        }
        let days = server.days_left(OffsetDateTime::now_utc());
        assert!((364..=365).contains(&days), "server valid for {days} days");
    }

    #[test]
    fn a_server_certificate_within_the_renewal_margin_is_reissued_under_the_same_ca() {
        let dir = tempfile::tempdir().unwrap();
        let pki = DevPki::new(dir.path());
        pki.ensure(&hosts()).unwrap();
        let ca = fs::read(pki.files().ca_cert).unwrap();
        let before = fs::read(pki.files().server_cert).unwrap();
        // 364 days left: outside a 30-day margin, inside a 400-day one.
        assert_eq!(
            pki.ensure_renewing(&hosts(), Duration::days(30)).unwrap(),
            DevPkiOutcome::Existing
        );
        assert_eq!(
            pki.ensure_renewing(&hosts(), Duration::days(400)).unwrap(),
            DevPkiOutcome::ReissuedServer
        );
        assert_ne!(before, fs::read(pki.files().server_cert).unwrap());
        assert_eq!(ca, fs::read(pki.files().ca_cert).unwrap(), "same CA");
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".new"))
            .collect();
        assert!(
            leftovers.is_empty(),
            "no temporary files left: {leftovers:?}"
        );
    }

    #[test]
    fn second_ensure_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        let pki = DevPki::new(dir.path());
        pki.ensure(&hosts()).unwrap();
        let before = fs::read(pki.files().server_cert).unwrap();
        assert_eq!(pki.ensure(&hosts()).unwrap(), DevPkiOutcome::Existing);
        assert_eq!(before, fs::read(pki.files().server_cert).unwrap());
    }

    #[test]
    fn a_new_host_name_reissues_the_server_certificate_under_the_same_ca() {
        let dir = tempfile::tempdir().unwrap();
        let pki = DevPki::new(dir.path());
        pki.ensure(&hosts()).unwrap();
        let ca_before = fs::read(pki.files().ca_cert).unwrap();
        let mut more = hosts();
        more.push("broker.example".into());
        assert_eq!(pki.ensure(&more).unwrap(), DevPkiOutcome::ReissuedServer);
        assert_eq!(ca_before, fs::read(pki.files().ca_cert).unwrap());
        let server = certificate_info(&pki.files().server_cert).unwrap();
        assert!(server.names.contains(&"broker.example".to_string()));
    }

    #[test]
    fn a_node_adopts_a_shared_ca_and_reissues_its_server_certificate_from_it() {
        let first = tempfile::tempdir().unwrap();
        let second = tempfile::tempdir().unwrap();
        let (a, b) = (DevPki::new(first.path()), DevPki::new(second.path()));
        a.ensure(&hosts()).unwrap();
        b.ensure(&hosts()).unwrap();
        let (ca_cert, ca_key) = a.ca_pem().unwrap();
        let server_before = fs::read(b.files().server_cert).unwrap();

        assert!(
            b.adopt_ca(&ca_cert, &ca_key, &hosts()).unwrap(),
            "a different CA is adopted"
        );
        assert_eq!(b.ca_pem().unwrap(), (ca_cert.clone(), ca_key.clone()));
        assert_ne!(server_before, fs::read(b.files().server_cert).unwrap());
        assert!(
            !b.adopt_ca(&ca_cert, &ca_key, &hosts()).unwrap(),
            "the same CA: nothing to do"
        );

        // Material that cannot sign is refused and nothing on disk changes.
        let refused = b.adopt_ca(&ca_cert, "not a key", &hosts());
        assert!(refused.is_err());
        assert_eq!(b.ca_pem().unwrap(), (ca_cert, ca_key));
    }

    #[cfg(unix)]
    #[test]
    fn private_keys_are_readable_by_the_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let pki = DevPki::new(dir.path());
        pki.ensure(&hosts()).unwrap();
        for key in [pki.files().server_key, dir.path().join("ca.key")] {
            let mode = fs::metadata(&key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", key.display());
        }
    }

    #[test]
    fn garbage_is_reported_not_panicked_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.pem");
        fs::write(&path, "not a certificate").unwrap();
        assert!(matches!(
            certificate_info(&path),
            Err(CertError::NoCertificate { .. })
        ));
        fs::write(
            &path,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(matches!(
            certificate_info(&path),
            Err(CertError::Parse { .. })
        ));
    }
}

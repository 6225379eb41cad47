//! The device CA: the authority whose client certificates identify soundboxes on the MQTT
//! port. Created in the data directory on first start (`device-ca.pem`, `device-ca.key`,
//! the key mode 0600), separate from the server CA, or the operator's own CA loaded from
//! PEM.
//!
//! It signs a device's certificate signing request (CSR) after checking it: the CSR's own
//! signature, its key (ECDSA P-256 or Ed25519 only), and its names (the subject's common
//! name and subject alternative names must all be the device id). The device keeps its
//! private key; only its public key comes here.
//!
//! Everything a CSR can contain is untrusted: parsing never panics, and every refusal is a
//! [`CsrError`] that says what was wrong without echoing key material.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, CertificateSigningRequestParams,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
    SerialNumber,
};
use time::{Duration, OffsetDateTime};

use crate::{CertError, io_err, write_file};

/// How long a generated device CA is valid.
pub const DEVICE_CA_VALIDITY: Duration = Duration::days(3650);

/// The URI form of a device id in a certificate's subject alternative names.
pub const DEVICE_URI_PREFIX: &str = "urn:gema:device:";

/// The largest CSR (PEM) looked at; a P-256 or Ed25519 CSR is well under 1 KiB.
pub const MAX_CSR_PEM: usize = 8 * 1024;

// Object identifiers compared against the CSR (as dotted strings from x509-parser).
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_ED25519: &str = "1.3.101.112";
const OID_ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";

/// Why a CSR is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrError {
    /// Not a PEM `CERTIFICATE REQUEST`, not DER inside, or too large.
    #[error("not a PEM certificate signing request: {0}")]
    Malformed(String),
    /// The CSR is not signed by the key it carries.
    #[error("the request's signature does not verify with its own key")]
    BadSignature,
    /// RSA, P-384 and every other key type: refused as weak or unsupported.
    #[error("key type {0} is not accepted; use ECDSA P-256 or Ed25519")]
    UnsupportedKey(String),
    /// The CSR asks for something this CA does not grant (an unknown extension, a CA flag).
    #[error("the request asks for something a device certificate cannot carry: {0}")]
    Unsupported(String),
    /// The CSR names no device, or a name that is not the device's.
    #[error("{0}")]
    WrongName(String),
}

/// The key of an accepted CSR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKeyType {
    EcdsaP256,
    Ed25519,
}

impl DeviceKeyType {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKeyType::EcdsaP256 => "ecdsa_p256",
            DeviceKeyType::Ed25519 => "ed25519",
        }
    }
}

/// A checked CSR: its key is acceptable and its signature verifies.
pub struct DeviceCsr {
    params: CertificateSigningRequestParams,
    key_type: DeviceKeyType,
    /// The subject's common names and the subject alternative names (URI names with
    /// [`DEVICE_URI_PREFIX`] stripped).
    names: Vec<String>,
}

impl fmt::Debug for DeviceCsr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceCsr")
            .field("key_type", &self.key_type)
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

impl DeviceCsr {
    /// Parses and checks a PEM CSR: well formed, self-signature valid, key ECDSA P-256 or
    /// Ed25519. The names are checked by [`DeviceCsr::check_names`].
    pub fn from_pem(pem: &str) -> Result<Self, CsrError> {
        if pem.len() > MAX_CSR_PEM {
            return Err(CsrError::Malformed(format!(
                "larger than {MAX_CSR_PEM} bytes"
            )));
        }
        let der = match rustls_pemfile::read_one(&mut pem.as_bytes()) {
            Ok(Some(rustls_pemfile::Item::Csr(der))) => der,
            Ok(Some(_)) => {
                return Err(CsrError::Malformed(
                    "the PEM block is not a CERTIFICATE REQUEST".into(),
                ));
            }
            Ok(None) => return Err(CsrError::Malformed("no PEM block".into())),
            Err(_) => return Err(CsrError::Malformed("the PEM cannot be read".into())),
        };
        use x509_parser::prelude::FromDer;
        let (rest, csr) =
            x509_parser::certification_request::X509CertificationRequest::from_der(der.as_ref())
                .map_err(|_| CsrError::Malformed("the DER inside is not a CSR".into()))?;
        if !rest.is_empty() {
            return Err(CsrError::Malformed("trailing bytes after the CSR".into()));
        }
        let info = &csr.certification_request_info;
        let spki = &info.subject_pki.algorithm;
        let key_oid = spki.algorithm.to_id_string();
        let key_type = if key_oid == OID_ED25519 {
            DeviceKeyType::Ed25519
        } else if key_oid == OID_EC_PUBLIC_KEY {
            let curve = spki
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| oid.to_id_string())
                .unwrap_or_default();
            if curve != OID_P256 {
                return Err(CsrError::UnsupportedKey(format!(
                    "ECDSA on curve {}",
                    if curve.is_empty() { "unknown" } else { &curve }
                )));
            }
            DeviceKeyType::EcdsaP256
        } else if key_oid == "1.2.840.113549.1.1.1" {
            return Err(CsrError::UnsupportedKey("RSA".into()));
        } else {
            return Err(CsrError::UnsupportedKey(key_oid));
        };
        // The signature algorithm must be the one that key makes (rcgen derives the
        // certificate's key algorithm from it).
        let sig_oid = csr.signature_algorithm.algorithm.to_id_string();
        let expected = match key_type {
            DeviceKeyType::EcdsaP256 => OID_ECDSA_SHA256,
            DeviceKeyType::Ed25519 => OID_ED25519,
        };
        if sig_oid != expected {
            return Err(CsrError::UnsupportedKey(format!(
                "{} signed with {sig_oid}",
                key_type.as_str()
            )));
        }
        csr.verify_signature().map_err(|_| CsrError::BadSignature)?;

        let mut names = Vec::new();
        for cn in info.subject.iter_common_name() {
            match cn.as_str() {
                Ok(cn) => names.push(cn.to_owned()),
                Err(_) => return Err(CsrError::WrongName("a common name is not text".into())),
            }
        }
        let params = CertificateSigningRequestParams::from_der(&der).map_err(|err| match err {
            rcgen::Error::UnsupportedExtension => {
                CsrError::Unsupported("an extension other than names and key usages".into())
            }
            rcgen::Error::RingUnspecified => CsrError::BadSignature,
            other => CsrError::Malformed(other.to_string()),
        })?;
        for san in &params.params.subject_alt_names {
            match san {
                SanType::DnsName(name) => names.push(name.as_str().to_owned()),
                SanType::URI(uri) => match uri.as_str().strip_prefix(DEVICE_URI_PREFIX) {
                    Some(id) => names.push(id.to_owned()),
                    None => {
                        return Err(CsrError::WrongName(format!(
                            "the URI name must be {DEVICE_URI_PREFIX}<device id>"
                        )));
                    }
                },
                _ => {
                    return Err(CsrError::WrongName(
                        "only DNS and URI names may name a device".into(),
                    ));
                }
            }
        }
        Ok(Self {
            params,
            key_type,
            names,
        })
    }

    pub fn key_type(&self) -> DeviceKeyType {
        self.key_type
    }

    /// Every name in the CSR (common names and alternative names) must be `device_id`, and
    /// there must be at least one.
    pub fn check_names(&self, device_id: &str) -> Result<(), CsrError> {
        if self.names.is_empty() {
            return Err(CsrError::WrongName(format!(
                "the request names no device; put {device_id} in the subject's common name"
            )));
        }
        if let Some(other) = self.names.iter().find(|n| n.as_str() != device_id) {
            return Err(CsrError::WrongName(format!(
                "the request names {other:?}, not this device ({device_id})"
            )));
        }
        Ok(())
    }
}

/// A certificate the device CA issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedDeviceCertificate {
    pub certificate_pem: String,
    /// The issuing CA's certificate (the chain above the device's certificate).
    pub chain_pem: String,
    /// Lowercase hex, as [`certificate_serial_hex`] reads it back.
    pub serial: String,
    /// SHA-256 of the DER, lowercase hex.
    pub fingerprint: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

/// The device CA, ready to sign. Its `Debug` never shows the key.
pub struct DeviceCa {
    cert_pem: String,
    issuer: Certificate,
    key: KeyPair,
}

impl fmt::Debug for DeviceCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceCa").finish_non_exhaustive()
    }
}

/// Where the device CA lives in a directory, and whether [`DeviceCa::ensure_files`] made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCaFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub created: bool,
}

impl DeviceCa {
    /// A new self-signed ECDSA P-256 device CA: `(certificate PEM, private key PEM)`.
    pub fn generate() -> Result<(String, String), CertError> {
        crate::self_signed_ca(
            "Gema device CA",
            BasicConstraints::Constrained(0),
            DEVICE_CA_VALIDITY,
        )
    }

    /// Makes sure `device-ca.pem` and `device-ca.key` exist in `dir`, creating a CA if
    /// either is missing (the key readable by the owner only).
    pub fn ensure_files(dir: &Path) -> Result<DeviceCaFiles, CertError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let cert = dir.join("device-ca.pem");
        let key = dir.join("device-ca.key");
        let created = !cert.exists() || !key.exists();
        if created {
            let (cert_pem, key_pem) = Self::generate()?;
            write_file(&key, key_pem.as_bytes(), true)?;
            write_file(&cert, cert_pem.as_bytes(), false)?;
        }
        Ok(DeviceCaFiles { cert, key, created })
    }

    /// Replaces the CA in `files` with the given one (a cluster's shared CA).
    pub fn write_files(
        files: &DeviceCaFiles,
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<(), CertError> {
        Self::from_pem(cert_pem, key_pem)?;
        write_file(&files.key, key_pem.as_bytes(), true)?;
        write_file(&files.cert, cert_pem.as_bytes(), false)
    }

    /// Loads a CA from its certificate and key files.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, CertError> {
        let cert_pem = fs::read_to_string(cert).map_err(io_err(cert))?;
        let key_pem = fs::read_to_string(key).map_err(io_err(key))?;
        Self::from_pem(&cert_pem, &key_pem)
    }

    /// A CA from PEM; refuses a key that does not belong to the certificate.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, CertError> {
        let key = KeyPair::from_pem(key_pem)?;
        let params = CertificateParams::from_ca_cert_pem(cert_pem)?;
        // Re-signing the parsed parameters gives rcgen its issuer (name and key id); the
        // certificate handed out in chains stays the original one.
        let issuer = params.self_signed(&key)?;
        let original = rustls_pemfile::certs(&mut cert_pem.as_bytes())
            .next()
            .and_then(Result::ok)
            .ok_or_else(|| CertError::Parse {
                path: PathBuf::from("device CA"),
                reason: "no certificate".into(),
            })?;
        let (_, parsed) = x509_parser::parse_x509_certificate(original.as_ref()).map_err(|e| {
            CertError::Parse {
                path: PathBuf::from("device CA"),
                reason: e.to_string(),
            }
        })?;
        if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(CertError::Parse {
                path: PathBuf::from("device CA"),
                reason: "the key does not belong to the certificate".into(),
            });
        }
        Ok(Self {
            cert_pem: cert_pem.to_owned(),
            issuer,
            key,
        })
    }

    /// The CA certificate (PEM), the chain given with every issued certificate.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Signs `csr` for `device_id`, valid from `not_before` to `not_after`: subject CN =
    /// the device id, a URI name `urn:gema:device:<id>`, clientAuth only, a random serial.
    /// Call [`DeviceCsr::check_names`] first; this does not look at the CSR's names.
    pub fn issue(
        &self,
        csr: &DeviceCsr,
        device_id: &str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<IssuedDeviceCertificate, CertError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Gema");
        dn.push(DnType::CommonName, device_id);
        params.distinguished_name = dn;
        params.subject_alt_names = vec![SanType::URI(
            format!("{DEVICE_URI_PREFIX}{device_id}").try_into()?,
        )];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.is_ca = IsCa::ExplicitNoCa;
        params.not_before = not_before;
        params.not_after = not_after;
        params.use_authority_key_identifier_extension = true;
        let serial = random_serial()?;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let cert = params.signed_by(&csr.params.public_key, &self.issuer, &self.key)?;
        let der = cert.der();
        Ok(IssuedDeviceCertificate {
            certificate_pem: cert.pem(),
            chain_pem: self.cert_pem.clone(),
            serial: certificate_serial_hex(der).unwrap_or_else(|| to_hex(&serial)),
            fingerprint: certificate_fingerprint(der),
            not_before,
            not_after,
        })
    }
}

/// 16 random bytes with the first two bits fixed to `01`: the DER integer is positive
/// without padding and has no leading zero byte (so the hex form is unambiguous); 126 bits
/// are random.
fn random_serial() -> Result<[u8; 16], CertError> {
    use ring::rand::SecureRandom;
    let rng = ring::rand::SystemRandom::new();
    let mut serial = [0u8; 16];
    rng.fill(&mut serial)
        .map_err(|_| CertError::Generate(rcgen::Error::RingUnspecified))?;
    serial[0] = (serial[0] & 0x7f) | 0x40;
    Ok(serial)
}

fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// SHA-256 of a certificate's DER, lowercase hex.
pub fn certificate_fingerprint(der: &[u8]) -> String {
    to_hex(ring::digest::digest(&ring::digest::SHA256, der).as_ref())
}

/// A certificate's serial number as lowercase hex (its DER integer bytes, leading zero
/// bytes dropped); `None` if the DER is not a certificate.
pub fn certificate_serial_hex(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let raw = cert.tbs_certificate.raw_serial();
    let first = raw.iter().position(|b| *b != 0).unwrap_or(raw.len());
    Some(to_hex(&raw[first..]))
}

/// PEM → DER of the first certificate.
pub fn first_certificate_der(pem: &str) -> Option<Vec<u8>> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .next()
        .and_then(Result::ok)
        .map(|c| c.as_ref().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr_for(names: &[&str], alg: &'static rcgen::SignatureAlgorithm) -> String {
        let key = KeyPair::generate_for(alg).unwrap();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        if let Some(first) = names.first() {
            dn.push(DnType::CommonName, *first);
        }
        params.distinguished_name = dn;
        params.serialize_request(&key).unwrap().pem().unwrap()
    }

    fn ca() -> DeviceCa {
        let (cert, key) = DeviceCa::generate().unwrap();
        DeviceCa::from_pem(&cert, &key).unwrap()
    }

    #[test]
    fn a_p256_and_an_ed25519_request_naming_the_device_are_signed_for_client_auth() {
        let ca = ca();
        for alg in [&rcgen::PKCS_ECDSA_P256_SHA256, &rcgen::PKCS_ED25519] {
            let csr = DeviceCsr::from_pem(&csr_for(&["dev_1"], alg)).unwrap();
            csr.check_names("dev_1").unwrap();
            let now = OffsetDateTime::now_utc();
            let issued = ca
                .issue(&csr, "dev_1", now, now + Duration::days(365))
                .unwrap();
            let der = first_certificate_der(&issued.certificate_pem).unwrap();
            let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
            let cn = cert.subject().iter_common_name().next().unwrap();
            assert_eq!(cn.as_str().unwrap(), "dev_1");
            let eku = cert.extended_key_usage().unwrap().unwrap().value;
            assert!(eku.client_auth && !eku.server_auth);
            assert_eq!(issued.serial.len(), 32, "{}", issued.serial);
            assert_eq!(certificate_serial_hex(&der).unwrap(), issued.serial);
            assert_eq!(certificate_fingerprint(&der), issued.fingerprint);
            assert_eq!(issued.chain_pem, ca.cert_pem());
        }
    }

    #[test]
    fn requests_with_another_name_a_weak_key_or_garbage_are_refused() {
        let csr =
            DeviceCsr::from_pem(&csr_for(&["dev_2"], &rcgen::PKCS_ECDSA_P256_SHA256)).unwrap();
        assert!(matches!(
            csr.check_names("dev_1"),
            Err(CsrError::WrongName(_))
        ));
        let nameless = DeviceCsr::from_pem(&csr_for(&[], &rcgen::PKCS_ECDSA_P256_SHA256)).unwrap();
        assert!(matches!(
            nameless.check_names("dev_1"),
            Err(CsrError::WrongName(_))
        ));
        assert!(matches!(
            DeviceCsr::from_pem(&csr_for(&["dev_1"], &rcgen::PKCS_ECDSA_P384_SHA384)),
            Err(CsrError::UnsupportedKey(_))
        ));
        for garbage in [
            "",
            "hello",
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ] {
            assert!(
                matches!(DeviceCsr::from_pem(garbage), Err(CsrError::Malformed(_))),
                "{garbage:?}"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn the_generated_device_ca_key_is_readable_by_the_owner_only_and_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let first = DeviceCa::ensure_files(dir.path()).unwrap();
        assert!(first.created);
        let mode = fs::metadata(&first.key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let pem = fs::read(&first.cert).unwrap();
        let second = DeviceCa::ensure_files(dir.path()).unwrap();
        assert!(!second.created);
        assert_eq!(pem, fs::read(&second.cert).unwrap());
        DeviceCa::load(&second.cert, &second.key).unwrap();
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused() {
        let (cert, _) = DeviceCa::generate().unwrap();
        let (_, other_key) = DeviceCa::generate().unwrap();
        assert!(DeviceCa::from_pem(&cert, &other_key).is_err());
    }

    /// Arbitrary bytes as PEM armour around a CSR (what a device's `up/cert_renew` or a
    /// claim carries): an error or a request, never a panic.
    fn csr_pem(der: &[u8]) -> String {
        use base64::Engine;
        let text = base64::engine::general_purpose::STANDARD.encode(der);
        format!("-----BEGIN CERTIFICATE REQUEST-----\n{text}\n-----END CERTIFICATE REQUEST-----\n")
    }

    /// A real request's DER, signed by a fresh P-256 key.
    fn csr_der() -> Vec<u8> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "dev_1");
        params.distinguished_name = dn;
        params.serialize_request(&key).unwrap().der().to_vec()
    }

    proptest::proptest! {
        #[test]
        fn the_csr_decoder_never_panics_on_arbitrary_text(text in "(?s).{0,600}") {
            let _ = DeviceCsr::from_pem(&text);
        }

        #[test]
        fn the_csr_decoder_never_panics_on_arbitrary_der(
            der in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1024),
        ) {
            let _ = DeviceCsr::from_pem(&csr_pem(&der));
        }

        /// A real request with bytes changed and cut: the DER parser and the checks after
        /// it see almost-valid structure.
        #[test]
        fn the_csr_decoder_never_panics_on_a_mangled_request(
            changes in proptest::collection::vec(
                (proptest::prelude::any::<proptest::sample::Index>(), proptest::prelude::any::<u8>()),
                0..8,
            ),
            cut in proptest::prelude::any::<proptest::sample::Index>(),
        ) {
            let mut der = csr_der();
            for (at, byte) in changes {
                let i = at.index(der.len());
                der[i] = byte;
            }
            let keep = cut.index(der.len() + 1);
            der.truncate(keep.max(der.len() / 2));
            if let Ok(csr) = DeviceCsr::from_pem(&csr_pem(&der)) {
                let _ = csr.check_names("dev_1");
            }
        }

        /// Validly signed requests naming anything (a device chooses its names): decoded
        /// or refused, and a decoded one is checked and issued without a panic.
        #[test]
        fn any_names_in_a_signed_request_never_panic(
            cn in proptest::option::of("\\PC{0,40}"),
            dns in proptest::collection::vec("[ -~]{0,30}", 0..3),
            uris in proptest::collection::vec("(urn:gema:device:)?[ -~]{0,30}", 0..3),
        ) {
            let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
            let mut params = CertificateParams::default();
            let mut dn = DistinguishedName::new();
            if let Some(cn) = &cn {
                dn.push(DnType::CommonName, cn.as_str());
            }
            params.distinguished_name = dn;
            for name in &dns {
                if let Ok(name) = rcgen::Ia5String::try_from(name.as_str()) {
                    params.subject_alt_names.push(SanType::DnsName(name));
                }
            }
            for uri in &uris {
                if let Ok(uri) = rcgen::Ia5String::try_from(uri.as_str()) {
                    params.subject_alt_names.push(SanType::URI(uri));
                }
            }
            let Ok(request) = params.serialize_request(&key) else {
                return Ok(());
            };
            let Ok(pem) = request.pem() else {
                return Ok(());
            };
            if let Ok(csr) = DeviceCsr::from_pem(&pem) {
                let ca = ca();
                let device = cn.as_deref().unwrap_or("dev_1");
                if csr.check_names(device).is_ok() {
                    let now = OffsetDateTime::now_utc();
                    let _ = ca.issue(&csr, device, now, now + Duration::days(1));
                }
            }
        }
    }
}

//! Merchants, outlets, terminals and devices: the registry's shapes.

use gema_store as store;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use super::device_ops::HealthSummaryView;
use crate::extract::double_option;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MerchantStatus {
    Pending,
    Approved,
    Rejected,
    Suspended,
}

impl From<store::MerchantStatus> for MerchantStatus {
    fn from(s: store::MerchantStatus) -> Self {
        match s {
            store::MerchantStatus::Pending => MerchantStatus::Pending,
            store::MerchantStatus::Approved => MerchantStatus::Approved,
            store::MerchantStatus::Rejected => MerchantStatus::Rejected,
            store::MerchantStatus::Suspended => MerchantStatus::Suspended,
        }
    }
}

impl From<MerchantStatus> for store::MerchantStatus {
    fn from(s: MerchantStatus) -> Self {
        match s {
            MerchantStatus::Pending => store::MerchantStatus::Pending,
            MerchantStatus::Approved => store::MerchantStatus::Approved,
            MerchantStatus::Rejected => store::MerchantStatus::Rejected,
            MerchantStatus::Suspended => store::MerchantStatus::Suspended,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    Active,
    Disabled,
}

impl From<store::DeviceStatus> for DeviceStatus {
    fn from(s: store::DeviceStatus) -> Self {
        match s {
            store::DeviceStatus::Active => DeviceStatus::Active,
            store::DeviceStatus::Disabled => DeviceStatus::Disabled,
        }
    }
}

impl From<DeviceStatus> for store::DeviceStatus {
    fn from(s: DeviceStatus) -> Self {
        match s {
            DeviceStatus::Active => store::DeviceStatus::Active,
            DeviceStatus::Disabled => store::DeviceStatus::Disabled,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CredentialStatus {
    Active,
    Revoked,
}

// ---- merchants ------------------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct Merchant {
    pub id: String,
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub status: MerchantStatus,
    pub status_reason: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl From<store::Merchant> for Merchant {
    fn from(m: store::Merchant) -> Self {
        Merchant {
            id: m.id,
            name: m.name,
            email: m.email,
            phone: m.phone,
            status: m.status.into(),
            status_reason: m.status_reason,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMerchant {
    pub name: String,
    pub email: Option<String>,
    /// Digits with an optional leading `+`; spaces and dashes are dropped.
    pub phone: Option<String>,
}

/// Absent fields stay as they are; `null` clears an optional field.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMerchant {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub email: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub phone: Option<Option<String>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusReason {
    /// Why, in words the merchant can be shown.
    pub reason: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MerchantQuery {
    pub status: Option<MerchantStatus>,
}

// ---- outlets --------------------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct Outlet {
    pub id: String,
    pub merchant_id: String,
    pub name: String,
    pub address: Option<String>,
    pub city: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl From<store::Outlet> for Outlet {
    fn from(o: store::Outlet) -> Self {
        Outlet {
            id: o.id,
            merchant_id: o.merchant_id,
            name: o.name,
            address: o.address,
            city: o.city,
            created_at: o.created_at,
            updated_at: o.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOutlet {
    pub merchant_id: String,
    pub name: String,
    pub address: Option<String>,
    pub city: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateOutlet {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub address: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub city: Option<Option<String>>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OutletQuery {
    pub merchant_id: Option<String>,
}

// ---- terminals ------------------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct Terminal {
    pub id: String,
    pub outlet_id: String,
    /// The terminal label a dynamic QRIS carries in tag 62.07 (unique within the outlet).
    pub label: String,
    pub name: Option<String>,
    /// The reference this terminal's static QR carries; a paid event for it creates a
    /// transaction for this terminal.
    pub payment_ref: Option<String>,
    /// The terminal's static QRIS, base of its dynamic QR codes.
    pub static_qris: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl From<store::Terminal> for Terminal {
    fn from(t: store::Terminal) -> Self {
        Terminal {
            id: t.id,
            outlet_id: t.outlet_id,
            label: t.label,
            name: t.name,
            payment_ref: t.payment_ref,
            static_qris: t.static_qris,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTerminal {
    pub outlet_id: String,
    /// 1–25 ASCII letters, digits, `-` or `_`.
    pub label: String,
    pub name: Option<String>,
    /// The reference the terminal's static QR carries (unique).
    pub payment_ref: Option<String>,
    /// The terminal's static QRIS payload (validated: CRC, structure, static).
    pub static_qris: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTerminal {
    pub label: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub payment_ref: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub static_qris: Option<Option<String>>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TerminalQuery {
    pub outlet_id: Option<String>,
}

// ---- devices --------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    Password,
    Certificate,
}

/// `POST /devices/{id}/certificates`: the device's certificate signing request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignCertificate {
    /// PEM `CERTIFICATE REQUEST`; ECDSA P-256 or Ed25519; its subject CN (and any subject
    /// alternative names) must be the device id.
    pub csr: String,
}

/// A certificate just issued, with the chain the device installs.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedCertificate {
    pub certificate_pem: String,
    /// The device CA's certificate.
    pub chain_pem: String,
    /// Lowercase hex.
    pub serial: String,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CertificateStatus {
    Active,
    Revoked,
    Superseded,
}

/// A certificate the device CA issued (without its PEM, which only the device keeps).
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceCertificate {
    pub serial: String,
    pub device_id: String,
    /// SHA-256 of the DER, lowercase hex.
    pub fingerprint: String,
    /// `ecdsa_p256` | `ed25519`.
    pub key_type: String,
    pub status: CertificateStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    /// `api` | `mqtt`.
    pub issued_via: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

impl From<store::DeviceCertificate> for DeviceCertificate {
    fn from(c: store::DeviceCertificate) -> Self {
        DeviceCertificate {
            serial: c.serial,
            device_id: c.device_id,
            fingerprint: c.fingerprint,
            key_type: c.key_type,
            status: match c.status {
                store::CertificateStatus::Active => CertificateStatus::Active,
                store::CertificateStatus::Revoked => CertificateStatus::Revoked,
                store::CertificateStatus::Superseded => CertificateStatus::Superseded,
            },
            not_before: c.not_before,
            not_after: c.not_after,
            issued_at: c.issued_at,
            issued_via: c.issued_via,
            revoked_at: c.revoked_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Credential {
    pub status: CredentialStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Device {
    /// Also the device's MQTT username and client id.
    pub id: String,
    pub serial: String,
    pub model: String,
    pub firmware_version: Option<String>,
    pub status: DeviceStatus,
    pub terminal_id: Option<String>,
    /// The credential's state; the secret itself is only ever in the response that issues it.
    pub credential: Credential,
    /// How the device last authenticated on the broker: `password` or `certificate`
    /// (`null`: never).
    pub last_auth: Option<AuthMethod>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Present on the device list and detail (`GET /devices`, `GET /devices/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_summary: Option<HealthSummaryView>,
}

impl From<store::Device> for Device {
    fn from(d: store::Device) -> Self {
        Device {
            id: d.id,
            serial: d.serial,
            model: d.model,
            firmware_version: d.firmware_version,
            status: d.status.into(),
            terminal_id: d.terminal_id,
            credential: Credential {
                status: match d.credential.status {
                    store::CredentialStatus::Active => CredentialStatus::Active,
                    store::CredentialStatus::Revoked => CredentialStatus::Revoked,
                },
                issued_at: d.credential.issued_at,
                revoked_at: d.credential.revoked_at,
            },
            last_auth: d.last_auth.map(|m| match m {
                store::AuthMethod::Password => AuthMethod::Password,
                store::AuthMethod::Certificate => AuthMethod::Certificate,
            }),
            created_at: d.created_at,
            updated_at: d.updated_at,
            health_summary: None,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDevice {
    /// The manufacturer's serial number, unique (ASCII letters, digits, `-`, `_`, `.`).
    pub serial: String,
    pub model: String,
    pub firmware_version: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateDevice {
    pub model: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub firmware_version: Option<Option<String>>,
    pub status: Option<DeviceStatus>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeviceQuery {
    pub terminal_id: Option<String>,
    pub status: Option<DeviceStatus>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UnbindQuery {
    /// Also end the device's live MQTT session now.
    pub kick: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BindDevice {
    pub terminal_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceBinding {
    pub id: String,
    pub device_id: String,
    pub terminal_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub bound_at: OffsetDateTime,
    /// `null` while the binding is current.
    #[serde(with = "time::serde::rfc3339::option")]
    pub unbound_at: Option<OffsetDateTime>,
}

impl From<store::DeviceBinding> for DeviceBinding {
    fn from(b: store::DeviceBinding) -> Self {
        DeviceBinding {
            id: b.id,
            device_id: b.device_id,
            terminal_id: b.terminal_id,
            bound_at: b.bound_at,
            unbound_at: b.unbound_at,
        }
    }
}

/// Everything a technician types into a device. Returned once, when a secret is issued.
#[derive(Serialize, ToSchema)]
pub struct DeviceCredentials {
    pub mqtt_host: String,
    pub mqtt_port: u16,
    /// MQTT over TLS; the device must trust the CA below.
    pub tls: bool,
    /// MQTT username: the device id.
    pub username: String,
    /// MQTT client id: must equal the device id.
    pub client_id: String,
    /// The device secret (MQTT password). Shown only in this response.
    pub secret: String,
    /// Path of the CA certificate on the Gema server.
    pub ca_certificate_path: String,
    pub ca_certificate_pem: String,
    /// Every topic of the device starts with this.
    pub topic_prefix: String,
    /// What the device subscribes to.
    pub subscribe_filter: String,
    /// Where the device publishes.
    pub publish_prefix: String,
}

/// Where the device connects, never its secret.
impl std::fmt::Debug for DeviceCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCredentials")
            .field("mqtt_host", &self.mqtt_host)
            .field("mqtt_port", &self.mqtt_port)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedDevice {
    pub device: Device,
    pub credentials: DeviceCredentials,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_credentials_debug_never_prints_the_secret() {
        let credentials = DeviceCredentials {
            mqtt_host: "gema.example".into(),
            mqtt_port: 8883,
            tls: true,
            username: "dev_1".into(),
            client_id: "dev_1".into(),
            secret: "device-secret-shown-once".into(),
            ca_certificate_path: String::new(),
            ca_certificate_pem: String::new(),
            topic_prefix: "devices/dev_1".into(),
            subscribe_filter: "devices/dev_1/down/#".into(),
            publish_prefix: "devices/dev_1/up".into(),
        };
        let shown = format!("{credentials:?}");
        assert!(!shown.contains("device-secret-shown-once"), "{shown}");
        assert!(shown.contains("dev_1"), "{shown}");
    }
}

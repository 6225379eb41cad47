//! Message types: one envelope, six downlink bodies, seven uplink bodies.
//!
//! The Rust shape is `Downlink { envelope, body }` / `Uplink { envelope, body }`. On the wire
//! the same value has two forms (see [`crate::codec`]): a flat, `"type"`-tagged JSON object,
//! and a postcard sequence `(envelope, body)` whose body is an externally tagged enum. Field
//! order and enum variant order here are the postcard wire format (a variant is sent as its
//! index): never reorder, insert or remove fields or variants without bumping
//! [`PROTOCOL_VERSION`]; JSON names (`rename`) are the JSON wire format. A new message kind
//! is appended as the last variant: no existing message's encoding changes, and a decoder
//! that predates it refuses it as an unknown kind (JSON `"type"`, postcard variant index).
//!
//! This module must never gain I/O or clocks: "now" is always a parameter.

use alloc::collections::BTreeMap;
use alloc::string::String;

use serde_nostd::{Deserialize, Serialize};

/// The protocol version this crate speaks. Any change to a message's fields or field order
/// bumps it; decoders reject every other version with `DecodeError::UnsupportedVersion`.
pub const PROTOCOL_VERSION: u16 = 1;

/// Milliseconds since the Unix epoch (UTC). Integers only: no floats anywhere on the wire.
pub type UnixMillis = i64;

/// Fields every message carries, first on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(crate = "serde_nostd")]
pub struct Envelope {
    /// Always [`PROTOCOL_VERSION`] for messages this crate accepts.
    pub version: u16,
    /// Made by the sender (a ULID is recommended), unique per logical message. A retry of the
    /// same message re-sends the same `msg_id`; acks refer to it.
    pub msg_id: String,
    /// When the sender created the message.
    pub sent_at: UnixMillis,
}

impl Envelope {
    /// An envelope of the current [`PROTOCOL_VERSION`].
    pub fn new(msg_id: impl Into<String>, sent_at: UnixMillis) -> Self {
        Envelope {
            version: PROTOCOL_VERSION,
            msg_id: msg_id.into(),
            sent_at,
        }
    }
}

/// A message from Gema to a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downlink {
    pub envelope: Envelope,
    pub body: DownlinkBody,
}

/// What a downlink says. Serialised alone (rarely useful) it is externally tagged; inside a
/// [`Downlink`] see [`crate::codec`] for the wire forms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(crate = "serde_nostd", rename_all = "snake_case")]
pub enum DownlinkBody {
    /// Topic kind `announce`.
    Announce(Announce),
    /// Topic kind `qr_show`.
    #[serde(rename = "qr_show")]
    DynamicQrShow(DynamicQrShow),
    /// Topic kind `qr_clear`.
    #[serde(rename = "qr_clear")]
    DynamicQrClear(DynamicQrClear),
    /// Topic kind `config`.
    #[serde(rename = "config")]
    ConfigPush(ConfigPush),
    /// Topic kind `command`.
    Command(Command),
    /// Topic kind `cert_renew_result`.
    CertRenewResult(CertRenewResult),
}

/// A message from a device to Gema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uplink {
    pub envelope: Envelope,
    pub body: UplinkBody,
}

/// What an uplink says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(crate = "serde_nostd", rename_all = "snake_case")]
pub enum UplinkBody {
    /// Topic kind `ack`.
    Ack(Ack),
    /// Topic kind `command_result`.
    CommandResult(CommandResult),
    /// Topic kind `heartbeat`.
    Heartbeat(Heartbeat),
    /// Topic kind `reported_config`.
    ReportedConfig(ReportedConfig),
    /// Topic kind `qr_request`.
    #[serde(rename = "qr_request")]
    DynamicQrRequest(DynamicQrRequest),
    /// Topic kind `button`.
    #[serde(rename = "button")]
    ButtonEvent(ButtonEvent),
    /// Topic kind `cert_renew`.
    CertRenew(CertRenew),
}

/// Currency of an amount. QRIS in Indonesia is rupiah only; the field exists so a reader of
/// the JSON never has to guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(crate = "serde_nostd")]
pub enum Currency {
    #[serde(rename = "IDR")]
    Idr,
}

/// Language the device speaks (and shows) in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(crate = "serde_nostd", rename_all = "snake_case")]
pub enum Language {
    /// Bahasa Indonesia (`"id"`).
    Id,
    /// English (`"en"`).
    En,
}

/// "Payment received": speak it once.
///
/// The device deduplicates on `transaction_id` (keep at least the last 50 ids): a second
/// announcement with a known id is acked `duplicate` and not spoken. An announcement received
/// after `expires_at` (device clock) is acked `expired` and not spoken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(crate = "serde_nostd")]
pub struct Announce {
    /// Gema's transaction id; the dedupe key.
    pub transaction_id: String,
    /// Whole rupiah, > 0.
    pub amount: i64,
    pub currency: Currency,
    /// Who reported the payment (`midtrans`, `xendit`, `direct`, …).
    pub provider: String,
    /// Wallet or bank the customer paid with (`GOPAY`, `OVO`, `BCA`, …) when known.
    pub issuer: Option<String>,
    pub language: Language,
    pub paid_at: UnixMillis,
    /// Do not speak after this instant.
    pub expires_at: UnixMillis,
    /// Per-device announcement counter, increasing by one per new announcement. Replays on
    /// reconnect arrive in sequence order; a gap means an announcement expired undelivered.
    pub sequence: u64,
}

/// Show a dynamic QR (devices with a screen) until it is paid, cleared or expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(crate = "serde_nostd")]
pub struct DynamicQrShow {
    /// The pending transaction the QR pays; a later `announce` or `qr_clear` with this id
    /// closes the QR.
    pub transaction_id: String,
    /// Set when this answers the device's own [`DynamicQrRequest`].
    pub request_id: Option<String>,
    /// The QRIS string to render (EMVCo TLV text, at most [`crate::limits::MAX_QR_PAYLOAD_LEN`]).
    pub payload: String,
    /// Whole rupiah, > 0; for the caption, the amount is also inside `payload`.
    pub amount: i64,
    /// Stop showing the QR at this instant; do not show it at all if already past.
    pub expires_at: UnixMillis,
}

/// Stop showing a dynamic QR, or refuse a device's QR request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(crate = "serde_nostd")]
pub struct DynamicQrClear {
    /// The QR's transaction; absent when a request was refused before a transaction existed.
    pub transaction_id: Option<String>,
    /// The device's request this answers, if any. At least one of the two ids is present.
    pub request_id: Option<String>,
    pub reason: QrClearReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(crate = "serde_nostd", rename_all = "snake_case")]
pub enum QrClearReason {
    /// Paid: an `announce` for the same transaction follows (or preceded) this.
    Paid,
    Expired,
    Cancelled,
    /// Gema could not make a QR for the device's request (no static QRIS on file, …).
    Refused,
}

/// Desired configuration (like a device shadow's `desired`), applied as a whole.
///
/// Config does not expire: it is desired state, and a newer push supersedes an older one. The
/// device applies it only if `config_version` is greater than the version it applied last,
/// then answers with a [`ReportedConfig`] carrying that version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(crate = "serde_nostd")]
pub struct ConfigPush {
    /// Increases on every change of the desired config. Named `config_version` (not
    /// `version`) so it never collides with the envelope's protocol `version` in JSON.
    pub config_version: u64,
    pub config: DeviceConfig,
}

/// The settings an operator can change remotely and a device reports back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(crate = "serde_nostd")]
pub struct DeviceConfig {
    /// 0 (mute) ..= [`crate::limits::MAX_VOLUME`].
    pub volume: u8,
    pub language: Language,
    /// Seconds between heartbeats, within [`crate::limits::HEARTBEAT_INTERVAL_S`].
    pub heartbeat_interval_s: u32,
    /// How long a dynamic QR keyed in on the device stays valid, within
    /// [`crate::limits::QR_TIMEOUT_S`].
    pub qr_timeout_s: u32,
    pub quiet_hours: Option<QuietHours>,
}

/// A daily window (device-local time, given as a UTC offset so the device needs no time-zone
/// database) during which announcements play at `volume` instead of the normal volume.
/// `start_minute > end_minute` means the window spans midnight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(crate = "serde_nostd")]
pub struct QuietHours {
    /// Minutes after local midnight, 0..1440.
    pub start_minute: u16,
    /// Minutes after local midnight, 0..1440, different from `start_minute`.
    pub end_minute: u16,
    /// Offset of the device's local time from UTC in minutes: WIB 420, WITA 480, WIT 540.
    pub utc_offset_minutes: i16,
    /// Volume during the window, 0 (silent) ..= [`crate::limits::MAX_VOLUME`].
    pub volume: u8,
}

/// Do something once. Answered by [`CommandResult`]s (`acknowledged`, then `succeeded` or
/// `failed`), or a single `expired` when received after `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(crate = "serde_nostd")]
pub struct Command {
    /// Gema's command id; the device dedupes on it and echoes it in results.
    pub command_id: String,
    pub expires_at: UnixMillis,
    pub action: CommandAction,
}

/// The command and its arguments. JSON (adjacently tagged): `{"name": "set_volume", "args":
/// {"volume": 7}}`, `{"name": "reboot"}`. Postcard: variant index, then the arguments. (Serde
/// impls in [`crate::codec`]: adjacent tagging cannot be read back by postcard.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandAction {
    SetVolume {
        volume: u8,
    },
    Reboot,
    /// Speak the last `count` announcements again (1 ..= [`crate::limits::MAX_REPLAY`]).
    ReplayLast {
        count: u8,
    },
    /// Speak today's total and number of payments.
    AnnounceDailySummary,
    /// Answer with a heartbeat now, and a `succeeded` result.
    GetStatus,
    FwUpdate(ImageUpdate),
    AudioUpdate(ImageUpdate),
}

/// Where to fetch a firmware image or audio pack, and how to check it before installing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(crate = "serde_nostd")]
pub struct ImageUpdate {
    /// `https://` (or `http://` on a private network: integrity comes from `sha256`).
    pub url: String,
    /// Lower-case hex SHA-256 of the whole image, 64 characters.
    pub sha256: String,
    /// The version the image reports once installed (compare with the heartbeat).
    pub version: String,
    /// Image size in bytes, so the device can refuse an image that does not fit.
    pub size: u64,
}

/// The device processed a downlink (announcement or dynamic-QR message).
///
/// MQTT PUBACK only says the broker session got the packet; this says the device acted on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(crate = "serde_nostd")]
pub struct Ack {
    /// `msg_id` of the downlink being acknowledged.
    pub acked_msg_id: String,
    /// The downlink's transaction id, when it had one.
    pub transaction_id: Option<String>,
    pub status: AckStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(crate = "serde_nostd", rename_all = "snake_case")]
pub enum AckStatus {
    /// The announcement was spoken.
    Spoken,
    /// A non-audio downlink (QR show/clear) was carried out.
    Processed,
    /// Already seen this transaction id: not spoken again.
    Duplicate,
    /// Received after `expires_at`: not spoken.
    Expired,
    /// Understood but refused (e.g. no screen for a QR).
    Rejected,
}

/// Progress of a [`Command`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(crate = "serde_nostd")]
pub struct CommandResult {
    pub command_id: String,
    pub state: CommandState,
    /// Small key/value output (`{"volume": "7"}`), at most
    /// [`crate::limits::MAX_RESULT_ENTRIES`] entries; empty when there is nothing to say.
    pub result: BTreeMap<String, String>,
    /// Human-readable reason, mostly for `failed`.
    pub message: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(crate = "serde_nostd", rename_all = "snake_case")]
pub enum CommandState {
    Acknowledged,
    Succeeded,
    Failed,
    /// Received after the command's `expires_at`; not carried out.
    Expired,
}

/// Periodic health report, every `heartbeat_interval_s`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(crate = "serde_nostd")]
pub struct Heartbeat {
    /// 0..=100; absent on mains-only devices.
    pub battery_pct: Option<u8>,
    pub charging: bool,
    /// Received signal strength, -150..=0 dBm; absent when not known.
    pub signal_dbm: Option<i16>,
    pub network: Network,
    pub firmware_version: String,
    pub audio_pack_version: String,
    pub uptime_s: u64,
    /// The last transaction id the device announced, if any since boot.
    pub last_transaction_id: Option<String>,
    /// The config version the device has applied (0 = none yet).
    pub config_version: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(crate = "serde_nostd")]
pub enum Network {
    #[serde(rename = "wifi")]
    Wifi,
    #[serde(rename = "2g")]
    Cellular2g,
    #[serde(rename = "3g")]
    Cellular3g,
    #[serde(rename = "4g")]
    Cellular4g,
    #[serde(rename = "ethernet")]
    Ethernet,
    #[serde(rename = "unknown")]
    Unknown,
}

/// The config the device runs with now (like a device shadow's `reported`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(crate = "serde_nostd")]
pub struct ReportedConfig {
    /// The last [`ConfigPush::config_version`] applied (0 = none yet).
    pub applied_version: u64,
    pub cause: ReportCause,
    /// Current values; they differ from the desired config after a local change (drift).
    pub config: DeviceConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(crate = "serde_nostd", rename_all = "snake_case")]
pub enum ReportCause {
    /// Answer to a config push that was applied (`applied_version` is its version).
    Applied,
    /// Answer to a config push that was refused; `applied_version` is the previous one.
    Rejected,
    /// Changed on the device (a volume button press).
    LocalChange,
    /// Sent once after boot.
    Boot,
}

/// The merchant keyed in an amount on the device and wants a dynamic QR for it. Answered by
/// [`DynamicQrShow`] or [`DynamicQrClear`] (`refused`) carrying the same `request_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(crate = "serde_nostd")]
pub struct DynamicQrRequest {
    /// Made by the device, unique per request; a retry re-sends the same id.
    pub request_id: String,
    /// Whole rupiah, > 0.
    pub amount: i64,
}

/// A button press worth telling Gema about (for support and usage statistics). Volume
/// changes are also reported as [`ReportedConfig`] with cause `local_change`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(crate = "serde_nostd")]
pub struct ButtonEvent {
    pub button: Button,
    pub press: Press,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(crate = "serde_nostd", rename_all = "snake_case")]
pub enum Button {
    VolumeUp,
    VolumeDown,
    Replay,
    Function,
    Power,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(crate = "serde_nostd", rename_all = "snake_case")]
pub enum Press {
    Short,
    Long,
    Double,
}

/// The device asks for a new client certificate before its current one expires (devices
/// that connect with a Gema-issued certificate). Answered by [`CertRenewResult`] with the same
/// `request_id`.
///
/// The device makes a new key pair, keeps the private key, and sends a certificate signing
/// request for it whose subject common name (or a DNS subject alternative name) is its
/// device id. Its current certificate keeps working until it connects with the new one:
/// from then on the old one is refused at CONNECT. So: install the new certificate, connect
/// with it, and only then discard the old one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(crate = "serde_nostd")]
pub struct CertRenew {
    /// Made by the device, unique per request.
    pub request_id: String,
    /// The PKCS#10 request as PEM (`-----BEGIN CERTIFICATE REQUEST-----`), ECDSA P-256 or
    /// Ed25519, at most [`crate::limits::MAX_CSR_PEM_LEN`] bytes.
    pub csr_pem: String,
}

/// Gema's answer to a [`CertRenew`]: the new certificate, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(crate = "serde_nostd")]
pub struct CertRenewResult {
    /// The [`CertRenew::request_id`] this answers.
    pub request_id: String,
    pub outcome: CertRenewOutcome,
}

/// JSON: `{"issued": {"serial", "not_after", "chain_pem"}}` or `{"refused": "<reason>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(crate = "serde_nostd", rename_all = "snake_case")]
pub enum CertRenewOutcome {
    Issued(RenewedCertificate),
    Refused(CertRenewRefusal),
}

/// A certificate issued for the device's request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(crate = "serde_nostd")]
pub struct RenewedCertificate {
    /// The certificate's serial number, lower-case hex.
    pub serial: String,
    /// The end of its validity.
    pub not_after: UnixMillis,
    /// PEM: the new certificate first, then the device CA's certificate; what the device
    /// presents at the TLS handshake. At most [`crate::limits::MAX_CERT_CHAIN_PEM_LEN`] bytes.
    pub chain_pem: String,
}

/// Why Gema issued no certificate. The device keeps its current certificate either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(crate = "serde_nostd", rename_all = "snake_case")]
pub enum CertRenewRefusal {
    /// Not a well-formed request, a signature that does not verify, a key type other than
    /// ECDSA P-256 or Ed25519, or an extension a device certificate cannot carry. Fix the
    /// request before asking again.
    InvalidCsr,
    /// The request does not name this device (its common name or DNS names are another
    /// device's, or missing).
    WrongName,
    /// The device was given a certificate over MQTT a short while ago (about a minute);
    /// ask again later.
    TooSoon,
    /// The device is disabled or its credential revoked.
    NotPermitted,
    /// Gema cannot issue certificates now (no device CA key, or a fault on its side); ask
    /// again later.
    Unavailable,
}

impl Downlink {
    pub fn new(envelope: Envelope, body: impl Into<DownlinkBody>) -> Self {
        Downlink {
            envelope,
            body: body.into(),
        }
    }

    /// The instant after which the device must not act on this message, if it has one
    /// (announcements, dynamic-QR show, commands).
    pub fn expires_at(&self) -> Option<UnixMillis> {
        match &self.body {
            DownlinkBody::Announce(a) => Some(a.expires_at),
            DownlinkBody::DynamicQrShow(q) => Some(q.expires_at),
            DownlinkBody::Command(c) => Some(c.expires_at),
            DownlinkBody::DynamicQrClear(_)
            | DownlinkBody::ConfigPush(_)
            | DownlinkBody::CertRenewResult(_) => None,
        }
    }

    /// True when `now` is at or past [`Downlink::expires_at`]: the message must not be acted
    /// on (nor, by Gema, sent).
    pub fn is_expired(&self, now: UnixMillis) -> bool {
        self.expires_at().is_some_and(|at| now >= at)
    }
}

impl Uplink {
    pub fn new(envelope: Envelope, body: impl Into<UplinkBody>) -> Self {
        Uplink {
            envelope,
            body: body.into(),
        }
    }
}

macro_rules! body_from {
    ($body:ident: $($variant:ident($ty:ident)),* $(,)?) => {
        $(impl From<$ty> for $body {
            fn from(value: $ty) -> Self {
                $body::$variant(value)
            }
        })*
    };
}

body_from!(DownlinkBody:
    Announce(Announce),
    DynamicQrShow(DynamicQrShow),
    DynamicQrClear(DynamicQrClear),
    ConfigPush(ConfigPush),
    Command(Command),
    CertRenewResult(CertRenewResult),
);
body_from!(UplinkBody:
    Ack(Ack),
    CommandResult(CommandResult),
    Heartbeat(Heartbeat),
    ReportedConfig(ReportedConfig),
    DynamicQrRequest(DynamicQrRequest),
    ButtonEvent(ButtonEvent),
    CertRenew(CertRenew),
);

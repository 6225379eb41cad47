//! The wire contract between Gema and soundbox firmware.
//!
//! Pure: no I/O, no async runtime, no clock, `no_std` with `alloc`, so a Rust firmware can use
//! the same types; firmware in C reads this page and the JSON examples below. It must never
//! gain a dependency on `std`, tokio or a database.
//!
//! # Topics
//!
//! Every device lives under `devices/<device id>/` ([`topic::validate_device_id`]: 1–64
//! characters of `a-z`, `0-9`, `_`, `-`; it is also the MQTT username). One message kind per
//! topic; the kind is also the JSON `"type"`:
//!
//! | direction | topic (JSON) | message |
//! |---|---|---|
//! | Gema → device | `devices/<id>/down/announce` | [`Announce`]: speak a payment |
//! | Gema → device | `devices/<id>/down/qr_show` | [`DynamicQrShow`] |
//! | Gema → device | `devices/<id>/down/qr_clear` | [`DynamicQrClear`] |
//! | Gema → device | `devices/<id>/down/config` | [`ConfigPush`] (desired config) |
//! | Gema → device | `devices/<id>/down/command` | [`Command`] |
//! | Gema → device | `devices/<id>/down/cert_renew_result` | [`CertRenewResult`] |
//! | device → Gema | `devices/<id>/up/ack` | [`Ack`] |
//! | device → Gema | `devices/<id>/up/command_result` | [`CommandResult`] |
//! | device → Gema | `devices/<id>/up/heartbeat` | [`Heartbeat`] |
//! | device → Gema | `devices/<id>/up/reported_config` | [`ReportedConfig`] |
//! | device → Gema | `devices/<id>/up/qr_request` | [`DynamicQrRequest`] |
//! | device → Gema | `devices/<id>/up/button` | [`ButtonEvent`] |
//! | device → Gema | `devices/<id>/up/cert_renew` | [`CertRenew`] |
//!
//! The device subscribes to `devices/<id>/down/#` ([`topic::downlink_filter`]) with QoS 1 and
//! publishes uplinks with QoS 1. Build topics with [`topic::topic`]; take an incoming one apart
//! with [`parse_topic`] (device id, direction, kind, encoding, or a [`TopicError`]).
//!
//! # Encodings, and how a device opts in to binary
//!
//! Each kind exists in two encodings, chosen **per topic by a suffix**:
//!
//! - `…/<kind>`: JSON (UTF-8, one flat object, `"type"`-tagged). The default; `mosquitto_sub`
//!   and MQTT Explorer show it as is.
//! - `…/<kind>/bin`: [postcard](https://postcard.jamesmunns.com/wire-format) — varints,
//!   zigzag for signed integers, length-prefixed UTF-8, `Option` as a 0/1 byte, enums as a
//!   varint variant index, fields in declaration order. For firmware with little RAM.
//!
//! Every payload is therefore self-describing together with its topic: no lookup is needed to
//! decode an uplink or to read a message trace. A device may publish each uplink in either
//! encoding. For downlinks, Gema keeps a per-device setting (JSON unless the device was
//! provisioned as binary) and publishes on the matching topic; the device, subscribed to
//! `down/#`, only ever sees one. [`encode`] and [`decode`] (or [`decode_on_topic`], which
//! also checks the payload's kind against the topic's) do the work.
//!
//! An announcement in JSON:
//!
//! ```json
//! {"type":"announce","version":1,"msg_id":"01JD8X3K7Q9V2M4N6P8R0T2W4Y",
//!  "sent_at":1732170000000,"transaction_id":"trx_01JD8X2Z","amount":25000,
//!  "currency":"IDR","provider":"midtrans","issuer":"GOPAY","language":"id",
//!  "paid_at":1732169999500,"expires_at":1732170300000,"sequence":42}
//! ```
//!
//! and its acknowledgement:
//!
//! ```json
//! {"type":"ack","version":1,"msg_id":"01JD8X3M00AAAABBBBCCCCDDDD","sent_at":1732170000180,
//!  "acked_msg_id":"01JD8X3K7Q9V2M4N6P8R0T2W4Y","transaction_id":"trx_01JD8X2Z",
//!  "status":"spoken"}
//! ```
//!
//! In postcard the same ack is `(envelope, body)`: `version`, `msg_id`, `sent_at`, then the
//! variant index of [`UplinkBody`] (`Ack` = 0), then the [`Ack`] fields.
//!
//! # Envelope
//!
//! Every message starts with the [`Envelope`] fields: `version` (protocol version, today
//! [`PROTOCOL_VERSION`] = 1; anything else is refused), `msg_id` (made by the sender, a ULID
//! is recommended; 1–64 printable ASCII characters; a retry re-sends the same id) and
//! `sent_at`. All times are integer Unix milliseconds (UTC); there are no floats anywhere.
//! Amounts are integer rupiah. Anything the device must not act on late carries `expires_at`.
//! JSON readers ignore unknown fields and treat a missing optional field as `null`; postcard
//! has no field names, so any change to a message bumps `version`.
//!
//! # Rules for the device
//!
//! - **Dedupe**: announcements are deduplicated on `transaction_id` (remember at least the
//!   last 50). A repeat is acked `duplicate` and not spoken, nor added to the daily total.
//!   Commands are deduplicated on `command_id`, dynamic-QR requests on `request_id`.
//! - **Freshness**: never speak an announcement, show a QR or run a command at or after its
//!   `expires_at` (device clock, set from the network). Ack such an announcement `expired`,
//!   answer such a command with `expired`. Gema does not send what has already expired.
//! - **Acks**: MQTT PUBACK is transport-level: it only says the packet reached the other MQTT
//!   session. The protocol-level [`Ack`] (`up/ack`, `acked_msg_id` = the downlink's `msg_id`)
//!   says the device processed the message: `spoken`, `processed` (QR show/clear),
//!   `duplicate`, `expired` or `rejected`. Gema retries an announcement until it gets this ack
//!   or the announcement expires, so the device must expect repeats. Commands are answered by
//!   [`CommandResult`] (`acknowledged`, then `succeeded`/`failed`), config by
//!   [`ReportedConfig`] with the applied `config_version`, QR requests by `qr_show` or
//!   `qr_clear` (`refused`) carrying the same `request_id`.
//! - **Certificate renewal** (devices that connect with a Gema-issued client certificate):
//!   before the certificate expires, make a new key pair and send its CSR in a
//!   [`CertRenew`]; Gema answers with a [`CertRenewResult`] carrying the same `request_id`:
//!   the new certificate and the CA's (`issued`), or a [`CertRenewRefusal`] reason. The
//!   old certificate keeps working until the device connects with the new one; after that
//!   the old one is refused at CONNECT. Keep the old key and certificate until a CONNECT with
//!   the new ones has succeeded. A device that missed the answer asks again with a new
//!   request (a renewal over MQTT within about a minute of the last is refused `too_soon`).
//! - **Config** is desired state, not a one-off: apply a push only if its `config_version` is
//!   higher than the one applied; report local changes (volume buttons) with cause
//!   `local_change`.
//!
//! # Decoding untrusted input
//!
//! [`decode`] never panics. It refuses payloads over [`limits::MAX_MESSAGE_LEN`] bytes,
//! malformed JSON or postcard (bad UTF-8, wrong types, unknown `"type"`, trailing bytes), other
//! protocol versions, and then runs the explicit `validate()` step ([`Downlink::validate`],
//! [`Uplink::validate`]): positive bounded amounts, id and text lengths ([`limits`]), QR
//! payload ≤ 512 bytes, `expires_at` after `sent_at`, config ranges, PEM fields' size,
//! characters and `-----BEGIN` line. Errors are
//! [`DecodeError`] and [`ValidationError`], both `Display`.
//!
//! # Provisioning string
//!
//! What a technician scans into a new device (host, port, device id, secret, the CA
//! certificate's SHA-256) is one line of text, `GEMA1:host=…;port=…;id=…;secret=…;ca=…`:
//! [`ProvisioningString`], whose module docs are the format's definition. Parsing it borrows
//! from the input, allocates nothing and never panics.
//!
//! # Provisioning by claim
//!
//! A factory-fresh device that has only its batch's claim credential asks for its own
//! identity on `provisioning/<serial>/up` and gets it on `provisioning/<serial>/down`:
//! [`claim`] defines the user name, topics and messages.
#![no_std]

extern crate alloc;

pub mod claim;
pub mod codec;
pub mod limits;
pub mod message;
pub mod provisioning;
pub mod topic;
pub mod validate;

pub use codec::{DecodeError, Message, decode, decode_on_topic, encode};
pub use message::*;
pub use provisioning::{ProvisioningError, ProvisioningString};
pub use topic::{Direction, Encoding, MessageKind, Topic, TopicError, parse_topic};
pub use validate::{Problem, ValidationError};

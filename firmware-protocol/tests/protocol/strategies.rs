//! proptest strategies that produce only valid messages (what `validate()` accepts), so a
//! round trip through the decoder must give the same value back.

use std::collections::BTreeMap;

use gema_firmware_protocol::limits::*;
use gema_firmware_protocol::*;
use proptest::collection::btree_map;
use proptest::option;
use proptest::prelude::*;

pub fn id() -> impl Strategy<Value = String> {
    "[!-~]{1,64}"
}

/// Non-empty text without control characters, at most 128 bytes (32 chars × 4 bytes).
pub fn text() -> impl Strategy<Value = String> {
    "[^\\p{Cc}]{1,32}"
}

pub fn amount() -> impl Strategy<Value = i64> {
    prop_oneof![1..=10_000_000i64, 1..=MAX_AMOUNT]
}

fn time() -> impl Strategy<Value = UnixMillis> {
    0..=4_102_444_800_000i64
}

pub fn envelope() -> impl Strategy<Value = Envelope> {
    (id(), time()).prop_map(|(msg_id, sent_at)| Envelope::new(msg_id, sent_at))
}

fn language() -> impl Strategy<Value = Language> {
    prop_oneof![Just(Language::Id), Just(Language::En)]
}

fn announce(sent_at: UnixMillis) -> impl Strategy<Value = DownlinkBody> {
    (
        id(),
        amount(),
        text(),
        option::of(text()),
        language(),
        time(),
        1..=86_400_000i64,
        any::<u64>(),
    )
        .prop_map(
            move |(transaction_id, amount, provider, issuer, language, paid_at, ttl, sequence)| {
                Announce {
                    transaction_id,
                    amount,
                    currency: Currency::Idr,
                    provider,
                    issuer,
                    language,
                    paid_at,
                    expires_at: sent_at + ttl,
                    sequence,
                }
                .into()
            },
        )
}

fn qr_show(sent_at: UnixMillis) -> impl Strategy<Value = DownlinkBody> {
    (
        id(),
        option::of(id()),
        "[ -~]{1,512}",
        amount(),
        1..=3_600_000i64,
    )
        .prop_map(move |(transaction_id, request_id, payload, amount, ttl)| {
            DynamicQrShow {
                transaction_id,
                request_id,
                payload,
                amount,
                expires_at: sent_at + ttl,
            }
            .into()
        })
}

fn qr_clear() -> impl Strategy<Value = DownlinkBody> {
    let reason = prop_oneof![
        Just(QrClearReason::Paid),
        Just(QrClearReason::Expired),
        Just(QrClearReason::Cancelled),
        Just(QrClearReason::Refused),
    ];
    let ids = prop_oneof![
        (id(), option::of(id())).prop_map(|(t, r)| (Some(t), r)),
        id().prop_map(|r| (None, Some(r))),
    ];
    (ids, reason).prop_map(|((transaction_id, request_id), reason)| {
        DynamicQrClear {
            transaction_id,
            request_id,
            reason,
        }
        .into()
    })
}

pub fn device_config() -> impl Strategy<Value = DeviceConfig> {
    let quiet = (
        0..MINUTES_PER_DAY,
        1..MINUTES_PER_DAY,
        UTC_OFFSET_MINUTES,
        0..=MAX_VOLUME,
    )
        .prop_map(
            |(start_minute, shift, utc_offset_minutes, volume)| QuietHours {
                start_minute,
                end_minute: (start_minute + shift) % MINUTES_PER_DAY,
                utc_offset_minutes,
                volume,
            },
        );
    (
        0..=MAX_VOLUME,
        language(),
        HEARTBEAT_INTERVAL_S,
        QR_TIMEOUT_S,
        option::of(quiet),
    )
        .prop_map(
            |(volume, language, heartbeat_interval_s, qr_timeout_s, quiet_hours)| DeviceConfig {
                volume,
                language,
                heartbeat_interval_s,
                qr_timeout_s,
                quiet_hours,
            },
        )
}

fn config_push() -> impl Strategy<Value = DownlinkBody> {
    (any::<u64>(), device_config()).prop_map(|(config_version, config)| {
        ConfigPush {
            config_version,
            config,
        }
        .into()
    })
}

fn image() -> impl Strategy<Value = ImageUpdate> {
    (
        "https?://[a-z0-9.-]{1,40}/[!-~]{0,200}",
        "[0-9a-f]{64}",
        text(),
        1..=u64::MAX,
    )
        .prop_map(|(url, sha256, version, size)| ImageUpdate {
            url,
            sha256,
            version,
            size,
        })
}

fn command(sent_at: UnixMillis) -> impl Strategy<Value = DownlinkBody> {
    let action = prop_oneof![
        (0..=MAX_VOLUME).prop_map(|volume| CommandAction::SetVolume { volume }),
        Just(CommandAction::Reboot),
        (1..=MAX_REPLAY).prop_map(|count| CommandAction::ReplayLast { count }),
        Just(CommandAction::AnnounceDailySummary),
        Just(CommandAction::GetStatus),
        image().prop_map(CommandAction::FwUpdate),
        image().prop_map(CommandAction::AudioUpdate),
    ];
    (id(), 1..=7 * 86_400_000i64, action).prop_map(move |(command_id, ttl, action)| {
        Command {
            command_id,
            expires_at: sent_at + ttl,
            action,
        }
        .into()
    })
}

/// PEM-looking text with `label`: the BEGIN line, base64 lines, the END line.
fn pem(label: &'static str, body: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec("[A-Za-z0-9+/=]{1,64}", 0..=body).prop_map(move |lines| {
        let mut text = format!("-----BEGIN {label}-----\n");
        for line in lines {
            text.push_str(&line);
            text.push('\n');
        }
        text.push_str(&format!("-----END {label}-----\n"));
        text
    })
}

fn cert_renew_result() -> impl Strategy<Value = DownlinkBody> {
    let refusal = prop_oneof![
        Just(CertRenewRefusal::InvalidCsr),
        Just(CertRenewRefusal::WrongName),
        Just(CertRenewRefusal::TooSoon),
        Just(CertRenewRefusal::NotPermitted),
        Just(CertRenewRefusal::Unavailable),
    ];
    let outcome = prop_oneof![
        ("[0-9a-f]{1,40}", time(), pem("CERTIFICATE", 40)).prop_map(
            |(serial, not_after, chain_pem)| CertRenewOutcome::Issued(RenewedCertificate {
                serial,
                not_after,
                chain_pem,
            })
        ),
        refusal.prop_map(CertRenewOutcome::Refused),
    ];
    (id(), outcome).prop_map(|(request_id, outcome)| {
        CertRenewResult {
            request_id,
            outcome,
        }
        .into()
    })
}

pub fn downlink() -> impl Strategy<Value = Downlink> {
    envelope().prop_flat_map(|envelope| {
        let at = envelope.sent_at;
        let body = prop_oneof![
            announce(at),
            qr_show(at),
            qr_clear(),
            config_push(),
            command(at),
            cert_renew_result(),
        ];
        body.prop_map(move |body| Downlink::new(envelope.clone(), body))
    })
}

fn ack() -> impl Strategy<Value = UplinkBody> {
    let status = prop_oneof![
        Just(AckStatus::Spoken),
        Just(AckStatus::Processed),
        Just(AckStatus::Duplicate),
        Just(AckStatus::Expired),
        Just(AckStatus::Rejected),
    ];
    (id(), option::of(id()), status).prop_map(|(acked_msg_id, transaction_id, status)| {
        Ack {
            acked_msg_id,
            transaction_id,
            status,
        }
        .into()
    })
}

fn command_result() -> impl Strategy<Value = UplinkBody> {
    let state = prop_oneof![
        Just(CommandState::Acknowledged),
        Just(CommandState::Succeeded),
        Just(CommandState::Failed),
        Just(CommandState::Expired),
    ];
    let result: BoxedStrategy<BTreeMap<String, String>> =
        btree_map("[a-z_]{1,32}", "[^\\p{Cc}]{0,32}", 0..=MAX_RESULT_ENTRIES).boxed();
    (id(), state, result, option::of(text())).prop_map(|(command_id, state, result, message)| {
        CommandResult {
            command_id,
            state,
            result,
            message,
        }
        .into()
    })
}

fn heartbeat() -> impl Strategy<Value = UplinkBody> {
    let network = prop_oneof![
        Just(Network::Wifi),
        Just(Network::Cellular2g),
        Just(Network::Cellular3g),
        Just(Network::Cellular4g),
        Just(Network::Ethernet),
        Just(Network::Unknown),
    ];
    (
        option::of(0..=100u8),
        any::<bool>(),
        option::of(SIGNAL_DBM),
        network,
        text(),
        text(),
        any::<u64>(),
        option::of(id()),
        any::<u64>(),
    )
        .prop_map(
            |(
                battery_pct,
                charging,
                signal_dbm,
                network,
                firmware_version,
                audio_pack_version,
                uptime_s,
                last_transaction_id,
                config_version,
            )| {
                Heartbeat {
                    battery_pct,
                    charging,
                    signal_dbm,
                    network,
                    firmware_version,
                    audio_pack_version,
                    uptime_s,
                    last_transaction_id,
                    config_version,
                }
                .into()
            },
        )
}

fn reported_config() -> impl Strategy<Value = UplinkBody> {
    let cause = prop_oneof![
        Just(ReportCause::Applied),
        Just(ReportCause::Rejected),
        Just(ReportCause::LocalChange),
        Just(ReportCause::Boot),
    ];
    (any::<u64>(), cause, device_config()).prop_map(|(applied_version, cause, config)| {
        ReportedConfig {
            applied_version,
            cause,
            config,
        }
        .into()
    })
}

fn qr_request() -> impl Strategy<Value = UplinkBody> {
    (id(), amount()).prop_map(|(request_id, amount)| DynamicQrRequest { request_id, amount }.into())
}

fn button() -> impl Strategy<Value = UplinkBody> {
    let button = prop_oneof![
        Just(Button::VolumeUp),
        Just(Button::VolumeDown),
        Just(Button::Replay),
        Just(Button::Function),
        Just(Button::Power),
    ];
    let press = prop_oneof![Just(Press::Short), Just(Press::Long), Just(Press::Double)];
    (button, press).prop_map(|(button, press)| ButtonEvent { button, press }.into())
}

fn cert_renew() -> impl Strategy<Value = UplinkBody> {
    (id(), pem("CERTIFICATE REQUEST", 24)).prop_map(|(request_id, csr_pem)| {
        CertRenew {
            request_id,
            csr_pem,
        }
        .into()
    })
}

pub fn uplink() -> impl Strategy<Value = Uplink> {
    let body = prop_oneof![
        ack(),
        command_result(),
        heartbeat(),
        reported_config(),
        qr_request(),
        button(),
        cert_renew(),
    ];
    (envelope(), body).prop_map(|(envelope, body)| Uplink::new(envelope, body))
}

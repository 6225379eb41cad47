//! A fleet of simulated soundboxes: `gema sim`, the end-to-end tests and the benchmark all
//! use it. Each device connects over MQTT/TLS with its own credential (rumqttc), subscribes
//! to its downlinks, and behaves like firmware should: it deduplicates announcements on the
//! transaction id, does not speak expired ones, says the amount in Indonesian, and acks.
//! It can also drop acks or disconnect at random, to exercise retries and replays.
//!
//! Its acks (and every other uplink) are QoS 1 and survive a lost connection as firmware's
//! must: the broker PUBACKs an ack only once the gateway has committed it, and rumqttc 0.24
//! keeps what it did not get a PUBACK for. On a connection error `EventLoop::poll` calls
//! `EventLoop::clean`, which moves the unacknowledged outgoing publishes (and requests still
//! in the client's channel) to its `pending` list, and after the next CONNACK it sends
//! `pending` before anything new, so an ack the daemon died before recording reaches the
//! restarted one first. (This holds with a clean session too: it is the client's own
//! state, not the broker's.) The set of transactions spoken lives across reconnects, so
//! an announcement replayed anyway is acked `duplicate` and counted, not spoken.
//!
//! Device operations: it applies config pushes (newer versions only) and reports them,
//! reports a config at boot, and, driven through [`SimControl`] by a test or the benchmark,
//! sends heartbeats, presses its volume button (a local change, reported as drift), or
//! publishes any raw payload (malformed-input tests).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use gema_firmware_protocol::message::{
    Ack, AckStatus, Button, ButtonEvent, CommandAction, CommandResult, CommandState, DeviceConfig,
    Downlink, DownlinkBody, DynamicQrRequest, Envelope, Heartbeat, Language, Network, Press,
    QrClearReason, ReportCause, ReportedConfig, Uplink, UplinkBody,
};
use gema_firmware_protocol::topic::{MessageKind, downlink_filter, parse_topic};
use gema_firmware_protocol::{Encoding, decode_on_topic, encode, topic};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use tokio::sync::mpsc;

pub mod claim;

/// How to reach the broker and how to misbehave.
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub host: String,
    pub port: u16,
    /// PEM of the CA that signed the broker's certificate.
    pub ca_pem: Vec<u8>,
    /// Percent (0–100) of announcements whose ack is not sent; shared, so a test can change
    /// it while the fleet runs.
    pub drop_ack_percent: Arc<AtomicU8>,
    /// Percent (0–100) chance, per announcement, of dropping the connection afterwards.
    pub disconnect_percent: u8,
    pub keep_alive: Duration,
    /// Send heartbeats on their own, every `heartbeat_interval_s` of the applied config
    /// (tests leave this off and send them through [`SimControl::Heartbeat`]).
    pub periodic_heartbeats: bool,
}

/// One device's credential.
#[derive(Debug, Clone)]
pub struct SimDevice {
    pub device_id: String,
    pub secret: String,
}

/// What the fleet reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimEvent {
    Connected {
        device_id: String,
    },
    /// Spoken: the first time this transaction was announced to this device.
    Spoke {
        device_id: String,
        transaction_id: String,
        amount: i64,
        at: Instant,
    },
    /// A repeat of something already spoken (acked as duplicate, not spoken).
    Duplicate {
        device_id: String,
        transaction_id: String,
    },
    /// Arrived after its expiry (acked as expired, not spoken).
    Late {
        device_id: String,
        transaction_id: String,
    },
    Disconnected {
        device_id: String,
        error: String,
    },
    /// A command arrived (first time) and was answered with `state`.
    Command {
        device_id: String,
        command_id: String,
        state: CommandState,
    },
    /// A dynamic QR to show (`qr_show`).
    QrShown {
        device_id: String,
        request_id: Option<String>,
        transaction_id: String,
        payload: String,
        amount: i64,
    },
    /// Told to stop showing a QR, or a request was refused (`qr_clear`).
    QrCleared {
        device_id: String,
        transaction_id: Option<String>,
        request_id: Option<String>,
        reason: QrClearReason,
    },
    /// A config push was applied (and reported).
    ConfigApplied {
        device_id: String,
        version: u64,
        volume: u8,
    },
}

/// Something a test tells a simulated device to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimControl {
    /// Publish a heartbeat now.
    Heartbeat,
    /// Press the volume-up button: volume + 1, reported as a local change.
    PressVolumeUp,
    /// The merchant keyed in `amount`: ask Gema for a dynamic QR.
    RequestQr { request_id: String, amount: i64 },
    /// Only acknowledge commands from now on, never finish them (or finish them again).
    StallCommands(bool),
    /// Publish `payload` as is on `devices/<id>/up/<kind>` (e.g. malformed input).
    Raw { kind: MessageKind, payload: Vec<u8> },
}

/// What the simulated firmware keeps between messages.
struct SimState {
    spoken: HashSet<String>,
    /// Each command carried out and the answers it sent (a re-send gets them again).
    commands_seen: HashMap<String, Vec<(MessageKind, Vec<u8>)>>,
    stall_commands: bool,
    applied_version: u64,
    config: DeviceConfig,
    msg_seq: u64,
    booted: Instant,
}

impl SimState {
    fn new() -> Self {
        SimState {
            spoken: HashSet::new(),
            commands_seen: HashMap::new(),
            stall_commands: false,
            applied_version: 0,
            config: DeviceConfig {
                volume: 7,
                language: Language::Id,
                heartbeat_interval_s: 60,
                qr_timeout_s: 300,
                quiet_hours: None,
            },
            msg_seq: 0,
            booted: Instant::now(),
        }
    }

    fn envelope(&mut self, device_id: &str) -> Envelope {
        self.msg_seq += 1;
        Envelope::new(format!("{device_id}-{}", self.msg_seq), unix_ms())
    }

    fn uplink(&mut self, device_id: &str, body: impl Into<UplinkBody>) -> (MessageKind, Vec<u8>) {
        let uplink = Uplink::new(self.envelope(device_id), body);
        (uplink.kind(), encode(&uplink, Encoding::Json))
    }

    fn report(&mut self, device_id: &str, cause: ReportCause) -> (MessageKind, Vec<u8>) {
        let report = ReportedConfig {
            applied_version: self.applied_version,
            cause,
            config: self.config.clone(),
        };
        self.uplink(device_id, report)
    }

    fn heartbeat(&mut self, device_id: &str) -> (MessageKind, Vec<u8>) {
        let heartbeat = Heartbeat {
            battery_pct: Some(87),
            charging: false,
            signal_dbm: Some(-67),
            network: Network::Cellular4g,
            firmware_version: "sim-1.0.0".into(),
            audio_pack_version: "id-1".into(),
            uptime_s: self.booted.elapsed().as_secs(),
            last_transaction_id: None,
            config_version: self.applied_version,
        };
        self.uplink(device_id, heartbeat)
    }
}

fn unix_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(i64::MAX)
}

/// The device's TLS settings, made once and kept across reconnects, as firmware keeps its
/// TLS context: the session the broker issued is resumed on the next connect, which costs
/// the broker (and the device) a fraction of a full handshake. rumqttc's `Simple` form would
/// build a new context, so a new session cache, on every connect. An unusable CA falls back
/// to that form, whose connect then reports the error.
fn tls_config(ca_pem: &[u8]) -> TlsConfiguration {
    use rumqttc::tokio_rustls::rustls::{ClientConfig, RootCertStore};
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(
        rustls_pemfile::certs(&mut std::io::Cursor::new(ca_pem)).filter_map(Result::ok),
    );
    if added == 0 {
        return TlsConfiguration::Simple {
            ca: ca_pem.to_vec(),
            alpn: None,
            client_auth: None,
        };
    }
    let config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConfiguration::Rustls(Arc::new(config))
}

/// Reconnect delays as firmware should pace them: from about half a second, doubling per
/// failed attempt up to 16 s, each drawn at random from the upper half of the current step so
/// that a fleet cut off at once does not come back at once. Reset by a CONNACK.
#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    const FIRST_MS: u64 = 500;
    const MAX_MS: u64 = 16_000;

    fn next(&mut self, dice: &mut Dice) -> Duration {
        let step = Self::FIRST_MS
            .saturating_mul(1u64 << self.failures.min(16))
            .min(Self::MAX_MS);
        self.failures = self.failures.saturating_add(1);
        Duration::from_millis(step / 2 + dice.below(step / 2 + 1))
    }

    fn reset(&mut self) {
        self.failures = 0;
    }
}

/// A tiny xorshift for the misbehaviour knobs and the reconnect jitter; no need for a crypto
/// RNG here.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn roll(&mut self, percent: u8) -> bool {
        (self.next() % 100) < u64::from(percent)
    }

    /// Uniform enough in `0..n` (`n` > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Runs one device until the task is dropped: connects (and reconnects), answers
/// announcements and config pushes, reports what happens on `events`.
pub async fn run_device(device: SimDevice, options: SimOptions, events: mpsc::Sender<SimEvent>) {
    let (_controls, control_rx) = mpsc::channel(1);
    run_device_with(device, options, events, control_rx).await;
}

/// [`run_device`], also doing what `controls` say (heartbeats, button presses, raw
/// uplinks).
pub async fn run_device_with(
    device: SimDevice,
    options: SimOptions,
    events: mpsc::Sender<SimEvent>,
    mut controls: mpsc::Receiver<SimControl>,
) {
    let mut mqtt = MqttOptions::new(&device.device_id, &options.host, options.port);
    mqtt.set_credentials(&device.device_id, &device.secret);
    mqtt.set_keep_alive(options.keep_alive);
    mqtt.set_clean_session(true);
    mqtt.set_transport(Transport::Tls(tls_config(&options.ca_pem)));
    let (client, mut eventloop) = AsyncClient::new(mqtt, 64);
    let mut state = SimState::new();
    let mut controls_open = true;
    let mut next_heartbeat = tokio::time::Instant::now() + Duration::from_secs(1);
    let seed = device
        .device_id
        .bytes()
        .fold(0x9E37_79B9_7F4A_7C15u64, |h, b| {
            h.rotate_left(5) ^ u64::from(b)
        });
    let mut dice = Dice(seed | 1);
    let mut backoff = Backoff::default();
    let id = device.device_id.clone();
    let publish = |client: &AsyncClient, (kind, payload): (MessageKind, Vec<u8>)| {
        let client = client.clone();
        let topic = topic::topic(&id, kind, Encoding::Json);
        async move {
            let _ = client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await;
        }
    };
    loop {
        let polled = tokio::select! {
            polled = eventloop.poll() => polled,
            _ = tokio::time::sleep_until(next_heartbeat), if options.periodic_heartbeats => {
                next_heartbeat = tokio::time::Instant::now()
                    + Duration::from_secs(u64::from(state.config.heartbeat_interval_s));
                publish(&client, state.heartbeat(&id)).await;
                continue;
            }
            control = controls.recv(), if controls_open => {
                let Some(control) = control else {
                    controls_open = false;
                    continue;
                };
                match control {
                    SimControl::Heartbeat => publish(&client, state.heartbeat(&id)).await,
                    SimControl::PressVolumeUp => {
                        state.config.volume = (state.config.volume + 1).min(10);
                        let press = ButtonEvent { button: Button::VolumeUp, press: Press::Short };
                        publish(&client, state.uplink(&id, press)).await;
                        publish(&client, state.report(&id, ReportCause::LocalChange)).await;
                    }
                    SimControl::StallCommands(stall) => state.stall_commands = stall,
                    SimControl::RequestQr { request_id, amount } => {
                        let request = DynamicQrRequest { request_id, amount };
                        publish(&client, state.uplink(&id, request)).await;
                    }
                    SimControl::Raw { kind, payload } => publish(&client, (kind, payload)).await,
                }
                continue;
            }
        };
        match polled {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff.reset();
                let _ = client
                    .subscribe(downlink_filter(&id), QoS::AtLeastOnce)
                    .await;
                publish(&client, state.report(&id, ReportCause::Boot)).await;
                let _ = events
                    .send(SimEvent::Connected {
                        device_id: id.clone(),
                    })
                    .await;
            }
            Ok(Event::Incoming(Packet::Publish(incoming))) => {
                if let Some(replies) =
                    operate(&id, &incoming.topic, &incoming.payload, &mut state, &events).await
                {
                    for reply in replies {
                        publish(&client, reply).await;
                    }
                    continue;
                }
                let Some(reply) = answer(
                    &id,
                    &incoming.topic,
                    &incoming.payload,
                    &mut state.spoken,
                    &events,
                )
                .await
                else {
                    continue;
                };
                if dice.roll(options.drop_ack_percent.load(Ordering::Relaxed)) {
                    tracing::info!(device_id = %id, "sim: dropping this ack on purpose");
                } else {
                    let _ = client
                        .publish(
                            topic::topic(&id, MessageKind::Ack, Encoding::Json),
                            QoS::AtLeastOnce,
                            false,
                            reply,
                        )
                        .await;
                }
                if dice.roll(options.disconnect_percent) {
                    tracing::info!(device_id = %id, "sim: disconnecting on purpose");
                    let _ = client.disconnect().await;
                }
            }
            Ok(_) => {}
            Err(err) => {
                let _ = events
                    .send(SimEvent::Disconnected {
                        device_id: id.clone(),
                        error: err.to_string(),
                    })
                    .await;
                tokio::time::sleep(backoff.next(&mut dice)).await;
            }
        }
    }
}

/// Device operations downlinks (config, commands): the uplinks that answer one, or `None`
/// if it was not one of those.
async fn operate(
    device_id: &str,
    topic_name: &str,
    payload: &[u8],
    state: &mut SimState,
    events: &mpsc::Sender<SimEvent>,
) -> Option<Vec<(MessageKind, Vec<u8>)>> {
    let topic = parse_topic(topic_name).ok()?;
    let downlink: Downlink = decode_on_topic(&topic, payload).ok()?;
    match downlink.body {
        DownlinkBody::ConfigPush(push) => {
            // Apply only a newer version; always report what runs now.
            if push.config_version > state.applied_version {
                state.applied_version = push.config_version;
                state.config = push.config;
                tracing::info!(
                    device_id,
                    version = push.config_version,
                    "sim: config applied"
                );
                let _ = events
                    .send(SimEvent::ConfigApplied {
                        device_id: device_id.into(),
                        version: push.config_version,
                        volume: state.config.volume,
                    })
                    .await;
            }
            Some(vec![state.report(device_id, ReportCause::Applied)])
        }
        DownlinkBody::Command(command) => {
            let mut replies = Vec::new();
            if let Some(answered) = state.commands_seen.get(&command.command_id)
                && !state.stall_commands
            {
                // A re-send of one already carried out: not again, but its answers again
                // (the gateway may have lost them).
                return Some(answered.clone());
            }
            let mut answer = |state: &mut SimState,
                              st: CommandState,
                              result: &[(&str, String)],
                              message: Option<&str>| {
                let body = CommandResult {
                    command_id: command.command_id.clone(),
                    state: st,
                    result: result
                        .iter()
                        .map(|(k, v)| ((*k).to_string(), v.clone()))
                        .collect(),
                    message: message.map(String::from),
                };
                replies.push(state.uplink(device_id, body));
            };
            let final_state = if unix_ms() >= command.expires_at {
                answer(
                    state,
                    CommandState::Expired,
                    &[],
                    Some("arrived after its expiry"),
                );
                CommandState::Expired
            } else {
                answer(state, CommandState::Acknowledged, &[], None);
                if state.stall_commands {
                    CommandState::Acknowledged
                } else {
                    match &command.action {
                        CommandAction::SetVolume { volume } => {
                            state.config.volume = *volume;
                            answer(
                                state,
                                CommandState::Succeeded,
                                &[("volume", volume.to_string())],
                                None,
                            );
                            CommandState::Succeeded
                        }
                        CommandAction::ReplayLast { count } => {
                            answer(
                                state,
                                CommandState::Succeeded,
                                &[("replayed", count.to_string())],
                                None,
                            );
                            CommandState::Succeeded
                        }
                        CommandAction::AnnounceDailySummary => {
                            let payments = state.spoken.len().to_string();
                            answer(
                                state,
                                CommandState::Succeeded,
                                &[("payments", payments)],
                                None,
                            );
                            CommandState::Succeeded
                        }
                        CommandAction::GetStatus => {
                            let heartbeat = state.heartbeat(device_id);
                            answer(state, CommandState::Succeeded, &[], None);
                            replies.push(heartbeat);
                            CommandState::Succeeded
                        }
                        CommandAction::Reboot => {
                            answer(
                                state,
                                CommandState::Succeeded,
                                &[],
                                Some("simulated reboot"),
                            );
                            CommandState::Succeeded
                        }
                        CommandAction::FwUpdate(_) | CommandAction::AudioUpdate(_) => {
                            answer(
                                state,
                                CommandState::Failed,
                                &[],
                                Some("the simulator cannot download or install images"),
                            );
                            CommandState::Failed
                        }
                    }
                }
            };
            tracing::info!(device_id, command_id = %command.command_id, state = ?final_state, "sim: command");
            let _ = events
                .send(SimEvent::Command {
                    device_id: device_id.into(),
                    command_id: command.command_id.clone(),
                    state: final_state,
                })
                .await;
            state
                .commands_seen
                .insert(command.command_id.clone(), replies.clone());
            Some(replies)
        }
        DownlinkBody::DynamicQrShow(show) => {
            tracing::info!(device_id, transaction_id = %show.transaction_id, amount = show.amount, "sim: showing a QR");
            let _ = events
                .send(SimEvent::QrShown {
                    device_id: device_id.into(),
                    request_id: show.request_id.clone(),
                    transaction_id: show.transaction_id.clone(),
                    payload: show.payload.clone(),
                    amount: show.amount,
                })
                .await;
            let ack = Ack {
                acked_msg_id: downlink.envelope.msg_id.clone(),
                transaction_id: Some(show.transaction_id),
                status: AckStatus::Processed,
            };
            Some(vec![state.uplink(device_id, ack)])
        }
        DownlinkBody::DynamicQrClear(clear) => {
            let _ = events
                .send(SimEvent::QrCleared {
                    device_id: device_id.into(),
                    transaction_id: clear.transaction_id.clone(),
                    request_id: clear.request_id.clone(),
                    reason: clear.reason,
                })
                .await;
            let ack = Ack {
                acked_msg_id: downlink.envelope.msg_id.clone(),
                transaction_id: clear.transaction_id,
                status: AckStatus::Processed,
            };
            Some(vec![state.uplink(device_id, ack)])
        }
        // The simulated fleet logs in with passwords: it never asks for a certificate.
        DownlinkBody::Announce(_) | DownlinkBody::CertRenewResult(_) => None,
    }
}

/// What the device does with one downlink; the ack payload to send, if any.
async fn answer(
    device_id: &str,
    topic_name: &str,
    payload: &[u8],
    spoken: &mut HashSet<String>,
    events: &mpsc::Sender<SimEvent>,
) -> Option<Vec<u8>> {
    let topic = parse_topic(topic_name).ok()?;
    let downlink: Downlink = match decode_on_topic(&topic, payload) {
        Ok(downlink) => downlink,
        Err(err) => {
            tracing::warn!(device_id, error = %err, "sim: undecodable downlink");
            return None;
        }
    };
    let DownlinkBody::Announce(announce) = &downlink.body else {
        return None;
    };
    let now_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(i64::MAX);
    let status = if spoken.contains(&announce.transaction_id) {
        let _ = events
            .send(SimEvent::Duplicate {
                device_id: device_id.into(),
                transaction_id: announce.transaction_id.clone(),
            })
            .await;
        AckStatus::Duplicate
    } else if downlink.is_expired(now_ms) {
        let _ = events
            .send(SimEvent::Late {
                device_id: device_id.into(),
                transaction_id: announce.transaction_id.clone(),
            })
            .await;
        AckStatus::Expired
    } else {
        spoken.insert(announce.transaction_id.clone());
        tracing::info!(
            device_id,
            transaction_id = %announce.transaction_id,
            "sim says: pembayaran diterima, {} rupiah",
            terbilang(announce.amount)
        );
        let _ = events
            .send(SimEvent::Spoke {
                device_id: device_id.into(),
                transaction_id: announce.transaction_id.clone(),
                amount: announce.amount,
                at: Instant::now(),
            })
            .await;
        AckStatus::Spoken
    };
    let ack = Uplink {
        envelope: Envelope::new(format!("ack-{}", downlink.envelope.msg_id), now_ms),
        body: UplinkBody::Ack(Ack {
            acked_msg_id: downlink.envelope.msg_id.clone(),
            transaction_id: Some(announce.transaction_id.clone()),
            status,
        }),
    };
    Some(encode(&ack, Encoding::Json))
}

/// An amount in Indonesian words, as a soundbox says it: 25000 → "dua puluh lima ribu".
pub fn terbilang(amount: i64) -> String {
    const ONES: [&str; 12] = [
        "", "satu", "dua", "tiga", "empat", "lima", "enam", "tujuh", "delapan", "sembilan",
        "sepuluh", "sebelas",
    ];
    fn words(n: i64) -> String {
        match n {
            0 => String::new(),
            1..=11 => ONES[n as usize].to_string(),
            12..=19 => format!("{} belas", ONES[(n - 10) as usize]),
            20..=99 => join(format!("{} puluh", ONES[(n / 10) as usize]), words(n % 10)),
            100..=199 => join("seratus".into(), words(n - 100)),
            200..=999 => join(
                format!("{} ratus", ONES[(n / 100) as usize]),
                words(n % 100),
            ),
            1_000..=1_999 => join("seribu".into(), words(n - 1_000)),
            2_000..=999_999 => join(format!("{} ribu", words(n / 1_000)), words(n % 1_000)),
            1_000_000..=999_999_999 => join(
                format!("{} juta", words(n / 1_000_000)),
                words(n % 1_000_000),
            ),
            1_000_000_000..=999_999_999_999 => join(
                format!("{} miliar", words(n / 1_000_000_000)),
                words(n % 1_000_000_000),
            ),
            _ => join(
                format!("{} triliun", words(n / 1_000_000_000_000)),
                words(n % 1_000_000_000_000),
            ),
        }
    }
    fn join(head: String, tail: String) -> String {
        if tail.is_empty() {
            head
        } else {
            format!("{head} {tail}")
        }
    }
    if amount <= 0 {
        return "nol".into();
    }
    words(amount)
}

/// `gema sim`: registers `--count` devices through the admin API (optionally with a
/// merchant, outlet and a terminal each), then runs them until Ctrl-C, printing what they
/// say.
pub async fn run_fleet(args: crate::cli::SimArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    use reqwest::Method;
    use serde_json::json;

    if args.claim.is_some() {
        return claim::run_fleet(args).await;
    }
    let api = crate::cli::ApiClient::new(&args.api.api_url, args.api.token.clone());
    let prefix = serial_prefix(&args);
    let outlet = if args.setup {
        let merchant = api
            .call(
                Method::POST,
                "/merchants",
                &[],
                Some(json!({ "name": format!("{prefix}merchant") })),
            )
            .await?;
        let merchant = merchant["id"].as_str().unwrap_or_default().to_string();
        api.call(
            Method::POST,
            &format!("/merchants/{merchant}/approve"),
            &[],
            None,
        )
        .await?;
        let outlet = api
            .call(
                Method::POST,
                "/outlets",
                &[],
                Some(json!({ "merchant_id": merchant, "name": "Simulated outlet" })),
            )
            .await?;
        Some(outlet["id"].as_str().unwrap_or_default().to_string())
    } else {
        None
    };
    let mut devices = Vec::new();
    let mut options = None;
    for i in 1..=args.count {
        let issued = api
            .call(
                Method::POST,
                "/devices",
                &[],
                Some(json!({ "serial": format!("{prefix}{i:04}"), "model": "SIM-SOUNDBOX" })),
            )
            .await?;
        let device_id = issued["device"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let c = &issued["credentials"];
        if options.is_none() {
            options = Some(SimOptions {
                host: args
                    .mqtt_host
                    .clone()
                    .unwrap_or_else(|| c["mqtt_host"].as_str().unwrap_or("localhost").to_string()),
                port: c["mqtt_port"]
                    .as_u64()
                    .and_then(|p| u16::try_from(p).ok())
                    .context("no mqtt_port in the API response")?,
                ca_pem: c["ca_certificate_pem"]
                    .as_str()
                    .unwrap_or_default()
                    .as_bytes()
                    .to_vec(),
                drop_ack_percent: Arc::new(AtomicU8::new(args.drop_acks.min(100))),
                disconnect_percent: args.disconnect.min(100),
                keep_alive: Duration::from_secs(60),
                periodic_heartbeats: true,
            });
        }
        let mut line = format!("device {device_id} (serial {prefix}{i:04})");
        if let Some(outlet) = &outlet {
            let terminal = api
                .call(
                    Method::POST,
                    "/terminals",
                    &[],
                    Some(json!({ "outlet_id": outlet, "label": format!("S{i:04}") })),
                )
                .await?;
            let terminal = terminal["id"].as_str().unwrap_or_default().to_string();
            api.call(
                Method::POST,
                &format!("/devices/{device_id}/bind"),
                &[],
                Some(json!({ "terminal_id": terminal })),
            )
            .await?;
            line.push_str(&format!(" on terminal {terminal}"));
        }
        println!("{line}");
        devices.push(SimDevice {
            device_id,
            secret: c["secret"].as_str().unwrap_or_default().to_string(),
        });
    }
    let Some(options) = options else {
        anyhow::bail!("--count must be at least 1");
    };
    let (tx, mut events) = mpsc::channel(1024);
    for device in devices {
        tokio::spawn(run_device(device, options.clone(), tx.clone()));
    }
    let plural = if args.count == 1 {
        "soundbox"
    } else {
        "soundboxes"
    };
    println!("running {} simulated {plural}; Ctrl-C stops", args.count);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            event = events.recv() => match event {
                Some(SimEvent::Connected { device_id }) => println!("{device_id} connected"),
                Some(SimEvent::Spoke { device_id, transaction_id, amount, .. }) => println!(
                    "{device_id}: \"pembayaran diterima, {} rupiah\" ({transaction_id})",
                    terbilang(amount)
                ),
                Some(SimEvent::Duplicate { device_id, transaction_id }) => {
                    println!("{device_id}: already announced {transaction_id}, not repeating")
                }
                Some(SimEvent::Late { device_id, transaction_id }) => {
                    println!("{device_id}: {transaction_id} arrived after its expiry, not spoken")
                }
                Some(SimEvent::Disconnected { device_id, error }) => {
                    println!("{device_id} disconnected: {error}")
                }
                Some(SimEvent::Command { device_id, command_id, state }) => {
                    println!("{device_id}: command {command_id} {state:?}")
                }
                Some(SimEvent::QrShown { device_id, transaction_id, amount, .. }) => {
                    println!("{device_id}: showing a QR for {amount} rupiah ({transaction_id})")
                }
                Some(SimEvent::QrCleared { device_id, reason, .. }) => {
                    println!("{device_id}: QR cleared ({reason:?})")
                }
                Some(SimEvent::ConfigApplied { device_id, version, volume }) => {
                    println!("{device_id}: config version {version} applied (volume {volume})")
                }
                None => break,
            },
        }
    }
    Ok(())
}

/// `--serial-prefix`, or `SIM-<Unix seconds>-` so that two runs do not collide.
pub(crate) fn serial_prefix(args: &crate::cli::SimArgs) -> String {
    args.serial_prefix.clone().unwrap_or_else(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        format!("SIM-{now}-")
    })
}

#[cfg(test)]
mod tests {
    use super::terbilang;

    #[test]
    fn amounts_read_as_a_soundbox_says_them() {
        assert_eq!(terbilang(25_000), "dua puluh lima ribu");
        assert_eq!(terbilang(1_500), "seribu lima ratus");
        assert_eq!(terbilang(11_000), "sebelas ribu");
        assert_eq!(terbilang(112), "seratus dua belas");
        assert_eq!(terbilang(1_250_000), "satu juta dua ratus lima puluh ribu");
        assert_eq!(terbilang(100_000), "seratus ribu");
        assert_eq!(
            terbilang(999_999),
            "sembilan ratus sembilan puluh sembilan ribu sembilan ratus sembilan puluh sembilan"
        );
    }
}

//! `gema doctor`: checks a configuration and the host it will run on before going live, and
//! says what to fix. It reads the same configuration `gema serve` would (file, `GEMA_*`
//! variables), changes nothing (no migration, no certificate, no database file is created)
//! and exits non-zero when anything would stop the daemon or lose payments.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::Duration;

use time::OffsetDateTime;

use crate::Config;

/// A certificate closer than this to expiry is reported (as the `/health/deep` check does).
const CERT_WARN_DAYS: i64 = 30;
/// How long the database has to answer.
const DB_TIMEOUT: Duration = Duration::from_secs(5);
/// No clock that runs this release can be earlier than this (2026-01-01T00:00:00Z): an
/// earlier one is a machine that booted without its real-time clock or NTP.
const CLOCK_FLOOR_UNIX: i64 = 1_767_225_600;
/// Skew from the database server's clock past which leases, heartbeats and expiries drift.
const CLOCK_SKEW_WARN_MS: i64 = 2_000;
/// Past this the cluster's leases and the node heartbeats cannot be trusted.
const CLOCK_SKEW_FAIL_MS: i64 = 30_000;
/// A generic-callback secret shorter than this is guessable.
const MIN_SECRET_LEN: usize = 16;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Ok,
    /// The daemon runs, but not as it should in production.
    Warn,
    /// The daemon would not start, or would lose or refuse payments.
    Fail,
}

/// One thing checked: what, how it stands, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub check: &'static str,
    pub verdict: Verdict,
    pub detail: String,
    pub fix: Option<String>,
}

impl Finding {
    fn ok(check: &'static str, detail: impl Into<String>) -> Self {
        Self {
            check,
            verdict: Verdict::Ok,
            detail: detail.into(),
            fix: None,
        }
    }
    fn warn(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            check,
            verdict: Verdict::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
    fn fail(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            check,
            verdict: Verdict::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Every check, in the order an operator fixes things: the listeners, the host's limits,
/// the certificates, the database, the providers' secrets, the clock.
pub async fn examine(config: &Config) -> Vec<Finding> {
    let mut findings = ports(config);
    findings.extend(open_files(config));
    findings.extend(certificates(config));
    let (database, server_clock) = database(config).await;
    findings.extend(database);
    findings.extend(secrets(config));
    findings.push(clock(OffsetDateTime::now_utc(), server_clock));
    findings
}

/// The findings as the command prints them, and whether any of them fails.
pub fn report(findings: &[Finding]) -> (String, bool) {
    let mut out = String::new();
    for f in findings {
        let mark = match f.verdict {
            Verdict::Ok => "ok  ",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        };
        out.push_str(&format!("{mark}  {:<13} {}\n", f.check, f.detail));
        if let Some(fix) = &f.fix {
            out.push_str(&format!("      {:<13} fix: {fix}\n", ""));
        }
    }
    let count = |v| findings.iter().filter(|f| f.verdict == v).count();
    let (fails, warns) = (count(Verdict::Fail), count(Verdict::Warn));
    out.push_str(&match (fails, warns) {
        (0, 0) => "\nready: nothing to fix\n".to_string(),
        (0, w) => format!("\nready, with {w} warning(s) to look at\n"),
        (f, w) => format!("\nnot ready: {f} problem(s) to fix, {w} warning(s)\n"),
    });
    (out, fails > 0)
}

/// Each listener's address must be free and bindable by this user, and no two the same.
fn ports(config: &Config) -> Vec<Finding> {
    let mut listeners: Vec<(&'static str, SocketAddr)> = vec![
        ("http.listen", config.http.listen),
        ("metrics.listen", config.metrics.listen),
        ("mqtt.listen", config.mqtt.listen),
    ];
    if let Some(plain) = config.mqtt.plain_listen {
        listeners.push(("mqtt.plain_listen", plain));
    }
    let mut findings = Vec::new();
    for (i, (key, addr)) in listeners.iter().enumerate() {
        if addr.port() != 0
            && let Some((other, _)) = listeners[..i].iter().find(|(_, a)| a.port() == addr.port())
        {
            findings.push(Finding::fail(
                "ports",
                format!("{key} {addr} uses the port of {other}"),
                format!("give {key} a port of its own"),
            ));
            continue;
        }
        findings.push(match TcpListener::bind(addr) {
            Ok(_) => {
                if *key == "http.listen" && !addr.ip().is_loopback() {
                    Finding::warn(
                        "ports",
                        format!(
                            "{key} {addr} is free; the admin API is reachable from the network"
                        ),
                        "keep it on loopback or behind a TLS-terminating proxy",
                    )
                } else {
                    Finding::ok("ports", format!("{key} {addr} is free"))
                }
            }
            Err(err) => bind_failure(key, *addr, &err),
        });
    }
    findings
}

fn bind_failure(key: &str, addr: SocketAddr, err: &std::io::Error) -> Finding {
    use std::io::ErrorKind;
    let (detail, fix) = match err.kind() {
        ErrorKind::AddrInUse => (
            format!("{key} {addr} is in use by another process"),
            "stop it (another gema on this port?) or set another port".to_string(),
        ),
        ErrorKind::PermissionDenied => (
            format!("{key} {addr}: this user may not listen there"),
            "ports below 1024 need CAP_NET_BIND_SERVICE: use a higher port behind a balancer"
                .to_string(),
        ),
        ErrorKind::AddrNotAvailable => (
            format!("{key} {addr}: no interface of this host has that address"),
            "listen on an address of this host, or 0.0.0.0".to_string(),
        ),
        _ => (format!("{key} {addr}: {err}"), "see the error".to_string()),
    };
    Finding::fail("ports", detail, fix)
}

/// The open-file limit holds the configured connections (the daemon raises its soft limit
/// to the hard limit at start), and the listen backlog fits the kernel's `somaxconn`.
fn open_files(config: &Config) -> Vec<Finding> {
    let mut findings = Vec::new();
    let reserved = crate::app::reserved_open_files(config);
    let wanted = (config.mqtt.max_connections + config.http.max_connections) as u64 + reserved;
    findings.push(match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok((_, hard)) if hard >= wanted => Finding::ok(
            "open files",
            format!("hard limit {hard} holds mqtt.max_connections + http.max_connections + {reserved} reserved"),
        ),
        Ok((_, hard)) => Finding::warn(
            "open files",
            format!(
                "hard limit {hard}: about {} devices, not mqtt.max_connections {} (the caps are \
                 lowered at start)",
                hard.saturating_sub(reserved + config.http.max_connections as u64),
                config.mqtt.max_connections
            ),
            format!(
                "raise it to {wanted} or more (LimitNOFILE= in the systemd unit, `ulimit -n` \
                 elsewhere), or lower mqtt.max_connections"
            ),
        ),
        Err(err) => Finding::warn(
            "open files",
            format!("cannot read the open-file limit: {err}"),
            "check `ulimit -Hn`",
        ),
    });
    if let Ok(text) = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        && let Ok(somaxconn) = text.trim().parse::<u32>()
    {
        findings.push(if somaxconn >= config.mqtt.backlog {
            Finding::ok(
                "open files",
                format!(
                    "net.core.somaxconn {somaxconn} holds mqtt.backlog {}",
                    config.mqtt.backlog
                ),
            )
        } else {
            Finding::warn(
                "open files",
                format!(
                    "net.core.somaxconn {somaxconn} caps mqtt.backlog {}: a reconnect storm \
                     overflows the accept queue",
                    config.mqtt.backlog
                ),
                format!("sysctl -w net.core.somaxconn={}", config.mqtt.backlog),
            )
        });
    }
    findings
}

/// The server certificate devices will be shown: present, valid now and for a while, and
/// naming the host devices are told to connect to.
fn certificates(config: &Config) -> Vec<Finding> {
    let host = &config.mqtt.public_host;
    let mut findings = Vec::new();
    if host == "localhost" {
        findings.push(Finding::warn(
            "certificates",
            "mqtt.public_host is localhost: provisioned devices are told to connect to localhost",
            "set mqtt.public_host to the name devices reach this gateway by",
        ));
    }
    let tls = &config.tls;
    match (&tls.cert, &tls.key, &tls.ca_cert) {
        (Some(cert), Some(key), Some(ca)) => {
            findings.push(certificate("tls.cert", cert, Some(host)));
            findings.push(certificate("tls.ca_cert", ca, None));
            if let Err(err) = std::fs::File::open(key) {
                findings.push(Finding::fail(
                    "certificates",
                    format!("tls.key {}: {err}", key.display()),
                    "make the key readable by the daemon's user only",
                ));
            }
        }
        (None, None, None) => {
            let files = crate::certificates::development_pki(config).files();
            if files.server_cert.exists() {
                let mut found = certificate("development", &files.server_cert, None);
                // The daemon re-issues the development certificate itself when it is close to
                // expiry or lacks a name; an operator only needs to know it is in use.
                found.verdict = found.verdict.min(Verdict::Warn);
                findings.push(found);
            }
            findings.push(Finding::warn(
                "certificates",
                format!(
                    "no [tls]: the development CA in {} signs the server certificate",
                    files.ca_cert.parent().unwrap_or(Path::new(".")).display()
                ),
                "fine for a pilot (give devices that CA); set tls.cert, tls.key and tls.ca_cert \
                 for production",
            ));
        }
        _ => findings.push(Finding::fail(
            "certificates",
            "only some of tls.cert, tls.key and tls.ca_cert are set",
            "set all three, or none for the development CA",
        )),
    }
    findings
}

fn certificate(key: &str, path: &Path, host: Option<&str>) -> Finding {
    let info = match gema_certs::certificate_info(path) {
        Ok(info) => info,
        Err(err) => {
            return Finding::fail(
                "certificates",
                format!("{key}: {err}"),
                "point it at a readable PEM certificate",
            );
        }
    };
    let now = OffsetDateTime::now_utc();
    let days_left = info.days_left(now);
    let subject = &info.subject;
    if info.not_before > now {
        return Finding::fail(
            "certificates",
            format!(
                "{key} ({subject}) is not valid before {}",
                info.not_before.date()
            ),
            "check this host's clock, or the certificate's dates",
        );
    }
    if days_left < 0 {
        return Finding::fail(
            "certificates",
            format!("{key} ({subject}) expired on {}", info.not_after.date()),
            "renew it; devices refuse an expired certificate",
        );
    }
    if let Some(host) = host
        && !info.names.iter().any(|name| name_covers(name, host))
    {
        return Finding::fail(
            "certificates",
            format!(
                "{key} ({subject}) does not name mqtt.public_host {host} (it names {})",
                info.names.join(", ")
            ),
            "issue the certificate for that host, or correct mqtt.public_host",
        );
    }
    if days_left < CERT_WARN_DAYS {
        return Finding::warn(
            "certificates",
            format!("{key} ({subject}) expires in {days_left} days"),
            "renew it soon",
        );
    }
    Finding::ok(
        "certificates",
        format!("{key} ({subject}) valid for {days_left} more days"),
    )
}

/// Whether a certificate name (`gema.example.id`, `*.example.id`, an address) covers `host`.
fn name_covers(name: &str, host: &str) -> bool {
    if name.eq_ignore_ascii_case(host) {
        return true;
    }
    match (name.strip_prefix("*."), host.split_once('.')) {
        (Some(suffix), Some((label, rest))) => {
            !label.is_empty() && rest.eq_ignore_ascii_case(suffix)
        }
        _ => false,
    }
}

/// The database answers and its schema is one this binary knows. An SQLite file that does not
/// exist yet is fine (the first start creates it) and is not created here. Also returns the
/// database server's clock, for [`clock`].
async fn database(config: &Config) -> (Vec<Finding>, Option<i64>) {
    let url = config.database_url();
    let shown = gema_store::redact_url(&url);
    if let Some(file) = crate::app::sqlite_file(&url)
        && !file.exists()
    {
        let dir = file
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        return (vec![writable_dir("database", dir, &file)], None);
    }
    let store = match tokio::time::timeout(DB_TIMEOUT, crate::app::open_store(config)).await {
        Ok(Ok(store)) => store,
        Ok(Err(err)) => {
            return (
                vec![Finding::fail(
                    "database",
                    format!("{err:#}"),
                    "check database.url, the server and the credentials",
                )],
                None,
            );
        }
        Err(_) => {
            return (
                vec![Finding::fail(
                    "database",
                    format!("{shown}: no answer within {DB_TIMEOUT:?}"),
                    "check that the server runs and this host may reach it",
                )],
                None,
            );
        }
    };
    let mut findings = Vec::new();
    findings.push(match store.migration_status().await {
        Ok(status) if status.pending.is_empty() => Finding::ok(
            "database",
            format!(
                "{shown} answers; schema at version {}",
                status.applied.iter().max().copied().unwrap_or(0)
            ),
        ),
        Ok(status) => Finding::warn(
            "database",
            format!(
                "{shown} answers; {} migration(s) pending ({:?})",
                status.pending.len(),
                status.pending
            ),
            "`gema serve` applies them at start; take a backup first (`gema backup`), or run \
             `gema migrate` in a maintenance window",
        ),
        Err(err) => Finding::fail(
            "database",
            format!("{shown}: reading the schema version: {err}"),
            "is this a Gema database of a newer release? run the matching binary",
        ),
    });
    let server_clock = store.server_clock_ms().await.ok().flatten();
    (findings, server_clock)
}

fn writable_dir(check: &'static str, dir: &Path, file: &Path) -> Finding {
    let probe = dir.join(format!(".gema-doctor-{}", std::process::id()));
    let existed = dir.exists();
    let result = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&probe, b""));
    let _ = std::fs::remove_file(&probe);
    if !existed {
        let _ = std::fs::remove_dir(dir);
    }
    match result {
        Ok(()) => Finding::ok(
            check,
            format!(
                "{} does not exist yet; the first start creates it",
                file.display()
            ),
        ),
        Err(err) => Finding::fail(
            check,
            format!("{} cannot be created: {err}", dir.display()),
            "give the daemon's user a writable data directory (data_dir)",
        ),
    }
}

/// The secrets the payment providers sign with; without one, that provider's callbacks are
/// refused. And WhatsApp's, when a sender is configured.
fn secrets(config: &Config) -> Vec<Finding> {
    let payments = &config.payments;
    let providers = [
        (
            "payments.midtrans.server_key",
            payments.midtrans.server_key.as_ref(),
        ),
        (
            "payments.xendit.callback_token",
            payments.xendit.callback_token.as_ref(),
        ),
        ("payments.generic.secret", payments.generic.secret.as_ref()),
    ];
    let mut findings = Vec::new();
    let set: Vec<&str> = providers
        .iter()
        .filter(|(_, secret)| secret.is_some())
        .map(|(key, _)| *key)
        .collect();
    findings.push(if set.is_empty() {
        Finding::fail(
            "secrets",
            "no payment provider's secret is set: every callback would be refused",
            "set payments.midtrans.server_key, payments.xendit.callback_token or \
             payments.generic.secret (GEMA_PAYMENTS__MIDTRANS__SERVER_KEY, …)",
        )
    } else {
        Finding::ok("secrets", format!("set: {}", set.join(", ")))
    });
    if let Some(secret) = &payments.generic.secret
        && secret.expose().len() < MIN_SECRET_LEN
    {
        findings.push(Finding::warn(
            "secrets",
            format!("payments.generic.secret is shorter than {MIN_SECRET_LEN} characters"),
            "use a long random value (`openssl rand -hex 32`)",
        ));
    }
    let wa = &config.whatsapp;
    if wa.phone_number_id.is_some() && wa.access_token.is_none() {
        findings.push(Finding::fail(
            "secrets",
            "whatsapp.phone_number_id is set without whatsapp.access_token",
            "set whatsapp.access_token, or remove the sender",
        ));
    }
    if (wa.phone_number_id.is_some() || wa.gateway_url.is_some()) && wa.app_secret.is_none() {
        findings.push(Finding::warn(
            "secrets",
            "whatsapp.app_secret is not set: delivery webhooks cannot be verified",
            "set whatsapp.app_secret (the Meta app's secret)",
        ));
    }
    findings
}

/// The clock is plausible, and agrees with the database server's (leases, heartbeats,
/// expiries and the callback signature windows compare times across machines).
fn clock(now: OffsetDateTime, server_clock_ms: Option<i64>) -> Finding {
    if now.unix_timestamp() < CLOCK_FLOOR_UNIX {
        return Finding::fail(
            "clock",
            format!("this host's clock says {now}, before this release existed"),
            "set the clock (NTP: systemd-timesyncd or chrony)",
        );
    }
    let Some(server_ms) = server_clock_ms else {
        let shown = now
            .replace_nanosecond(0)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        return Finding::ok("clock", format!("{shown} (UTC)"));
    };
    let skew = (now.unix_timestamp_nanos() / 1_000_000) as i64 - server_ms;
    let detail = format!("{skew} ms from the database server's clock");
    if skew.abs() >= CLOCK_SKEW_FAIL_MS {
        Finding::fail(
            "clock",
            detail,
            "synchronise both machines' clocks (NTP) before running several nodes",
        )
    } else if skew.abs() >= CLOCK_SKEW_WARN_MS {
        Finding::warn(
            "clock",
            detail,
            "run NTP on this host and the database server",
        )
    } else {
        Finding::ok("clock", detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_names_cover_one_label() {
        assert!(name_covers("gema.example.id", "GEMA.example.id"));
        assert!(name_covers("*.example.id", "gema.example.id"));
        assert!(!name_covers("*.example.id", "a.gema.example.id"));
        assert!(!name_covers("*.example.id", "example.id"));
        assert!(!name_covers("gema.example.id", "other.example.id"));
    }

    #[test]
    fn the_clock_is_judged_against_the_floor_and_the_database() {
        let now = OffsetDateTime::from_unix_timestamp(CLOCK_FLOOR_UNIX + 86_400).unwrap();
        let now_ms = (now.unix_timestamp_nanos() / 1_000_000) as i64;
        assert_eq!(clock(now, None).verdict, Verdict::Ok);
        assert_eq!(clock(now, Some(now_ms - 500)).verdict, Verdict::Ok);
        assert_eq!(clock(now, Some(now_ms - 5_000)).verdict, Verdict::Warn);
        assert_eq!(clock(now, Some(now_ms + 60_000)).verdict, Verdict::Fail);
        let past = OffsetDateTime::from_unix_timestamp(CLOCK_FLOOR_UNIX - 1).unwrap();
        assert_eq!(clock(past, None).verdict, Verdict::Fail);
    }

    #[test]
    fn the_report_fails_only_on_a_failure() {
        let warn = Finding::warn("ports", "w", "f");
        let (text, failed) = report(std::slice::from_ref(&warn));
        assert!(!failed);
        assert!(text.contains("WARN  ports"), "{text}");
        assert!(text.contains("fix: f"), "{text}");
        let (text, failed) = report(&[warn, Finding::fail("clock", "c", "ntp")]);
        assert!(failed);
        assert!(
            text.contains("not ready: 1 problem(s) to fix, 1 warning(s)"),
            "{text}"
        );
    }
}

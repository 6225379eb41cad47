//! How the broker learns who is connecting, without knowing where credentials live: the
//! binary implements [`Authenticator`] over the device registry. Also the failed-login limiter.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::config::FailedLoginLimits;

/// Who a successful authentication says the client is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A soundbox; its client id must equal this id.
    Device(String),
    /// A service principal named in `BrokerConfig::services`.
    Service(String),
    /// A factory-fresh device holding its batch's claim (this claim id): its client id is
    /// its serial, and it may only use `provisioning/<serial>/up|down` (provisioning by
    /// claim; its requests come out of [`crate::Broker::take_provisioning_requests`]).
    Claim(String),
}

/// The client certificate a device presented (already verified against the device CA and
/// within its validity), as the authenticator needs it to check revocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// The serial number, lowercase hex without leading zero bytes.
    pub serial: String,
    /// SHA-256 of the certificate's DER, lowercase hex.
    pub fingerprint: String,
}

/// Why a client may not connect; each maps to a CONNACK return code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthRefusal {
    /// Unknown user or wrong password (CONNACK 0x04).
    #[error("bad user name or password")]
    BadCredentials,
    /// Known but not allowed: revoked, disabled, unbound (CONNACK 0x05).
    #[error("not authorized")]
    NotAuthorized,
    /// The registry could not answer (CONNACK 0x03; the client retries later).
    #[error("authentication service unavailable")]
    Unavailable,
}

/// Implemented by the binary over the device registry. Called once per CONNECT.
#[async_trait::async_trait]
pub trait Authenticator: Send + Sync + 'static {
    /// Checks the user name and password of a CONNECT.
    async fn authenticate(
        &self,
        username: &str,
        password: &str,
        peer: SocketAddr,
    ) -> Result<Identity, AuthRefusal>;

    /// A client presented `certificate`, verified against the device CA, naming
    /// `device_id`: may that device connect now with it (the device exists and is not
    /// revoked, and neither is the certificate)? Revocation is decided here, at CONNECT: a
    /// refused certificate completes the TLS handshake and gets CONNACK 0x05.
    async fn authorize_certificate(
        &self,
        device_id: &str,
        certificate: &ClientCertificate,
        peer: SocketAddr,
    ) -> Result<(), AuthRefusal>;
}

/// Counts failed logins per device id and per source address in fixed windows.
#[derive(Debug)]
pub(crate) struct LoginLimiter {
    limits: FailedLoginLimits,
    by_device: HashMap<String, Window>,
    by_address: HashMap<IpAddr, Window>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    failures: u32,
}

/// Bound on tracked keys; past it, expired windows are pruned.
const MAX_TRACKED: usize = 100_000;
/// Longer user names cannot be device ids; they are limited per address only.
const MAX_TRACKED_NAME: usize = 128;

impl LoginLimiter {
    pub(crate) fn new(limits: FailedLoginLimits) -> Self {
        Self {
            limits,
            by_device: HashMap::new(),
            by_address: HashMap::new(),
        }
    }

    /// Whether a login for `username` from `ip` must be refused without checking it.
    pub(crate) fn is_limited(&self, username: &str, ip: IpAddr, now: Instant) -> bool {
        let over = |w: Option<&Window>, limit: u32| {
            w.is_some_and(|w| {
                now.duration_since(w.start) < self.limits.window && w.failures >= limit
            })
        };
        over(self.by_device.get(username), self.limits.per_device)
            || over(self.by_address.get(&ip), self.limits.per_address)
    }

    pub(crate) fn record_failure(&mut self, username: &str, ip: IpAddr, now: Instant) {
        let window = self.limits.window;
        if username.len() <= MAX_TRACKED_NAME {
            bump(
                self.by_device.entry(username.to_owned()).or_insert(Window {
                    start: now,
                    failures: 0,
                }),
                now,
                window,
            );
        }
        bump(
            self.by_address.entry(ip).or_insert(Window {
                start: now,
                failures: 0,
            }),
            now,
            window,
        );
        if self.by_device.len() > MAX_TRACKED {
            self.by_device
                .retain(|_, w| now.duration_since(w.start) < window);
        }
        if self.by_address.len() > MAX_TRACKED {
            self.by_address
                .retain(|_, w| now.duration_since(w.start) < window);
        }
    }

    pub(crate) fn record_success(&mut self, username: &str) {
        self.by_device.remove(username);
    }
}

fn bump(w: &mut Window, now: Instant, window: Duration) {
    if now.duration_since(w.start) >= window {
        *w = Window {
            start: now,
            failures: 0,
        };
    }
    w.failures = w.failures.saturating_add(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_device_and_per_address_within_a_window() {
        let mut l = LoginLimiter::new(FailedLoginLimits {
            per_device: 2,
            per_address: 3,
            window: Duration::from_secs(60),
        });
        let t0 = Instant::now();
        let ip1: IpAddr = [127, 0, 0, 1].into();
        let ip2: IpAddr = [127, 0, 0, 2].into();
        l.record_failure("a", ip1, t0);
        assert!(!l.is_limited("a", ip1, t0));
        l.record_failure("a", ip2, t0);
        assert!(
            l.is_limited("a", ip2, t0),
            "per device, whatever the address"
        );
        assert!(!l.is_limited("b", ip2, t0));
        l.record_failure("b", ip1, t0);
        l.record_failure("c", ip1, t0);
        assert!(
            l.is_limited("d", ip1, t0),
            "per address, whatever the device"
        );
        assert!(!l.is_limited("a", ip1, t0 + Duration::from_secs(61)));
        l.record_success("a");
        assert!(!l.is_limited("a", ip2, t0));
    }
}

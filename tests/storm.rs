//! Presence through a connect storm: with room for only 4 presence events between the
//! broker and the gateway, hundreds of devices connecting at once (real MQTT clients over
//! real TLS) all end up recorded, and so do those that leave again.
//!
//! A test binary of its own, so that it runs alone: Cargo runs test binaries one after
//! another, while the tests inside one share the cores. Alone the whole test takes
//! 11–16 s. Inside `tests/daemon` it once failed in CI with 82 of 200 devices still out after
//! 300 s, most of which it had spent alone (the cause is unknown: it never happened again,
//! alone, beside CPU hogs or beside the daemon suite), so a failure now names each missing
//! device's last error and prints the daemon's warnings.

// The shared harness; this binary uses only part of it.
#[allow(dead_code)]
#[path = "daemon/helpers.rs"]
mod helpers;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::AtomicU8;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gema::sim::{SimDevice, SimEvent, run_device};
use gema_gateway::testing::{eventually, eventually_within};
use tokio::sync::mpsc;

use crate::helpers::{Daemon, LogOnFailure, sim_options};

const DEVICES: usize = 200;
/// How long the storm's connects may take: alone the whole test takes 11–16 s.
/// A bound for the harness, not a figure: the storm's figures come from `gema bench
/// presence` on a release build.
const STORM_DEADLINE: Duration = Duration::from_secs(300);

/// Registers `DEVICES` devices through the API, 16 at a time.
async fn register_fleet(daemon: &Daemon) -> (Vec<SimDevice>, Vec<u8>) {
    let mut devices = Vec::with_capacity(DEVICES);
    let mut ca_pem = Vec::new();
    for chunk in (0..DEVICES).collect::<Vec<_>>().chunks(16) {
        let registered = futures_util::future::join_all(
            chunk
                .iter()
                .map(|i| async move { daemon.register_device(&format!("STORM-{i:04}")).await }),
        )
        .await;
        for r in registered {
            ca_pem = r.ca_pem;
            devices.push(r.device);
        }
    }
    (devices, ca_pem)
}

/// Waits until every device in `ids` has its presence recorded as `connected`. Asks only
/// about those not yet seen so.
async fn presence_recorded(daemon: &Daemon, ids: &[String], connected: bool) {
    let waiting = Arc::new(Mutex::new(ids.to_vec()));
    let what = format!("{} devices recorded as connected = {connected}", ids.len());
    eventually(&what, || {
        let waiting = waiting.clone();
        async move {
            let ids = waiting.lock().unwrap().clone();
            let mut still = Vec::new();
            for chunk in ids.chunks(32) {
                let statuses = futures_util::future::join_all(chunk.iter().map(|id| async move {
                    daemon.get(&format!("/api/v1/devices/{id}/status")).await
                }))
                .await;
                for (id, (status, body)) in chunk.iter().zip(statuses) {
                    if status != 200 || body["presence"]["connected"] != connected {
                        still.push(id.clone());
                    }
                }
            }
            let done = still.is_empty();
            *waiting.lock().unwrap() = still;
            done.then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_device_of_a_connect_storm_has_its_presence_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_with(
        dir.path(),
        &[
            ("GEMA_MQTT__PRESENCE_CAPACITY", "4"),
            // Logins in a storm wait for the registry's reads rather than being refused
            // (a debug build on a busy machine is slow).
            ("GEMA_DATABASE__ACQUIRE_TIMEOUT_SECS", "60"),
        ],
    );
    let _logs = LogOnFailure(&daemon);
    let (devices, ca_pem) = register_fleet(&daemon).await;
    let options = sim_options(daemon.mqtt_addr.port(), ca_pem, Arc::new(AtomicU8::new(0)));

    // All at once.
    let (events_tx, mut events) = mpsc::channel(4 * DEVICES);
    let mut tasks: Vec<_> = devices
        .iter()
        .map(|d| tokio::spawn(run_device(d.clone(), options.clone(), events_tx.clone())))
        .collect();
    let mut connected = HashSet::new();
    // Why each device not yet connected failed last, so that a storm that does not come
    // up says why.
    let mut last_error = HashMap::new();
    // TLS in a debug build on a shared machine is slow: the storm takes a while to arrive.
    eventually_within("every simulated device connected", STORM_DEADLINE, || {
        while let Ok(event) = events.try_recv() {
            match event {
                SimEvent::Connected { device_id } => {
                    last_error.remove(&device_id);
                    connected.insert(device_id);
                }
                SimEvent::Disconnected { device_id, error } if !connected.contains(&device_id) => {
                    last_error.insert(device_id, error);
                }
                _ => {}
            }
        }
        let count = connected.len();
        let mut errors: BTreeMap<&str, usize> = BTreeMap::new();
        for error in last_error.values() {
            *errors.entry(error.as_str()).or_default() += 1;
        }
        let status = format!(
            "{count} connected; of the others {} never failed, the rest last failed with {errors:?}",
            DEVICES - count - last_error.len()
        );
        async move {
            if count == DEVICES {
                Ok(Some(()))
            } else {
                Err(status)
            }
        }
    })
    .await;
    let ids: Vec<String> = devices.iter().map(|d| d.device_id.clone()).collect();
    presence_recorded(&daemon, &ids, true).await;

    // A third of them drop off at once: their disconnects are recorded too.
    let leaving: Vec<String> = ids.iter().step_by(3).cloned().collect();
    for (i, task) in tasks.iter().enumerate() {
        if i % 3 == 0 {
            task.abort();
        }
    }
    presence_recorded(&daemon, &leaving, false).await;
    let staying: Vec<String> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 0)
        .map(|(_, id)| id.clone())
        .collect();
    presence_recorded(&daemon, &staying, true).await;

    for task in tasks.drain(..) {
        task.abort();
    }
}

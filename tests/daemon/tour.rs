//! The README's five-minute tour, as a technician would type it, and the rule that a device
//! secret is never logged, listed or stored in clear.

use crate::helpers::Daemon;

fn value_after<'a>(text: &'a str, label: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tour_provisions_a_device_and_its_secret_stays_secret() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());

    let merchant = daemon.cli_ok(&["merchant", "add", "--name", "Warung Sari", "-q"]);
    assert!(merchant.starts_with("mer_"), "{merchant}");
    daemon.cli_ok(&["merchant", "approve", &merchant]);
    let outlet = daemon.cli_ok(&[
        "outlet",
        "add",
        "--merchant",
        &merchant,
        "--name",
        "Pasar Baru",
        "--city",
        "Jakarta",
        "-q",
    ]);
    let terminal = daemon.cli_ok(&[
        "terminal", "add", "--outlet", &outlet, "--label", "A01", "-q",
    ]);

    let added = daemon.cli_ok(&["device", "add", "--serial", "SB-0001", "--model", "SB-100"]);
    let device = value_after(&added, "Username").to_string();
    let secret = value_after(&added, "Secret").to_string();
    assert!(device.starts_with("dev_"), "{added}");
    assert_eq!(secret.len(), 32, "{added}");
    assert_eq!(value_after(&added, "Broker host"), "localhost");
    assert_eq!(
        value_after(&added, "Broker port"),
        format!("{} (MQTT over TLS)", daemon.mqtt_addr.port())
    );
    assert_eq!(
        value_after(&added, "Topic prefix"),
        format!("devices/{device}/")
    );
    let ca = value_after(&added, "CA certificate");
    assert!(std::path::Path::new(ca).is_file(), "{ca} is a real file");

    daemon.cli_ok(&["device", "bind", &device, "--terminal", &terminal]);
    let shown = daemon.cli_ok(&["device", "show", &device, "--json"]);
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["terminal_id"], terminal.as_str());
    assert_eq!(shown["credential"]["status"], "active");

    // Binding a bound device is refused with a clear message and exit code.
    let refused = daemon.cli(&["device", "bind", &device, "--terminal", &terminal, "--json"]);
    assert!(refused.status.success(), "same terminal again is a no-op");
    let other = daemon.cli(&["device", "add", "--serial", "SB-0001", "--model", "SB-100"]);
    assert_eq!(other.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&other.stderr).contains("serial_taken"));

    // The secret is nowhere but in the one response that issued it.
    let listed = daemon.cli_ok(&["device", "list", "--json"]);
    assert!(listed.contains(&device) && !listed.contains(&secret));
    let rotated = daemon.cli_ok(&["device", "rotate", &device]);
    let new_secret = value_after(&rotated, "Secret").to_string();
    assert_ne!(new_secret, secret);

    let stdout = daemon.stdout();
    let data = dir.path().join("gema-data");
    let (_, stderr) = daemon.terminate().await;
    for s in [&secret, &new_secret] {
        assert!(
            !stderr.contains(s.as_str()),
            "a secret is in the daemon's logs"
        );
        assert!(
            !stdout.contains(s.as_str()),
            "a secret is on the daemon's stdout"
        );
        for file in ["gema.db", "gema.db-wal"] {
            let path = data.join(file);
            if let Ok(bytes) = std::fs::read(&path) {
                let haystack = String::from_utf8_lossy(&bytes);
                assert!(
                    !haystack.contains(s.as_str()),
                    "a secret is in clear in {file}"
                );
            }
        }
    }
    assert!(stderr.contains(&device), "the logs do name the device");
}

//! Credentials for technicians: `gema device add|rotate --qr / --qr-png` draw the
//! provisioning string as a QR code. The codes are decoded back here (`rqrr`), parsed with
//! the firmware's own parser, and the credentials they carry connect a soundbox.

use std::path::Path;

use gema::sim::SimDevice;
use gema_firmware_protocol::ProvisioningString;

use crate::helpers::{Daemon, connected_sim};

fn value_after<'a>(text: &'a str, label: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{text}"))
}

/// The QR code found in a greyscale image (0 dark, 255 light), decoded.
fn decode_qr(width: usize, height: usize, pixel: impl FnMut(usize, usize) -> u8) -> String {
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(width, height, pixel);
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the image");
    let (_, content) = grids[0].decode().expect("the QR code decodes");
    content
}

fn decode_png(path: &Path) -> String {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buffer = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buffer).unwrap();
    assert_eq!(info.color_type, png::ColorType::Grayscale);
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let (width, height) = (info.width as usize, info.height as usize);
    decode_qr(width, height, |x, y| buffer[y * info.line_size + x])
}

/// The lines of `output` drawn with half blocks, read back as an image: a drawn half is a
/// light module (the code is drawn for a dark terminal), a blank half a dark one; each
/// module becomes 4×4 pixels so the detector sees clear edges.
fn decode_terminal(output: &str) -> String {
    let lines: Vec<Vec<char>> = output
        .lines()
        .filter(|l| !l.is_empty() && l.chars().all(|c| " \u{2580}\u{2584}\u{2588}".contains(c)))
        .map(|l| l.chars().collect())
        .collect();
    assert!(lines.len() > 10, "a QR code in half blocks:\n{output}");
    let width = lines[0].len();
    assert!(lines.iter().all(|l| l.len() == width), "{output}");
    let light = |x: usize, y: usize| {
        let c = lines[y / 2][x];
        match (c, y % 2) {
            ('\u{2588}', _) | ('\u{2580}', 0) | ('\u{2584}', 1) => 255,
            _ => 0,
        }
    };
    const SCALE: usize = 4;
    // The code is square; the last line's lower half is past its bottom edge.
    decode_qr(width * SCALE, width * SCALE, |x, y| {
        light(x / SCALE, y / SCALE)
    })
}

fn ca_sha256(data_dir: &Path) -> [u8; 32] {
    let pem = std::fs::read(data_dir.join("certs/ca.pem")).unwrap();
    let der = rustls_pemfile::certs(&mut pem.as_slice())
        .next()
        .unwrap()
        .unwrap();
    let digest = ring::digest::digest(&ring::digest::SHA256, der.as_ref());
    digest.as_ref().try_into().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn device_add_writes_a_png_whose_code_carries_the_printed_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let png_path = dir.path().join("SB-QR01.png");

    let added = daemon.cli_ok(&[
        "device",
        "add",
        "--serial",
        "SB-QR01",
        "--model",
        "SB-100",
        "--qr-png",
        png_path.to_str().unwrap(),
    ]);
    assert_eq!(
        value_after(&added, "QR code written to"),
        png_path.display().to_string()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&png_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the PNG holds the secret");
    }

    let scanned = decode_png(&png_path);
    let parsed = ProvisioningString::parse(&scanned).expect("a provisioning string");
    assert_eq!(parsed.device_id(), value_after(&added, "Username"));
    assert_eq!(parsed.secret(), value_after(&added, "Secret"));
    assert_eq!(parsed.host(), "localhost");
    assert_eq!(parsed.port(), daemon.mqtt_addr.port());
    assert_eq!(parsed.ca_sha256(), ca_sha256(&dir.path().join("gema-data")));
}

#[tokio::test(flavor = "multi_thread")]
async fn device_rotate_draws_the_new_secret_in_the_terminal_and_it_connects() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let registered = daemon.register_device("SB-QR02").await;
    let device_id = registered.device.device_id.clone();

    let rotated = daemon.cli_ok(&["device", "rotate", &device_id, "--qr"]);
    let printed = value_after(&rotated, "Provisioning string:");
    assert_eq!(decode_terminal(&rotated), printed);
    let parsed = ProvisioningString::parse(printed).expect("a provisioning string");
    assert_eq!(parsed.device_id(), device_id);
    assert_eq!(parsed.secret(), value_after(&rotated, "Secret"));
    assert_ne!(parsed.secret(), registered.device.secret, "a new secret");
    assert_eq!(parsed.ca_sha256(), ca_sha256(&dir.path().join("gema-data")));

    // What the technician scanned is enough: the soundbox connects with it, trusting the
    // CA whose fingerprint the code carries.
    assert_eq!(
        (parsed.host(), parsed.port()),
        ("localhost", daemon.mqtt_addr.port())
    );
    let scanned = SimDevice {
        device_id: parsed.device_id().to_string(),
        secret: parsed.secret().to_string(),
    };
    let (task, _events) = connected_sim(parsed.port(), &scanned, &registered.ca_pem).await;
    task.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_qr_request_that_cannot_be_met_is_refused_before_a_secret_is_issued() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());

    let unwritable = dir.path().join("no-such-dir/code.png");
    let refused = daemon.cli(&[
        "device",
        "add",
        "--serial",
        "SB-QR03",
        "--model",
        "SB-100",
        "--qr-png",
        unwritable.to_str().unwrap(),
    ]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(refused.stdout.is_empty(), "no credentials were issued");
    let listed = daemon.cli_ok(&["device", "list", "--json"]);
    assert!(!listed.contains("SB-QR03"), "{listed}");

    let registered = daemon.register_device("SB-QR04").await;
    let id = registered.device.device_id.as_str();
    let refused = daemon.cli(&["device", "rotate", id, "--qr", "--json"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(refused.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--qr-png"),
        "the error names the alternative"
    );
    // The old secret still works: nothing was rotated.
    let (task, _events) = connected_sim(
        daemon.mqtt_addr.port(),
        &registered.device,
        &registered.ca_pem,
    )
    .await;
    task.abort();
}

//! `gema device add|rotate --qr / --qr-png FILE`: the issued credentials as a QR code of
//! the provisioning string ([`gema_firmware_protocol::ProvisioningString`], the one
//! definition of the format), drawn in the terminal or written as a PNG.
//!
//! Everything in the string comes from the API's answer: broker host and port
//! (`mqtt.public_host`, `mqtt.public_port`), device id, secret, and the SHA-256 of the DER
//! of the first certificate in `ca_certificate_pem`. The PNG holds the secret, so it is
//! written with mode 0600, and it is opened before the secret is issued: a path that
//! cannot be written fails the command before a secret exists, not after.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use gema_firmware_protocol::ProvisioningString;
use qrcode::render::unicode::Dense1x2;
use qrcode::{Color, QrCode};
use serde_json::Value;

use super::args::QrArgs;
use super::client::ClientError;
use super::render::Output;

/// Pixels per QR module in the PNG.
const PNG_MODULE_PX: usize = 8;
/// Light modules around the code, as the QR specification asks.
const QUIET_ZONE: usize = 4;

/// What the command was asked to produce, with the PNG file already open.
#[derive(Debug)]
pub(super) struct QrRequest {
    terminal: bool,
    png: Option<(PathBuf, File)>,
    output: Output,
}

impl QrRequest {
    /// Checks the flags and opens the PNG file; `None` when no QR code was asked for.
    pub(super) fn prepare(args: QrArgs, output: Output) -> Result<Option<Self>, ClientError> {
        if args.qr && !matches!(output, Output::Human) {
            return Err(ClientError::Provisioning(
                "--qr draws in the terminal; leave out --json / --quiet, or use --qr-png FILE"
                    .into(),
            ));
        }
        let png = match args.qr_png {
            Some(path) => {
                let file = create_private(&path).map_err(|source| ClientError::Io {
                    path: path.display().to_string(),
                    source,
                })?;
                Some((path, file))
            }
            None => None,
        };
        if !args.qr && png.is_none() {
            return Ok(None);
        }
        Ok(Some(Self {
            terminal: args.qr,
            png,
            output,
        }))
    }

    /// The request failed and no secret was issued: the opened PNG file goes.
    pub(super) fn abandon(self) {
        if let Some((path, file)) = self.png {
            drop(file);
            let _ = std::fs::remove_file(path);
        }
    }

    /// Draws and writes the QR code of the issued credentials; returns what to print after
    /// the summary (nothing with `--json` or `--quiet`).
    pub(super) fn finish(self, issued: &Value) -> Result<String, ClientError> {
        let credentials = &issued["credentials"];
        let text = |key: &str| {
            credentials[key].as_str().ok_or_else(|| {
                ClientError::Provisioning(format!("the API's answer has no credentials.{key}"))
            })
        };
        let port = credentials["mqtt_port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| ClientError::Provisioning("the API's mqtt_port is not a port".into()))?;
        let ca_sha256 = ca_fingerprint(text("ca_certificate_pem")?)?;
        let provisioning = ProvisioningString::new(
            text("mqtt_host")?,
            port,
            text("username")?,
            text("secret")?,
            ca_sha256,
        )
        .map_err(|e| ClientError::Provisioning(format!("cannot write these credentials: {e}")))?
        .to_string();
        let code = QrCode::new(provisioning.as_bytes())
            .map_err(|e| ClientError::Provisioning(format!("QR code: {e}")))?;

        let mut lines = Vec::new();
        if let Some((path, file)) = self.png {
            write_png(&code, file).map_err(|source| ClientError::Io {
                path: path.display().to_string(),
                source,
            })?;
            lines.push(format!("QR code written to {}", path.display()));
        }
        if self.terminal {
            lines.push(terminal_qr(&code));
            lines.push(format!("Provisioning string: {provisioning}"));
        }
        Ok(match self.output {
            Output::Human => lines.join("\n\n"),
            Output::Json | Output::Quiet => String::new(),
        })
    }
}

/// SHA-256 of the DER of the first certificate in `pem` (the server CA the device trusts).
fn ca_fingerprint(pem: &str) -> Result<[u8; 32], ClientError> {
    let der = rustls_pemfile::certs(&mut pem.as_bytes())
        .next()
        .and_then(Result::ok)
        .ok_or_else(|| {
            ClientError::Provisioning("the API's ca_certificate_pem holds no certificate".into())
        })?;
    let digest = ring::digest::digest(&ring::digest::SHA256, der.as_ref());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    Ok(out)
}

/// Unicode half blocks, two modules a character, for a terminal with a dark background:
/// light modules (and the quiet zone) are drawn, dark ones are the background.
fn terminal_qr(code: &QrCode) -> String {
    code.render::<Dense1x2>()
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .quiet_zone(true)
        .build()
}

/// An 8-bit greyscale PNG, black on white, [`PNG_MODULE_PX`] pixels a module.
fn write_png(code: &QrCode, file: File) -> std::io::Result<()> {
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET_ZONE) * PNG_MODULE_PX;
    let mut pixels = vec![255u8; side * side];
    for (index, color) in colors.iter().enumerate() {
        if *color != Color::Dark {
            continue;
        }
        let (mx, my) = (index % modules + QUIET_ZONE, index / modules + QUIET_ZONE);
        for y in my * PNG_MODULE_PX..(my + 1) * PNG_MODULE_PX {
            pixels[y * side + mx * PNG_MODULE_PX..y * side + (mx + 1) * PNG_MODULE_PX].fill(0);
        }
    }
    let side = u32::try_from(side).map_err(std::io::Error::other)?;
    let mut out = BufWriter::new(file);
    let mut encoder = png::Encoder::new(&mut out, side, side);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(std::io::Error::other)?;
    writer
        .write_image_data(&pixels)
        .map_err(std::io::Error::other)?;
    writer.finish().map_err(std::io::Error::other)?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()
}

/// Creates (or truncates) `path` readable by its owner only.
fn create_private(path: &Path) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let file = options.open(path)?;
        // An existing file keeps its mode on open; this one will hold a secret.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        Ok(file)
    }
    #[cfg(not(unix))]
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_is_the_sha256_of_the_first_certificate_der() {
        let (ca_pem, _key) = gema_certs::generate_ca().unwrap();
        let der = rustls_pemfile::certs(&mut ca_pem.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        let expected = ring::digest::digest(&ring::digest::SHA256, der.as_ref());
        let two = format!("{ca_pem}{}", gema_certs::generate_ca().unwrap().0);
        assert_eq!(ca_fingerprint(&two).unwrap(), expected.as_ref());
        assert!(matches!(
            ca_fingerprint("no certificate here"),
            Err(ClientError::Provisioning(_))
        ));
    }

    #[test]
    fn the_terminal_code_is_half_blocks_with_a_quiet_zone() {
        let code = QrCode::new(b"GEMA1:host=h;port=1;id=d;secret=s;ca=00").unwrap();
        let drawn = terminal_qr(&code);
        let lines: Vec<&str> = drawn.lines().collect();
        let width = code.width() + 2 * QUIET_ZONE;
        assert_eq!(lines.len(), width.div_ceil(2));
        assert!(lines.iter().all(|l| l.chars().count() == width));
        assert!(lines[0].chars().all(|c| c == '\u{2588}'), "{}", lines[0]);
        assert!(
            drawn
                .chars()
                .all(|c| matches!(c, ' ' | '\u{2580}' | '\u{2584}' | '\u{2588}' | '\n'))
        );
    }
}

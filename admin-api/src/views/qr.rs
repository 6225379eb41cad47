//! QR codes as inline SVG for the pages the daemon serves (the invoice pay page).
//!
//! Drawn here from `qrcode`'s module grid rather than by its SVG renderer: one `<path>` of
//! horizontal runs (a few kilobytes for a QRIS payload, no per-module elements), black on
//! white with the four-module quiet zone scanners need, sized by the page's CSS. An SVG
//! element in the page is markup, not a fetched resource, so the pages' `default-src 'none'`
//! CSP still holds.

use qrcode::{Color, EcLevel, QrCode};

/// The quiet zone around the code, in modules (ISO/IEC 18004 asks for four).
const QUIET_ZONE: usize = 4;

/// The dark modules of `data`'s QR code (error correction level M, as QRIS uses), row by
/// row, `width × width`; `None` when the data does not fit in a QR code.
pub fn modules(data: &str) -> Option<(usize, Vec<bool>)> {
    let code = QrCode::with_error_correction_level(data.as_bytes(), EcLevel::M).ok()?;
    let dark = code
        .to_colors()
        .into_iter()
        .map(|c| c == Color::Dark)
        .collect();
    Some((code.width(), dark))
}

/// `data` as an inline SVG QR code labelled `label` for screen readers; `None` when the
/// data does not fit in a QR code.
pub fn svg(data: &str, label: &str) -> Option<String> {
    let (width, dark) = modules(data)?;
    let side = width + 2 * QUIET_ZONE;
    let mut path = String::with_capacity(width * width);
    for (y, row) in dark.chunks(width).enumerate() {
        let mut x = 0;
        while x < width {
            if !row[x] {
                x += 1;
                continue;
            }
            let run = row[x..].iter().take_while(|d| **d).count();
            path.push_str(&format!(
                "M{} {}h{run}v1h-{run}z",
                x + QUIET_ZONE,
                y + QUIET_ZONE
            ));
            x += run;
        }
    }
    Some(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {side} {side}\" \
         shape-rendering=\"crispEdges\" role=\"img\" aria-label=\"{}\">\
         <rect width=\"{side}\" height=\"{side}\" fill=\"#fff\"/>\
         <path fill=\"#000\" d=\"{path}\"/></svg>",
        super::html::escape(label)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads the SVG's runs back into a grid of dark modules, quiet zone included.
    fn grid_of(svg: &str, side: usize) -> Vec<bool> {
        let d = svg
            .split(" d=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let mut grid = vec![false; side * side];
        for run in d.split('M').filter(|r| !r.is_empty()) {
            let (at, rest) = run.split_once('h').unwrap();
            let (x, y) = at.split_once(' ').unwrap();
            let (x, y): (usize, usize) = (x.parse().unwrap(), y.parse().unwrap());
            let len: usize = rest.split('v').next().unwrap().parse().unwrap();
            for cell in &mut grid[y * side + x..y * side + x + len] {
                *cell = true;
            }
        }
        grid
    }

    #[test]
    fn the_svg_scans_back_to_its_data() {
        let payload = "00020101021226530012COM.DOKU.WWW011893600899000000247502042475030\
                       3URE51440014ID.CO.QRIS.WWW0215ID10200392934820303URE520453995303360\
                       540575000";
        let svg = svg(payload, "QRIS <Warung>").unwrap();
        assert!(svg.contains("aria-label=\"QRIS &lt;Warung&gt;\""));
        let (width, _) = modules(payload).unwrap();
        let side = width + 2 * QUIET_ZONE;
        let grid = grid_of(&svg, side);
        // Scale each module to 4 × 4 pixels, as a camera would see it, and decode.
        let scale = 4;
        let px = side * scale;
        let mut image = rqrr::PreparedImage::prepare_from_greyscale(px, px, |x, y| {
            if grid[(y / scale) * side + x / scale] {
                0
            } else {
                255
            }
        });
        let grids = image.detect_grids();
        assert_eq!(grids.len(), 1);
        let (_, content) = grids[0].decode().unwrap();
        assert_eq!(content, payload);
    }

    #[test]
    fn data_too_long_for_a_qr_code_has_none() {
        assert!(svg(&"9".repeat(8_000), "x").is_none());
    }
}

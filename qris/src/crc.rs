//! CRC-16/CCITT-FALSE, the checksum in tag `63`.

use crc::{CRC_16_IBM_3740, Crc};

const CCITT_FALSE: Crc<u16> = Crc::<u16>::new(&CRC_16_IBM_3740);

/// CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, xorout 0) of `data`.
///
/// For a QRIS payload, `data` is every byte up to and including the characters `6304`.
#[must_use]
pub fn crc16(data: &[u8]) -> u16 {
    CCITT_FALSE.checksum(data)
}

/// [`crc16`] written the way tag `63` carries it: four upper-case hex digits, zero-padded.
#[must_use]
pub fn crc16_hex(data: &[u8]) -> String {
    format!("{:04X}", crc16(data))
}

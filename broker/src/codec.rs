//! The frame boundary: bytes from an untrusted socket in, MQTT packets out.
//!
//! Packet parsing is `rumqttc::mqttbytes::v4` (see ARCHITECTURE-broker.md for why). It is a
//! client-side codec, so this module fences it: the fixed header is checked against the
//! maximum packet size before a frame is buffered or parsed, packet types and fixed-header
//! flags a server must never accept are refused here, and CONNECT is dispatched on the
//! protocol level before `rumqttc` sees it (it would parse an MQTT 5 CONNECT as 3.1.1).
//!
//! Every function here returns an error on bad input and never panics; `tests/codec_fuzz.rs`
//! and the `broker/fuzz` target feed it arbitrary bytes.

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{self, Packet};
use rumqttc::mqttbytes::{self, PacketType};

/// Protocol level of MQTT 3.1.1 in CONNECT.
pub const MQTT_311: u8 = 4;

/// What one complete frame decoded to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    Packet(Packet),
    /// A CONNECT for a protocol this broker does not speak (MQTT 3.1 is level 3, MQTT 5 is
    /// level 5). The caller answers CONNACK 0x01 and closes.
    UnsupportedProtocol {
        name: String,
        level: u8,
    },
}

/// Why the byte stream cannot go on. Every variant closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("packet of {size} bytes exceeds the maximum of {max}")]
    TooLarge { size: usize, max: usize },
    #[error("malformed packet: {0}")]
    Malformed(mqttbytes::Error),
    #[error("protocol violation: {0}")]
    Violation(&'static str),
}

/// Decodes one frame from the front of `buf`, or returns `Ok(None)` when more bytes are
/// needed. `max_packet_size` bounds the remaining length, so a caller that reads only until
/// this returns never buffers more than `max_packet_size + 5` bytes.
pub fn decode(buf: &mut BytesMut, max_packet_size: usize) -> Result<Option<Inbound>, DecodeError> {
    if let Some(&byte1) = buf.first() {
        // Refuse a bad first byte before waiting for the rest of its frame.
        check_type_and_flags(byte1)?;
    }
    let header = match mqttbytes::check(buf.iter(), max_packet_size) {
        Ok(header) => header,
        Err(mqttbytes::Error::InsufficientBytes(_)) => {
            // More bytes needed. `check` refuses an over-long remaining length as soon as
            // the length bytes are present, so what a caller buffers stays bounded.
            return Ok(None);
        }
        Err(mqttbytes::Error::PayloadSizeLimitExceeded(size)) => {
            return Err(DecodeError::TooLarge {
                size,
                max: max_packet_size,
            });
        }
        Err(e) => return Err(DecodeError::Malformed(e)),
    };
    let packet_type = header.packet_type().map_err(DecodeError::Malformed)?;
    if packet_type == PacketType::Connect {
        let frame = &buf[..header.frame_length()];
        if let Some(unsupported) = unsupported_protocol(frame)? {
            let _ = buf.split_to(header.frame_length());
            return Ok(Some(unsupported));
        }
    }
    if packet_type == PacketType::Subscribe {
        check_subscribe_options(&buf[..header.frame_length()])?;
    }
    v4::read(buf, max_packet_size)
        .map(|p| Some(Inbound::Packet(p)))
        .map_err(DecodeError::Malformed)
}

/// Like [`decode`] for the first frame of a connection, which must be CONNECT: anything
/// else is refused from its first byte, without waiting for the rest.
pub fn decode_first(
    buf: &mut BytesMut,
    max_packet_size: usize,
) -> Result<Option<Inbound>, DecodeError> {
    match buf.first() {
        Some(&b) if b != 0x10 => Err(DecodeError::Violation("first packet is not CONNECT")),
        _ => decode(buf, max_packet_size),
    }
}

/// Packet types a server never receives, and fixed-header flags MQTT 3.1.1 reserves.
fn check_type_and_flags(byte1: u8) -> Result<(), DecodeError> {
    let flags = byte1 & 0x0F;
    let packet_type = match byte1 >> 4 {
        1 => PacketType::Connect,
        3 => PacketType::Publish,
        4 => PacketType::PubAck,
        5 => PacketType::PubRec,
        6 => PacketType::PubRel,
        7 => PacketType::PubComp,
        8 => PacketType::Subscribe,
        10 => PacketType::Unsubscribe,
        12 => PacketType::PingReq,
        14 => PacketType::Disconnect,
        2 | 9 | 11 | 13 => {
            return Err(DecodeError::Violation(
                "server-to-client packet sent by a client",
            ));
        }
        _ => return Err(DecodeError::Violation("reserved packet type")),
    };
    match packet_type {
        PacketType::Publish => {
            let qos = (flags >> 1) & 0b11;
            if qos == 3 {
                return Err(DecodeError::Violation("PUBLISH with QoS 3"));
            }
            if qos == 0 && flags & 0b1000 != 0 {
                return Err(DecodeError::Violation("DUP set on a QoS 0 PUBLISH"));
            }
        }
        PacketType::Subscribe | PacketType::Unsubscribe | PacketType::PubRel => {
            if flags != 0b0010 {
                return Err(DecodeError::Violation("reserved fixed-header flags"));
            }
        }
        _ => {
            if flags != 0 {
                return Err(DecodeError::Violation("reserved fixed-header flags"));
            }
        }
    }
    Ok(())
}

/// Reads the protocol name and level of a CONNECT frame and checks the connect flags that
/// `rumqttc` does not.
fn unsupported_protocol(frame: &[u8]) -> Result<Option<Inbound>, DecodeError> {
    let body = skip_fixed_header(frame)?;
    let name_len = usize::from(u16::from_be_bytes([
        *body
            .first()
            .ok_or(DecodeError::Violation("short CONNECT"))?,
        *body.get(1).ok_or(DecodeError::Violation("short CONNECT"))?,
    ]));
    let name = body
        .get(2..2 + name_len)
        .ok_or(DecodeError::Violation("short CONNECT"))?;
    let level = *body
        .get(2 + name_len)
        .ok_or(DecodeError::Violation("short CONNECT"))?;
    let name = String::from_utf8_lossy(name).into_owned();
    match (name.as_str(), level) {
        ("MQTT", MQTT_311) => {}
        ("MQTT", _) | ("MQIsdp", 3) => {
            return Ok(Some(Inbound::UnsupportedProtocol { name, level }));
        }
        _ => return Err(DecodeError::Violation("unknown protocol name")),
    }
    let flags = *body
        .get(3 + name_len)
        .ok_or(DecodeError::Violation("short CONNECT"))?;
    if flags & 0b1 != 0 {
        return Err(DecodeError::Violation("reserved CONNECT flag set"));
    }
    let will = flags & 0b100 != 0;
    let will_qos = (flags >> 3) & 0b11;
    let will_retain = flags & 0b10_0000 != 0;
    if !will && (will_qos != 0 || will_retain) {
        return Err(DecodeError::Violation("will QoS or retain without a will"));
    }
    if will_qos == 3 {
        return Err(DecodeError::Violation("will QoS 3"));
    }
    if flags & 0b0100_0000 != 0 && flags & 0b1000_0000 == 0 {
        return Err(DecodeError::Violation("password without user name"));
    }
    Ok(None)
}

/// MQTT 3.1.1 §3.8.3.1: the upper six bits of each requested-QoS byte are reserved.
fn check_subscribe_options(frame: &[u8]) -> Result<(), DecodeError> {
    let body = skip_fixed_header(frame)?;
    let mut rest = body
        .get(2..)
        .ok_or(DecodeError::Violation("short SUBSCRIBE"))?;
    while !rest.is_empty() {
        let len = match rest {
            [hi, lo, ..] => usize::from(u16::from_be_bytes([*hi, *lo])),
            _ => return Err(DecodeError::Violation("short SUBSCRIBE")),
        };
        let options = *rest
            .get(2 + len)
            .ok_or(DecodeError::Violation("short SUBSCRIBE"))?;
        if options & 0b1111_1100 != 0 {
            return Err(DecodeError::Violation("reserved SUBSCRIBE option bits"));
        }
        rest = &rest[3 + len..];
    }
    Ok(())
}

fn skip_fixed_header(frame: &[u8]) -> Result<&[u8], DecodeError> {
    let mut i = 1;
    while let Some(b) = frame.get(i) {
        i += 1;
        if b & 0x80 == 0 {
            return Ok(&frame[i..]);
        }
    }
    Err(DecodeError::Violation("truncated fixed header"))
}

/// Appends the encoding of a server-to-client packet to `out`.
pub fn encode(packet: &Packet, out: &mut BytesMut) -> Result<(), mqttbytes::Error> {
    match packet {
        Packet::ConnAck(p) => p.write(out),
        Packet::Publish(p) => p.write(out),
        Packet::PubAck(p) => p.write(out),
        Packet::PubRec(p) => p.write(out),
        Packet::PubRel(p) => p.write(out),
        Packet::PubComp(p) => p.write(out),
        Packet::SubAck(p) => p.write(out),
        Packet::UnsubAck(p) => p.write(out),
        Packet::PingResp => v4::PingResp.write(out),
        // Only used by tests and the fuzz target to build client packets.
        Packet::Connect(p) => p.write(out),
        Packet::Subscribe(p) => p.write(out),
        Packet::Unsubscribe(p) => p.write(out),
        Packet::PingReq => v4::PingReq.write(out),
        Packet::Disconnect => v4::Disconnect.write(out),
    }
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::mqttbytes::QoS;

    fn bytes_of(p: &Packet) -> BytesMut {
        let mut b = BytesMut::new();
        encode(p, &mut b).unwrap();
        b
    }

    #[test]
    fn decodes_a_connect_and_leaves_the_rest() {
        let mut c = v4::Connect::new("dev1");
        c.set_login("dev1", "secret");
        let mut buf = bytes_of(&Packet::Connect(c.clone()));
        buf.extend_from_slice(&[0xC0, 0x00]);
        assert_eq!(
            decode(&mut buf, 1024),
            Ok(Some(Inbound::Packet(Packet::Connect(c))))
        );
        assert_eq!(
            decode(&mut buf, 1024),
            Ok(Some(Inbound::Packet(Packet::PingReq)))
        );
        assert_eq!(decode(&mut buf, 1024), Ok(None));
    }

    #[test]
    fn waits_for_a_partial_frame() {
        let full = bytes_of(&Packet::Publish(
            v4::Publish::new("devices/a/up/x", QoS::AtLeastOnce, vec![1; 10]).tap_pkid(),
        ));
        for cut in 0..full.len() {
            let mut part = BytesMut::from(&full[..cut]);
            assert_eq!(decode(&mut part, 1024), Ok(None), "cut at {cut}");
            assert_eq!(part.len(), cut);
        }
    }

    trait TapPkid {
        fn tap_pkid(self) -> Self;
    }
    impl TapPkid for v4::Publish {
        fn tap_pkid(mut self) -> Self {
            self.pkid = 7;
            self
        }
    }

    #[test]
    fn refuses_an_oversized_packet_from_its_header_alone() {
        // PUBLISH announcing 2 MiB, with only the header present.
        let mut buf = BytesMut::from(&[0x30, 0x80, 0x80, 0x80, 0x01][..]);
        assert_eq!(
            decode(&mut buf, 1024),
            Err(DecodeError::TooLarge {
                size: 2_097_152,
                max: 1024
            })
        );
    }

    #[test]
    fn dispatches_on_the_protocol_level() {
        let mut c = v4::Connect::new("dev1");
        c.protocol = rumqttc::mqttbytes::Protocol::V5;
        let mut buf = bytes_of(&Packet::Connect(c));
        assert_eq!(
            decode(&mut buf, 1024),
            Ok(Some(Inbound::UnsupportedProtocol {
                name: "MQTT".into(),
                level: 5
            }))
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn refuses_packets_a_server_never_receives_and_bad_flags() {
        let mut connack = BytesMut::from(&[0x20, 0x02, 0x00, 0x00][..]);
        assert!(matches!(
            decode(&mut connack, 1024),
            Err(DecodeError::Violation(_))
        ));
        let mut sub_bad_flags =
            BytesMut::from(&[0x80, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00][..]);
        assert!(matches!(
            decode(&mut sub_bad_flags, 1024),
            Err(DecodeError::Violation(_))
        ));
        let mut sub_bad_options =
            BytesMut::from(&[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x04][..]);
        assert!(matches!(
            decode(&mut sub_bad_options, 1024),
            Err(DecodeError::Violation(_))
        ));
        let mut qos3 = BytesMut::from(&[0x36, 0x03, 0x00, 0x01, b'a'][..]);
        assert!(matches!(
            decode(&mut qos3, 1024),
            Err(DecodeError::Violation(_))
        ));
    }
}

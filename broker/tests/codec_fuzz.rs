//! Arbitrary bytes at the frame boundary: the decoder returns packets or errors, never
//! panics, and never holds more than one maximum-size frame.

use bytes::BytesMut;
use gema_broker::codec::{DecodeError, Inbound, decode, decode_first, encode};
use proptest::prelude::*;
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{Connect, LastWill, Packet, Publish, Subscribe, Unsubscribe};

const MAX: usize = 256;

/// Feeds `bytes` in chunks, like a socket would, and decodes until an error.
fn feed(bytes: &[u8], chunk: usize) -> Result<Vec<Inbound>, DecodeError> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in bytes.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            let before = buf.len();
            // The first frame of a connection goes through the CONNECT-only entry point.
            let decoded = if out.is_empty() {
                decode_first(&mut buf, MAX)?
            } else {
                decode(&mut buf, MAX)?
            };
            match decoded {
                Some(frame) => {
                    assert!(buf.len() < before, "a decoded frame consumes bytes");
                    out.push(frame);
                }
                None => {
                    assert_eq!(buf.len(), before, "an incomplete frame is left as it was");
                    // What stays buffered is at most one frame of the maximum size.
                    assert!(buf.len() <= MAX + 5);
                    break;
                }
            }
        }
    }
    Ok(out)
}

fn valid_packets() -> Vec<Vec<u8>> {
    let mut connect = Connect::new("dev1");
    connect.set_login("dev1", "secret");
    connect.last_will = Some(LastWill::new(
        "devices/dev1/up/status",
        "gone",
        QoS::AtLeastOnce,
        true,
    ));
    let mut publish = Publish::new("devices/dev1/up/x", QoS::ExactlyOnce, vec![7; 20]);
    publish.pkid = 3;
    [
        Packet::Connect(connect),
        Packet::Publish(publish),
        Packet::Subscribe(Subscribe::new("devices/dev1/down/#", QoS::AtLeastOnce)),
        Packet::Unsubscribe(Unsubscribe::new("devices/dev1/down/#")),
        Packet::PingReq,
        Packet::Disconnect,
    ]
    .iter()
    .map(|p| {
        let mut b = BytesMut::new();
        encode(p, &mut b).unwrap();
        b.to_vec()
    })
    .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600), chunk in 1usize..64) {
        let _ = feed(&bytes, chunk);
    }

    #[test]
    fn mutated_valid_packets_never_panic(
        which in 0usize..6,
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        chunk in 1usize..16,
    ) {
        let mut bytes = valid_packets()[which].clone();
        for (i, v) in flips {
            let at = i.index(bytes.len());
            bytes[at] = v;
        }
        let _ = feed(&bytes, chunk);
    }

    #[test]
    fn valid_packets_decode_whatever_the_chunking(chunk in 1usize..40) {
        let all: Vec<u8> = valid_packets().concat();
        let frames = feed(&all, chunk).unwrap();
        prop_assert_eq!(frames.len(), 6);
    }
}

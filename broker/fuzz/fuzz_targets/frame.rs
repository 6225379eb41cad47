//! Arbitrary bytes into the broker's frame decoder, split at an arbitrary point as a socket
//! would deliver them: it must return packets or an error, never panic, and never buffer
//! more than one maximum-size frame.
#![no_main]

use bytes::BytesMut;
use gema_broker::codec::{decode, decode_first};
use libfuzzer_sys::fuzz_target;

const MAX: usize = 1024;

fuzz_target!(|data: &[u8]| {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let split = usize::from(split).min(data.len());
    let mut buf = BytesMut::new();
    let mut first = true;
    for piece in [&data[..split], &data[split..]] {
        buf.extend_from_slice(piece);
        loop {
            let decoded = if first {
                decode_first(&mut buf, MAX)
            } else {
                decode(&mut buf, MAX)
            };
            match decoded {
                Ok(Some(_)) => first = false,
                Ok(None) => {
                    assert!(buf.len() <= MAX + 5);
                    break;
                }
                Err(_) => return,
            }
        }
    }
});

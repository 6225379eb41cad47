//! The wire contract between Gema and soundbox firmware.
//!
//! Pure: no I/O, no async runtime, `no_std` with `alloc`, so a Rust firmware can use the same
//! types. Today it holds the topic scheme and the rule for what a device id may look like
//! (a device id is both the MQTT username and a topic level). The message types
//! (announcements, acks, config, commands, dynamic QR, heartbeats) and their JSON and
//! postcard encodings come with the payments and device-operations issues.
#![no_std]

extern crate alloc;

pub mod topic;

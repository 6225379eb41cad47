//! Gema's embedded MQTT broker, purpose-made for soundboxes.
//!
//! This crate will hold the MQTT 3.1.1 over TLS listener (tokio + rustls + an MQTT codec),
//! per-device authentication through a trait the binary implements over `store`, the ACL
//! check from `gema-acl` before any message is routed, sessions, and the in-process interface
//! the gateway uses to publish downlinks and receive uplinks and presence events.
//! It knows MQTT and TLS but no database. It is filled by the broker issue; until then it
//! exports nothing, and the daemon opens no MQTT listener (the `[mqtt]` config section is
//! reserved for it).

//! Per-device MQTT topic authorization for Gema's broker.
//!
//! This crate will hold the pure decision functions the broker asks before anything else sees
//! a SUBSCRIBE, PUBLISH or Last Will: a device may subscribe only inside
//! `devices/<its id>/down/…` and publish only inside `devices/<its id>/up/…`; service
//! principals get explicit Mosquitto-style (`%u`/`%c`) patterns. It must never do I/O and
//! depends on no other workspace crate. It is filled by the broker issue; until then it
//! exports nothing, so nothing can mistake it for a working ACL.

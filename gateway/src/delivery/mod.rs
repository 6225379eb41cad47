//! Delivery: getting downlinks to devices, at least once, in order per device, never after
//! their expiry. Today it delivers announcements (the spoken "payment received"); payments
//! produces them, delivery delivers them, and nothing here knows how a payment works.
//!
//! # Announcements
//!
//! Work reaches the [`AnnouncementRelay`] three ways. When a payment commits, the commit
//! loop hands the committed announcements over in memory ([`Handover::hand_over`]), so a
//! delivery costs no outbox read; the outbox (the `announcements` table) stays the record,
//! and is read when the earliest retry is due, when an operator re-queues an announcement
//! ([`Handover::read_outbox`]), at start-up, and when a device connects (its pending
//! announcements are replayed at once, oldest first). One worker per device keeps each
//! device's announcements in sequence order.
//!
//! Each attempt (`attempt.rs`) publishes the `announce` downlink at QoS 1 through the
//! [`DeviceTransport`](crate::transport::DeviceTransport), waits for the MQTT PUBACK, then
//! for the protocol-level `ack` uplink whose `acked_msg_id` is the announcement id:
//! `spoken` or `duplicate` → delivered, `expired` → expired, `rejected` → failed. No ack in
//! time → retried with exponential backoff (`backoff.rs`) while the device stays connected,
//! failed after `max_attempts`; an offline device's announcements wait (without spending
//! attempts) for it to come back, rechecked every `offline_recheck`, or expire. An ack that
//! arrives after its attempt stopped waiting (or after a restart) still settles the
//! announcement it names.
//!
//! Results are not written here: each goes through the results channel
//! ([`results_channel`]) to its one writer, the payments commit loop, which puts it in the
//! next payment batch's transaction (or writes it alone), and the worker waits until it is
//! written. Whoever builds the gateway makes that channel and gives the sender to the relay
//! and the queue to payments ([`crate::Gateway::build`]).
//!
//! Delivery is at least once: a crash between publish and ack re-sends after restart, and
//! the device deduplicates on the transaction id (and answers `duplicate`), so the amount
//! is spoken once. A crash between the ack and its commit does not: the ack uplink carries
//! its [`Settle`](crate::transport::Settle) handle to whoever records it (the waiting
//! attempt's worker, or `handle_uplink` for a late ack), which settles it only once the
//! writer answers that the result committed, so the broker PUBACKs the ack only then and a
//! device whose ack was lost with the daemon sends it again after reconnecting, before the
//! replay. "Now" comes from the injected [`Clock`](crate::clock::Clock).
//!
//! # Files
//!
//! - `relay.rs`: [`AnnouncementRelay`] (main loop: dispatch, outbox reads, wake-ups) and
//!   the per-device workers; [`DeliverySettings`].
//! - `attempt.rs`: one attempt at any downlink: publish, PUBACK, then the `ack` matched by
//!   message id (`AckWaiters`); reading `ack` uplinks.
//! - `backoff.rs`: [`Backoff`] (exponential, capped, an attempt budget) and the offline
//!   recheck time.
//! - `handover.rs`: [`Handover`], how producers wake the relay.
//! - `results.rs`: the results channel to the writer.
//! - `announce.rs`: what is announcement-specific: the `announce` downlink, its language,
//!   what an ack status means for an announcement.
//!
//! # Adding another downlink kind
//!
//! Config pushes, commands and device QR downlinks are still sent by `device_ops`, each
//! from an outbox row of its own with its own retry sweep and replay on connect (a QR
//! downlink's ack, `qrs_`/`qrc_`, is routed there, not here); a later change moves them
//! here. The pieces are
//! already kind-neutral: ack matching is keyed by the envelope's message id, not by the
//! `ann_` prefix; `attempt` takes any `Downlink`; [`Backoff`] and the offline recheck are
//! arithmetic. A new kind brings:
//! 1. its outbox rows (the store's record of what is due, as `announcements` is) and a
//!    message-id prefix of its own (`cfg_`, `cmd_`);
//! 2. a module like `announce.rs`: the downlink made from a row, and what each ack status
//!    (or, for config and commands, the kind's own result uplink) means for the row;
//! 3. a result type the writer records, sent through the same kind of channel;
//! 4. a match arm in `AnnouncementRelay::handle_uplink` for late acks of its prefix (today
//!    only `ann_` settles anything), and its rows in the per-device worker's queue, so one
//!    device's downlinks of every kind keep one order and one worker.
//!
//! Delivery never imports `payments` or `device_ops`: they depend on it, not the other way.

mod announce;
mod attempt;
mod backoff;
mod handover;
mod relay;
mod results;

pub use backoff::{AfterFailure, Backoff, offline_recheck_at};
pub use handover::Handover;
pub use relay::{AnnouncementRelay, DeliverySettings};
pub use results::{DeliveryRecord, ResultsQueue, ResultsSender, results_channel};

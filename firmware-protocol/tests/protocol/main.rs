//! Integration tests of the wire contract: round trips, hostile input, exact JSON shapes, and
//! the provisioning string.

mod claim;
mod never_panics;
mod provisioning;
mod refusals;
mod round_trip;
mod snapshots;
mod strategies;

//! Integration tests of the wire contract: round trips, hostile input, exact JSON shapes.

mod never_panics;
mod refusals;
mod round_trip;
mod snapshots;
mod strategies;

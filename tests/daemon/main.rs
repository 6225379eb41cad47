//! End-to-end tests of the shipped binary: `gema serve` started as a child process in an
//! empty directory (zero configuration), driven over real HTTP and through the real CLI.
//! `helpers.rs` holds the harness (the daemon, shared set-up, the simulator's options);
//! `browser.rs` the headless Chromium the console's tests (`console.rs`) drive.

mod backup;
mod browser;
mod certificates;
mod claims;
mod cluster;
mod console;
mod crash;
mod device_ops;
mod doctor;
mod exports;
mod flood;
mod helpers;
mod lifecycle;
mod monitoring;
mod payments;
mod people;
mod provisioning;
mod tour;
mod whatsapp;

//! Every integration test, in one test binary.
//!
//! One binary instead of one per file: each file used to be linked with
//! its own copy of the daemon, the NATS client and the helpers in
//! `tests/support`, and compiling fifteen of them in release mode was most
//! of the CI run. Run one group with `cargo test --profile ci --test it
//! <module>::` (for example `chaos::`). Tests of different groups now run
//! side by side on the test harness's threads, as the tests of one group
//! always did: each starts its own nats-server and daemon on free ports.

#[path = "../support/mod.rs"]
mod support;

mod adapters;
mod bad_input;
mod chaos;
mod cluster;
mod config_files;
mod crashpoints;
mod failover;
mod imap;
mod journal;
mod nats_connection;
mod process;
mod routing_e2e;
mod routing_model;
mod routing_options_e2e;
mod sinks;
mod sla_e2e;

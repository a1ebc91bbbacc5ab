//! Readiness latches, set by each subsystem and read by `/ready`.

use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Default)]
pub struct Readiness {
    nats_connected: AtomicBool,
    streams_ok: AtomicBool,
    state_loaded: AtomicBool,
    draining: AtomicBool,
}

impl Readiness {
    pub fn set_nats_connected(&self, v: bool) {
        self.nats_connected.store(v, Ordering::Relaxed);
        metrics::gauge!(crate::telemetry::NATS_CONNECTED).set(if v { 1.0 } else { 0.0 });
    }
    pub fn nats_connected(&self) -> bool {
        self.nats_connected.load(Ordering::Relaxed)
    }
    pub fn set_streams_ok(&self, v: bool) {
        self.streams_ok.store(v, Ordering::Relaxed);
    }
    pub fn set_state_loaded(&self, v: bool) {
        self.state_loaded.store(v, Ordering::Relaxed);
    }
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// `Ok` when ready; otherwise the first reason it is not.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.draining.load(Ordering::Relaxed) {
            Err("shutting down")
        } else if !self.nats_connected.load(Ordering::Relaxed) {
            Err("not connected to NATS")
        } else if !self.streams_ok.load(Ordering::Relaxed) {
            Err("JetStream streams not checked yet")
        } else if !self.state_loaded.load(Ordering::Relaxed) {
            Err("routing state not loaded yet")
        } else {
            Ok(())
        }
    }
}

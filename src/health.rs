//! Readiness latches, set by each subsystem and read by `/ready`.
//!
//! Invariants, kept by every setter (each reviews the latches after its
//! change):
//! - systemd hears `READY=1` once, at the first moment `/ready` would
//!   answer 200, so a unit ordered after this one, or a test waiting on the
//!   notification, starts when the daemon serves, not before;
//! - a follower ([`Readiness::followed_by`], from `Listeners::ready`) equals
//!   whether `/ready` answers 200, and is sent each change, no other;
//! - once a role was set, systemd hears each change of it as `STATUS=`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What systemd's status line (`systemctl status`) says of a router, by
/// role: the first word is the role. Routing, holding the lease:
pub const STATUS_ACTIVE: &str = "STATUS=active: routing (this instance holds the routing lease)";
/// Holding the lease, not routing yet (or any more): the state is read.
pub const STATUS_LOADING: &str = "STATUS=loading: holds the routing lease, reading the routing state";
/// Waiting for the lease.
pub const STATUS_STANDBY: &str = "STATUS=standby: waiting for the routing lease";

#[derive(Debug, Default)]
pub struct Readiness {
    /// A watch rather than a flag so start-up can wait for the connection.
    nats_connected: tokio::sync::watch::Sender<bool>,
    streams_ok: AtomicBool,
    state_loaded: AtomicBool,
    draining: AtomicBool,
    /// Why the last connection attempt failed (`authorization violation`),
    /// so `/ready` tells the operator more than "not connected".
    nats_error: Mutex<Option<String>>,
    /// Milliseconds since the epoch of the routing loop's last turn.
    heartbeat_ms: AtomicU64,
    /// Whether this instance routes (holds the lease) or stands by.
    active: AtomicBool,
    /// A problem retrying cannot fix, with its fix: `/ready` says it.
    fatal: Mutex<Option<String>>,
    /// `READY=1` has been sent.
    announced: AtomicBool,
    /// The role last told to systemd (`STATUS=`); `None` until the first
    /// [`Readiness::set_active`] (an adapter process has no role).
    told: Mutex<Option<&'static str>>,
    /// Kept equal to whether `/ready` answers 200, for an embedding
    /// process (or a test) to wait on instead of polling `/ready`.
    follower: Mutex<Option<tokio::sync::watch::Sender<bool>>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Readiness {
    pub fn set_nats_connected(&self, v: bool) {
        self.nats_connected.send_replace(v);
        metrics::gauge!(crate::telemetry::NATS_CONNECTED).set(if v { 1.0 } else { 0.0 });
        self.review();
    }
    /// Records the latest connection failure (`None` once connected).
    /// Returns whether it differs from the one before, so a client that
    /// retries every few seconds logs each new cause once, not each retry.
    pub fn set_nats_error(&self, error: Option<String>) -> bool {
        match self.nats_error.lock() {
            Ok(mut last) if *last != error => {
                *last = error;
                true
            }
            _ => false,
        }
    }
    pub fn nats_connected(&self) -> bool {
        *self.nats_connected.borrow()
    }
    /// Follows the connection: a receiver whose value turns `true` each
    /// time the client (re)connects.
    pub fn nats_connection(&self) -> tokio::sync::watch::Receiver<bool> {
        self.nats_connected.subscribe()
    }
    /// Resolves once NATS is connected.
    pub async fn wait_nats_connected(&self) {
        // The sender lives in `self`, so the wait cannot fail.
        let _ = self.nats_connected.subscribe().wait_for(|c| *c).await;
    }
    pub fn set_streams_ok(&self, v: bool) {
        self.streams_ok.store(v, Ordering::Relaxed);
        self.review();
    }
    pub fn set_state_loaded(&self, v: bool) {
        self.state_loaded.store(v, Ordering::Relaxed);
        self.tell_role(false);
        self.review();
    }
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
        self.review();
    }

    /// Routing (holding the lease) or standing by. systemd hears each
    /// change of role as `STATUS=` ([`STATUS_STANDBY`], [`STATUS_LOADING`],
    /// [`STATUS_ACTIVE`] once the state is loaded), before any `READY=1`
    /// the change completes.
    pub fn set_active(&self, v: bool) {
        self.active.store(v, Ordering::Relaxed);
        metrics::gauge!(crate::telemetry::ROUTER_ACTIVE).set(if v { 1.0 } else { 0.0 });
        self.tell_role(true);
        self.review();
    }

    /// Tells systemd the role if it changed (`first`: even if none was
    /// told before).
    fn tell_role(&self, first: bool) {
        let now = match (
            self.active.load(Ordering::Relaxed),
            self.state_loaded.load(Ordering::Relaxed),
        ) {
            (false, _) => STATUS_STANDBY,
            (true, false) => STATUS_LOADING,
            (true, true) => STATUS_ACTIVE,
        };
        if let Ok(mut told) = self.told.lock() {
            if (first || told.is_some()) && *told != Some(now) {
                *told = Some(now);
                crate::notify::notify(now);
            }
        }
    }

    pub fn role(&self) -> &'static str {
        if self.active.load(Ordering::Relaxed) {
            "active"
        } else {
            "standby"
        }
    }
    pub fn set_fatal(&self, why: Option<String>) {
        if let Ok(mut f) = self.fatal.lock() {
            *f = why;
        }
        self.review();
    }

    /// Fresh latches, with `follower` (if any) kept equal to whether
    /// `/ready` answers 200.
    pub fn followed_by(follower: Option<tokio::sync::watch::Sender<bool>>) -> Readiness {
        let r = Readiness::default();
        if let Some(tx) = follower {
            r.follow(tx);
        }
        r
    }

    /// Keeps `tx` equal to whether `/ready` answers 200, from now on.
    fn follow(&self, tx: tokio::sync::watch::Sender<bool>) {
        tx.send_replace(self.check().is_ok());
        if let Ok(mut slot) = self.follower.lock() {
            *slot = Some(tx);
        }
    }

    /// After any latch changes: tells systemd `READY=1` the first time
    /// every latch says ready, and the follower each change.
    fn review(&self) {
        let ok = self.check().is_ok();
        if ok && !self.announced.swap(true, Ordering::Relaxed) {
            crate::notify::notify("READY=1");
        }
        if let Ok(Some(tx)) = self.follower.lock().as_deref() {
            tx.send_if_modified(|v| std::mem::replace(v, ok) != ok);
        }
    }

    /// The routing loop is alive: it turned, or is deliberately retrying.
    pub fn beat(&self) {
        self.heartbeat_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// Whether the routing loop turned within `within`: the systemd watchdog
    /// is only fed while this holds, so a hung loop gets the process restarted.
    pub fn alive_within(&self, within: Duration) -> bool {
        now_ms().saturating_sub(self.heartbeat_ms.load(Ordering::Relaxed)) <= within.as_millis() as u64
    }

    /// `Ok` when ready; otherwise the first reason it is not.
    pub fn check(&self) -> Result<(), String> {
        if let Some(why) = self.fatal.lock().ok().and_then(|f| f.clone()) {
            Err(why)
        } else if self.draining.load(Ordering::Relaxed) {
            Err("shutting down".into())
        } else if !self.nats_connected() {
            match self.nats_error.lock().ok().and_then(|e| e.clone()) {
                Some(error) => Err(format!("not connected to NATS: {error}")),
                None => Err("not connected to NATS".into()),
            }
        } else if !self.streams_ok.load(Ordering::Relaxed) {
            Err("JetStream streams not checked yet".into())
        } else if self.active.load(Ordering::Relaxed) && !self.state_loaded.load(Ordering::Relaxed) {
            Err("routing state not loaded yet".into())
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Readiness;

    #[test]
    fn the_follower_tracks_every_change_of_readiness() {
        let r = Readiness::default();
        let (tx, rx) = tokio::sync::watch::channel(true);
        r.follow(tx);
        assert!(!*rx.borrow(), "not connected yet: set to false at once");
        r.set_nats_connected(true);
        assert!(!*rx.borrow(), "streams not checked yet");
        r.set_streams_ok(true);
        assert!(*rx.borrow(), "a connected standby serves");
        r.set_active(true);
        assert!(!*rx.borrow(), "the lease taken, the state not loaded");
        r.set_state_loaded(true);
        assert!(*rx.borrow());
        r.set_nats_connected(false);
        assert!(!*rx.borrow(), "NATS gone");
        r.set_nats_connected(true);
        assert!(*rx.borrow());
        r.set_draining();
        assert!(!*rx.borrow(), "shutting down");
        assert_eq!(r.check(), Err("shutting down".to_string()));
    }
}

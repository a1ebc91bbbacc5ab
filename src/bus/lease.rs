//! Which instance routes: a lease in a JetStream key-value bucket.
//!
//! The bucket's `max_age` is the lease's time to live. An instance takes the
//! lease by creating the key `active` (refused while another instance's
//! entry is there) and keeps it by updating the entry at the revision it
//! wrote last, a third of the TTL apart; the server removes an entry that is
//! not renewed, and a standby polling the key then creates it. The lease is
//! only for liveness (who should route); safety comes from the journal's
//! fenced appends, which refuse a former holder even if it still believes
//! it holds the lease (paused, partitioned).

use super::{setup, transient, BusError};
use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const KEY: &str = "active";

/// How long a request under way when shutdown begins may still take.
const GRACE: Duration = Duration::from_secs(1);

/// `request`, unless `stop` fires first; then at most [`GRACE`] more, so a
/// request already sent can still land and its outcome be known (a renewal
/// whose revision the release then needs), while a server that is gone
/// cannot hold shutdown up for the client's whole request timeout. `None`:
/// stopped, outcome unknown (for the lease, as if the process had died: the
/// entry lapses after the TTL).
async fn or_stop<T>(request: impl std::future::Future<Output = T>, stop: &CancellationToken) -> Option<T> {
    tokio::pin!(request);
    tokio::select! {
        biased;
        r = &mut request => return Some(r),
        _ = stop.cancelled() => {}
    }
    tokio::time::timeout(GRACE, request).await.ok()
}

#[derive(Clone)]
pub struct Lease {
    store: kv::Store,
    ttl: Duration,
    /// What this instance writes: who it is, for operators reading the key.
    holder: Bytes,
    pub instance: String,
    /// Revision of this instance's entry while it holds the lease, else 0.
    revision: Arc<AtomicU64>,
}

pub async fn open(js: &jetstream::Context, bucket: &str, ttl: Duration, replicas: usize) -> Result<Lease, BusError> {
    let store = match js.get_key_value(bucket).await {
        Ok(s) => s,
        Err(_) => js
            .create_key_value(kv::Config {
                bucket: bucket.to_string(),
                history: 1,
                max_age: ttl,
                storage: jetstream::stream::StorageType::File,
                num_replicas: replicas,
                ..Default::default()
            })
            .await
            .map_err(setup(format!("lease bucket {bucket}")))?,
    };
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "unknown-host".into());
    let instance = format!("{host}/{}/{}", std::process::id(), ulid::Ulid::new());
    let holder = Bytes::from(serde_json::json!({"instance": instance}).to_string());
    Ok(Lease {
        store,
        ttl,
        holder,
        instance,
        revision: Arc::new(AtomicU64::new(0)),
    })
}

impl Lease {
    /// The holder recorded in the bucket now, if any.
    pub async fn holder(&self) -> Option<String> {
        let e = self.store.entry(KEY).await.ok()??;
        let v: serde_json::Value = serde_json::from_slice(&e.value).ok()?;
        v["instance"].as_str().map(str::to_string)
    }

    /// Waits until this instance holds the lease (or `stop` fires: `None`).
    /// Returns the revision to renew from.
    /// `beat` is called on every poll (the standby's sign of life).
    pub async fn acquire(&self, stop: &CancellationToken, beat: impl Fn()) -> Result<Option<u64>, BusError> {
        let poll = (self.ttl / 6).max(Duration::from_millis(100));
        let mut told = false;
        loop {
            beat();
            let Some(created) = or_stop(self.store.create(KEY, self.holder.clone()), stop).await else {
                return Ok(None);
            };
            match created {
                Ok(rev) => {
                    self.revision.store(rev, Ordering::Relaxed);
                    return Ok(Some(rev));
                }
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                    if !told {
                        let by = or_stop(self.holder(), stop).await.flatten();
                        let by = by.unwrap_or_else(|| "another instance".into());
                        tracing::info!(active = %by, "Standing by: another instance is routing.");
                        told = true;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "Could not read the routing lease; retrying."),
            }
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = stop.cancelled() => return Ok(None),
            }
        }
    }

    /// Renews the lease from `revision` until it is lost or `stop` fires;
    /// cancels `lost` when another instance may have taken it (a renewal
    /// refused, or none acknowledged for a whole TTL).
    pub async fn keep(&self, mut revision: u64, stop: CancellationToken, lost: CancellationToken) {
        let every = self.ttl / 3;
        let mut last_ok = Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.cancelled() => return,
            }
            let Some(updated) = or_stop(self.store.update(KEY, self.holder.clone(), revision), &stop).await else {
                // Unknown whether it landed: the release that follows may
                // find another revision and leave the entry to lapse.
                return;
            };
            match updated {
                Ok(r) => {
                    revision = r;
                    self.revision.store(r, Ordering::Relaxed);
                    last_ok = Instant::now();
                }
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                    self.revision.store(0, Ordering::Relaxed);
                    tracing::warn!(error = %e, "The routing lease was taken over; stepping down.");
                    lost.cancel();
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Could not renew the routing lease; retrying.");
                    if last_ok.elapsed() >= self.ttl {
                        tracing::warn!("The routing lease lapsed without renewal; stepping down.");
                        self.revision.store(0, Ordering::Relaxed);
                        lost.cancel();
                        return;
                    }
                }
            }
        }
    }

    /// Gives the lease up at shutdown so a standby takes over at once; only
    /// this instance's own entry (at its revision) is removed.
    pub async fn release(&self) -> Result<(), BusError> {
        let rev = self.revision.swap(0, Ordering::Relaxed);
        if rev == 0 {
            return Ok(());
        }
        // Bounded like the requests above: a server that is gone must not
        // hold the exit up (the entry then lapses after the TTL).
        let purge = self.store.purge_expect_revision(KEY, Some(rev));
        match tokio::time::timeout(GRACE, purge).await {
            Ok(r) => r.map_err(transient("releasing the lease")),
            Err(_) => Err(transient("releasing the lease")(format!("no answer within {GRACE:?}"))),
        }
    }
}

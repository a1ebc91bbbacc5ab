//! Start-up: the router's state is the latest snapshot announced in the
//! journal, then every journal entry after it. A journal with no snapshot
//! is replayed from its first entry; an empty journal beside a key-value
//! bucket from an earlier release takes that bucket's records.
//!
//! A standby keeps that state warm ([`catch_up`], every poll while it
//! waits for the lease), so a takeover reads only the entries written
//! since its last look. Invariant: warm state is only ever extended by the
//! entries right after its `tip`; when a snapshot newer than that tip was
//! announced (the entries it covers may be purged by now), it is dropped
//! and read afresh from that snapshot.

use super::DaemonError;
use crate::bus::journal::Journal;
use crate::bus::Bus;
use crate::routing::customers::{parse_record_key, History, CUSTOMER_KEY};
use crate::routing::{Agent, Contact, QueuePace, AGENT_KEY, CONTACT_KEY, QUEUE_KEY};
use crate::store::{self, Durable, IdSet, Marker};
use chrono::{DateTime, Utc};
use std::hash::{BuildHasher, Hasher};

/// The record of the router's own clocks (a [`RouterClock`] as JSON),
/// written into every journal entry the router appends (its stop's last
/// one included) and into every snapshot, under a key outside the
/// engine's prefixes, which a router of an earlier release skips. A
/// restart resumes there ([`stopped_at`]): a commit's own time is the wall
/// clock, which after a restart runs ahead of the inputs still unread,
/// and a snapshot has none.
pub const CLOCK_KEY: &str = "router.clock";

/// The router's clocks as its last journal entry left them.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RouterClock {
    /// The latest input arrival or timer instant the engine was given.
    pub at_ms: i64,
    /// How far timers had run: `at_ms`, or earlier while catch-up held
    /// them back for a source still being read (absent: `at_ms`).
    #[serde(default)]
    pub timers_ms: Option<i64>,
    /// The wall-clock time (`Batch::at_ms`) of the journal entry that
    /// wrote it; 0 in a snapshot.
    #[serde(default)]
    pub commit_ms: i64,
}

impl RouterClock {
    pub fn record(&self) -> (String, Vec<u8>) {
        (CLOCK_KEY.to_string(), crate::domain::wire::to_json(self))
    }
}

/// Where a restart resumes: the engine's time, and how far timers had run
/// (from there on they wait for the inputs that arrived after it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stopped {
    pub at: DateTime<Utc>,
    pub timers: DateTime<Utc>,
}

/// Where the router that wrote this state stopped, as far as its inputs
/// and timers go: its clocks as journaled (`clock`), when the record was
/// written by the last batch applied (its `commit_ms` is that batch's time,
/// `last_batch_ms`) or no batch followed the snapshot that holds it;
/// otherwise (a journal of an earlier release, or one that wrote after
/// this record in a rolling update) the latest commit's wall-clock time.
/// `None`: nothing was committed.
pub fn stopped_at(clock: Option<RouterClock>, last_batch_ms: Option<i64>, last_commit_ms: i64) -> Option<Stopped> {
    let current = clock.filter(|c| last_batch_ms.is_none_or(|ms| ms == c.commit_ms));
    let (at, timers) = match current {
        Some(c) => (c.at_ms, c.timers_ms.map_or(c.at_ms, |t| t.min(c.at_ms))),
        None if last_commit_ms > 0 => (last_commit_ms, last_commit_ms),
        None => return None,
    };
    Some(Stopped {
        at: DateTime::from_timestamp_millis(at)?,
        timers: DateTime::from_timestamp_millis(timers)?,
    })
}

pub struct Recovered {
    pub durable: Durable,
    pub contacts: Vec<Contact>,
    pub agents: Vec<Agent>,
    /// Customers' histories (affinity), by customer key.
    pub customers: Vec<(u128, History)>,
    /// Queues' paces, by queue name.
    pub queues: Vec<(String, QueuePace)>,
    /// The `router.clock` record, when one reads.
    pub clock: Option<RouterClock>,
    /// The snapshot the state started from.
    pub snapshot: Option<Marker>,
    /// Journal entries replayed after it.
    pub replayed: usize,
    /// Records carried over from an earlier release's bucket.
    pub imported: usize,
    /// Whether a standby's warm state was brought up to date (rather than
    /// the state read afresh).
    pub warm: bool,
}

/// A random key for id digests: a new deployment's, kept with its state.
fn random_key() -> (u64, u64) {
    let s = std::collections::hash_map::RandomState::new();
    let mut a = s.build_hasher();
    a.write_u64(1);
    let mut b = s.build_hasher();
    b.write_u64(2);
    (a.finish(), b.finish())
}

fn corrupt(what: &'static str, key: String) -> impl FnOnce(String) -> DaemonError {
    move |message| DaemonError::CorruptState { what, key, message }
}

/// The durable state as of the journal's tip, as a standby keeps it.
pub struct Warm {
    pub durable: Durable,
    /// The snapshot the state was read from, when it was.
    pub snapshot: Option<Marker>,
    /// Journal entries applied beyond that snapshot.
    pub replayed: usize,
}

/// Brings `prior` up to the journal's tip, reading only the entries after
/// it; reads the latest snapshot and the entries after it when there is no
/// prior state or a newer snapshot was announced. `true`: `prior` was used.
pub async fn catch_up(
    journal: &Journal,
    retention_ms: i64,
    max_ids: usize,
    prior: Option<Warm>,
) -> Result<(Warm, bool), DaemonError> {
    if let Some(mut w) = prior {
        let entries = journal.stream().read_from(w.durable.tip + 1).await?;
        let tip = w.durable.tip;
        let newer_snapshot = entries
            .iter()
            .any(|(_, b)| store::marker_of(b).is_some_and(|m| m.covers > tip));
        if !newer_snapshot {
            for (seq, b) in &entries {
                w.durable
                    .apply_entry(*seq, b)
                    .map_err(|e| corrupt("journal entry", format!("sequence {seq}"))(e.0))?;
                w.replayed += 1;
            }
            return Ok((w, true));
        }
    }
    Ok((cold(journal, retention_ms, max_ids).await?, false))
}

/// The latest snapshot and every entry after it.
async fn cold(journal: &Journal, retention_ms: i64, max_ids: usize) -> Result<Warm, DaemonError> {
    let entries = journal.stream().read_from(1).await?;
    let latest = entries
        .iter()
        .rev()
        .find_map(|(seq, b)| store::marker_of(b).map(|m| (*seq, m)));
    let mut durable = match latest {
        Some((at, m)) => {
            let chunks = journal.stream().read_chunks(m.first_chunk, m.chunks).await?;
            store::from_snapshot(chunks, m.covers, m.chunks, retention_ms, max_ids)
                .map_err(|e| corrupt("snapshot", format!("announced at journal sequence {at}"))(e.0))?
        }
        None => Durable::new(IdSet::new(random_key(), retention_ms, max_ids)),
    };
    let covers = latest.map_or(0, |(_, m)| m.covers);
    let mut replayed = 0;
    for (seq, b) in entries.iter().filter(|(seq, _)| *seq > covers) {
        durable
            .apply_entry(*seq, b)
            .map_err(|e| corrupt("journal entry", format!("sequence {seq}"))(e.0))?;
        replayed += 1;
    }
    Ok(Warm {
        durable,
        snapshot: latest.map(|(_, m)| m),
        replayed,
    })
}

/// The state to route from: `prior` (a standby's warm state) brought up to
/// date, or read afresh; the records decoded.
pub async fn recover(
    bus: &Bus,
    journal: &Journal,
    retention_ms: i64,
    max_ids: usize,
    prior: Option<Warm>,
) -> Result<Recovered, DaemonError> {
    let (w, warm) = catch_up(journal, retention_ms, max_ids, prior).await?;
    let Warm {
        mut durable,
        snapshot,
        replayed,
    } = w;
    let mut imported = 0;
    if durable.tip == 0 {
        for (k, v) in bus.load_legacy_state().await? {
            durable.records.insert(k, v);
            imported += 1;
        }
    }
    let mut contacts = Vec::new();
    let mut agents = Vec::new();
    let mut customers = Vec::new();
    let mut queues = Vec::new();
    let mut clock = None;
    for (key, value) in &durable.records {
        if key == CLOCK_KEY {
            // Like the pace: a record that does not read costs the hold at
            // the restart, never the start.
            match serde_json::from_slice::<RouterClock>(value) {
                Ok(r) => clock = Some(r),
                Err(e) => {
                    tracing::warn!(error = %e, "Unreadable router clock record; resuming at the last commit's time.")
                }
            }
            continue;
        }
        if let Some(name) = key.strip_prefix(QUEUE_KEY) {
            // Derived data: a record that does not read is measured again,
            // never a reason not to start.
            let p: QueuePace = serde_json::from_slice(value).unwrap_or_else(|e| {
                tracing::warn!(queue = name, error = %e, "Unreadable queue pace record; measuring the pace again.");
                QueuePace::default()
            });
            queues.push((name.to_string(), p));
            continue;
        }
        if key.starts_with(CUSTOMER_KEY) {
            let k = parse_record_key(key).ok_or_else(|| corrupt("customer", key.clone())("bad key".into()))?;
            let h = serde_json::from_slice(value).map_err(|e| corrupt("customer", key.clone())(e.to_string()))?;
            customers.push((k, h));
            continue;
        }
        if key.starts_with(CONTACT_KEY) {
            contacts.push(serde_json::from_slice(value).map_err(|e| corrupt("contact", key.clone())(e.to_string()))?);
        } else if key.starts_with(AGENT_KEY) {
            agents.push(serde_json::from_slice(value).map_err(|e| corrupt("agent", key.clone())(e.to_string()))?);
        }
    }
    Ok(Recovered {
        durable,
        contacts,
        agents,
        customers,
        queues,
        clock,
        snapshot,
        replayed,
        imported,
        warm,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock(at_ms: i64, timers_ms: Option<i64>, commit_ms: i64) -> Option<RouterClock> {
        Some(RouterClock {
            at_ms,
            timers_ms,
            commit_ms,
        })
    }

    fn stopped(at: i64, timers: i64) -> Option<Stopped> {
        Some(Stopped {
            at: DateTime::from_timestamp_millis(at).expect("time"),
            timers: DateTime::from_timestamp_millis(timers).expect("time"),
        })
    }

    #[test]
    fn a_restart_resumes_at_the_routers_own_clocks_not_at_the_last_commits_wall_clock() {
        // A crash during a restart's catch-up: the second router committed
        // at its wall clock (9 000), its inputs read up to 6 000, its
        // timers held at the first stop (5 000).
        let mid_catch_up = clock(6_000, Some(5_000), 9_000);
        assert_eq!(stopped_at(mid_catch_up, Some(9_000), 9_000), stopped(6_000, 5_000));
        // The same after the wall clock stepped back: the last batch wrote
        // the record, though an earlier one was stamped later.
        let stepped_back = clock(6_000, Some(5_000), 8_100);
        assert_eq!(stopped_at(stepped_back, Some(8_100), 10_000), stopped(6_000, 5_000));
        // Straight after a snapshot (no batch after it): the record alone.
        assert_eq!(stopped_at(clock(5_000, None, 0), None, 0), stopped(5_000, 5_000));
        // Timers never ahead of the inputs.
        assert_eq!(
            stopped_at(clock(5_000, Some(7_000), 9_000), Some(9_000), 9_000),
            stopped(5_000, 5_000)
        );
        // A journal of an earlier release: the latest commit's time.
        assert_eq!(stopped_at(None, Some(9_000), 9_000), stopped(9_000, 9_000));
        // A router of an earlier release wrote after the record (a rolling
        // update; its clock may even be behind): the record is stale.
        assert_eq!(
            stopped_at(clock(2_000, None, 3_000), Some(2_900), 3_000),
            stopped(3_000, 3_000)
        );
        assert_eq!(
            stopped_at(clock(2_000, None, 0), Some(9_000), 9_000),
            stopped(9_000, 9_000)
        );
        assert_eq!(stopped_at(None, None, 0), None);
    }

    #[test]
    fn the_clock_record_reads_back_and_stays_outside_the_engines_keys() {
        let c = RouterClock {
            at_ms: 1_764_960_000_123,
            timers_ms: Some(1_764_960_000_001),
            commit_ms: 1_764_960_000_200,
        };
        let (key, value) = c.record();
        for prefix in [CONTACT_KEY, AGENT_KEY, QUEUE_KEY, CUSTOMER_KEY] {
            assert!(!key.starts_with(prefix), "{key} is under {prefix}");
        }
        assert_eq!(serde_json::from_slice::<RouterClock>(&value).ok(), Some(c));
    }
}

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

/// The record of the router's own time: the latest input arrival or timer
/// instant the engine was given (`{"at_ms": <ms since the epoch>}`).
/// Written with every batch that writes anything, on an idle router's
/// heartbeat once it moved on by a second, at a clean stop and in every
/// snapshot, under a key outside the engine's prefixes, which a
/// router of an earlier release skips. A restart resumes there
/// ([`stopped_at`]): the commit's own time is the wall clock, which after
/// a restart runs ahead of the inputs still unread, and a snapshot has
/// none.
pub const CLOCK_KEY: &str = "router.clock";

#[derive(serde::Serialize, serde::Deserialize)]
struct ClockRecord {
    at_ms: i64,
}

/// The `router.clock` record of `at`.
pub fn clock_record(at: DateTime<Utc>) -> (String, Vec<u8>) {
    let r = ClockRecord {
        at_ms: at.timestamp_millis(),
    };
    (CLOCK_KEY.to_string(), crate::domain::wire::to_json(&r))
}

/// When the router that wrote this state stopped, as far as its inputs and
/// timers go: its own time as of its last batch (`clock_ms`, the
/// `router.clock` record) or, from a journal without that record, its last
/// commit's wall time. With both, the earlier: a record older than the
/// last commit means a router of an earlier release committed after it
/// (a rolling update), and an early stop time only holds timers back while
/// the inputs after it are read. `None`: nothing was committed.
pub fn stopped_at(clock_ms: Option<i64>, last_commit_ms: i64) -> Option<DateTime<Utc>> {
    let commit = (last_commit_ms > 0).then_some(last_commit_ms);
    let ms = match (clock_ms, commit) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b)?,
    };
    DateTime::from_timestamp_millis(ms)
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
    pub clock_ms: Option<i64>,
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
    let mut clock_ms = None;
    for (key, value) in &durable.records {
        if key == CLOCK_KEY {
            // Like the pace: a record that does not read costs the hold at
            // the restart, never the start.
            match serde_json::from_slice::<ClockRecord>(value) {
                Ok(r) => clock_ms = Some(r.at_ms),
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
        clock_ms,
        snapshot,
        replayed,
        imported,
        warm,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_resumes_at_the_routers_own_time_not_at_the_last_commits_wall_clock() {
        let at = |ms| DateTime::from_timestamp_millis(ms);
        // A crash during a restart's catch-up: the second router committed
        // at its wall clock (9 000) while its own time was still in the
        // first downtime (5 000).
        assert_eq!(stopped_at(Some(5_000), 9_000), at(5_000));
        // Straight after a snapshot (no commit after it): the record alone.
        assert_eq!(stopped_at(Some(5_000), 0), at(5_000));
        // A journal of an earlier release: the commit's time.
        assert_eq!(stopped_at(None, 9_000), at(9_000));
        // A router of an earlier release committed after the record (a
        // rolling update): the earlier of the two.
        assert_eq!(stopped_at(Some(9_000), 7_000), at(7_000));
        assert_eq!(stopped_at(None, 0), None);
    }

    #[test]
    fn the_clock_record_reads_back_and_stays_outside_the_engines_keys() {
        let t = DateTime::from_timestamp_millis(1_764_960_000_123).expect("time");
        let (key, value) = clock_record(t);
        for prefix in [CONTACT_KEY, AGENT_KEY, QUEUE_KEY, CUSTOMER_KEY] {
            assert!(!key.starts_with(prefix), "{key} is under {prefix}");
        }
        let r: ClockRecord = serde_json::from_slice(&value).expect("reads");
        assert_eq!(r.at_ms, t.timestamp_millis());
    }
}

//! Start-up: the router's state is the latest snapshot announced in the
//! journal, then every journal entry after it. A journal with no snapshot
//! is replayed from its first entry; an empty journal beside a key-value
//! bucket from an earlier release takes that bucket's records.

use super::DaemonError;
use crate::bus::journal::Journal;
use crate::bus::Bus;
use crate::routing::customers::{parse_record_key, History, CUSTOMER_KEY};
use crate::routing::{Agent, Contact, AGENT_KEY, CONTACT_KEY};
use crate::store::{self, Durable, IdSet, Marker};
use std::hash::{BuildHasher, Hasher};

pub struct Recovered {
    pub durable: Durable,
    pub contacts: Vec<Contact>,
    pub agents: Vec<Agent>,
    /// Customers' histories (affinity), by customer key.
    pub customers: Vec<(u128, History)>,
    /// The snapshot the state started from.
    pub snapshot: Option<Marker>,
    /// Journal entries replayed after it.
    pub replayed: usize,
    /// Records carried over from an earlier release's bucket.
    pub imported: usize,
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

pub async fn recover(
    bus: &Bus,
    journal: &Journal,
    retention_ms: i64,
    max_ids: usize,
) -> Result<Recovered, DaemonError> {
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
    let mut imported = 0;
    if entries.is_empty() {
        for (k, v) in bus.load_legacy_state().await? {
            durable.records.insert(k, v);
            imported += 1;
        }
    }
    let mut contacts = Vec::new();
    let mut agents = Vec::new();
    let mut customers = Vec::new();
    for (key, value) in &durable.records {
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
        snapshot: latest.map(|(_, m)| m),
        replayed,
        imported,
    })
}

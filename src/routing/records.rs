//! What the engine persists: the records an input changed
//! ([`Engine::take_changes`], written before the input is acked) and every
//! record at once ([`Engine::records`], for a snapshot), in the same keys
//! and forms, so a snapshot and the changes after it rebuild the same
//! engine.

use super::{customers, Change, Engine, QueuePace, AGENT_KEY, CONTACT_KEY, QUEUE_KEY};

impl Engine {
    /// Records to persist since the last call.
    pub fn take_changes(&mut self) -> Vec<Change> {
        // Drained, not replaced: the vectors keep their room for the next input.
        let mut contacts = std::mem::take(&mut self.dirty_contacts);
        let mut closed = std::mem::take(&mut self.closed_contacts);
        let mut agents = std::mem::take(&mut self.dirty_agents);
        contacts.sort_unstable();
        contacts.dedup();
        closed.sort_unstable();
        closed.dedup();
        agents.sort_unstable();
        agents.dedup();
        let mut v = Vec::with_capacity(contacts.len() + closed.len() + agents.len());
        for id in closed.drain(..) {
            // An id closed and opened again by the same input is written
            // below, from its new slot.
            if self.contact_slot_of(&id).is_none() {
                v.push(Change {
                    key: format!("{CONTACT_KEY}{id}"),
                    value: None,
                });
            }
        }
        for cx in contacts.drain(..) {
            // A slot closed by this input (and not reused) is free: its
            // contact is among the deletions above.
            let Some(s) = self.slot(cx) else { continue };
            v.push(Change {
                key: format!("{CONTACT_KEY}{}", s.c.id),
                value: Some(crate::domain::wire::to_json(&s.c)),
            });
        }
        for ax in agents.drain(..) {
            let Some(slot) = self.agents.get(ax as usize) else {
                continue;
            };
            v.push(Change {
                key: format!("{AGENT_KEY}{}", slot.a.id),
                value: Some(crate::domain::wire::to_json(&slot.a)),
            });
        }
        (self.dirty_contacts, self.closed_contacts, self.dirty_agents) = (contacts, closed, agents);
        let mut queues = std::mem::take(&mut self.dirty_queues);
        queues.sort_unstable();
        queues.dedup();
        for q in queues.drain(..) {
            if let Some((key, value)) = self.queue_record(q) {
                v.push(Change {
                    key,
                    value: Some(value),
                });
            }
        }
        self.dirty_queues = queues;
        for name in self.dropped_queues.drain(..) {
            v.push(Change {
                key: format!("{QUEUE_KEY}{name}"),
                value: None,
            });
        }
        for k in self.customers.take_dirty() {
            let value = self.customers.get(k).map(crate::domain::wire::to_json);
            v.push(Change {
                key: customers::record_key(k),
                value,
            });
        }
        v
    }

    /// Every record as [`Engine::take_changes`] writes it, for a snapshot.
    pub fn records(&self) -> impl Iterator<Item = (String, Vec<u8>)> + '_ {
        let contacts = self
            .contacts()
            .map(|c| (format!("{CONTACT_KEY}{}", c.id), crate::domain::wire::to_json(c)));
        let agents = self
            .agents()
            .map(|a| (format!("{AGENT_KEY}{}", a.id), crate::domain::wire::to_json(a)));
        let customers = self
            .customers
            .iter()
            .map(|(k, h)| (customers::record_key(*k), crate::domain::wire::to_json(h)));
        let queues = (0..self.queues.len() as u32).filter_map(|q| self.queue_record(q));
        contacts.chain(agents).chain(customers).chain(queues)
    }

    /// A queue's `queue.<name>` record, once its pace is measured.
    fn queue_record(&self, q: u32) -> Option<(String, Vec<u8>)> {
        let slot = self.queues.get(q as usize)?;
        let pace = QueuePace {
            pace_ms: Some(slot.pace_ms?),
        };
        Some((format!("{QUEUE_KEY}{}", slot.name), crate::domain::wire::to_json(&pace)))
    }
}

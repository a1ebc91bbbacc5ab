//! The outbox: every outbound message the router decided, numbered in the
//! order decided, kept until JetStream has acknowledged it. It is part of
//! the journal (recorded in the commit that decided the message), so a
//! restart publishes again exactly what may not have gone out, under the
//! message's original `Nats-Msg-Id`.
//!
//! Invariants: numbers are consecutive from `published_through + 1` to
//! `next_seq - 1`; a message is dropped only once its number is at or below
//! `published_through`.

use super::codec::{DecodeError, Reader, Writer};
use bytes::Bytes;
use std::collections::VecDeque;

#[derive(Debug, Clone, PartialEq)]
pub struct OutMsg {
    pub seq: u64,
    pub subject: String,
    pub msg_id: String,
    pub payload: Bytes,
}

impl OutMsg {
    pub(super) fn encoded_len(&self) -> usize {
        20 + self.subject.len() + self.msg_id.len() + self.payload.len()
    }
    pub(super) fn write(&self, w: &mut Writer) {
        w.u64(self.seq);
        w.bytes(self.subject.as_bytes());
        w.bytes(self.msg_id.as_bytes());
        w.bytes(&self.payload);
    }
    pub(super) fn read(r: &mut Reader) -> Result<OutMsg, DecodeError> {
        Ok(OutMsg {
            seq: r.u64("outbox number")?,
            subject: r.str("outbox subject")?.to_string(),
            msg_id: r.str("outbox message id")?.to_string(),
            payload: Bytes::copy_from_slice(r.bytes("outbox payload")?),
        })
    }
}

#[derive(Debug, Default)]
pub struct Outbox {
    pending: VecDeque<OutMsg>,
    /// The number the next message gets.
    next: u64,
    published_through: u64,
}

impl Outbox {
    pub fn starting_at(next: u64, published_through: u64) -> Outbox {
        Outbox {
            pending: VecDeque::new(),
            next: next.max(published_through + 1),
            published_through,
        }
    }

    pub fn next_seq(&self) -> u64 {
        self.next.max(1)
    }

    pub fn published_through(&self) -> u64 {
        self.published_through
    }

    /// Numbers a new message (not yet in the outbox: it joins once the
    /// commit that decided it is durable, through [`Outbox::restore`]).
    pub fn number(&mut self, subject: String, msg_id: String, payload: Bytes) -> OutMsg {
        let seq = self.next_seq();
        self.next = seq + 1;
        OutMsg {
            seq,
            subject,
            msg_id,
            payload,
        }
    }

    /// Adds a message read back from the journal or a snapshot, or one whose
    /// commit is now durable. Already-published or already-held numbers are
    /// ignored, so replays are harmless.
    pub fn restore(&mut self, m: OutMsg) {
        if m.seq <= self.published_through || self.pending.back().is_some_and(|b| b.seq >= m.seq) {
            return;
        }
        self.next = self.next.max(m.seq + 1);
        self.pending.push_back(m);
    }

    /// Drops every message numbered up to `through`.
    pub fn mark_published(&mut self, through: u64) {
        if through <= self.published_through {
            return;
        }
        self.published_through = through;
        self.next = self.next.max(through + 1);
        while self.pending.front().is_some_and(|m| m.seq <= through) {
            self.pending.pop_front();
        }
    }

    pub fn pending(&self) -> impl Iterator<Item = &OutMsg> {
        self.pending.iter()
    }

    /// The messages numbered after `seq`, in order: found by bisection,
    /// not by walking the ones before (numbers rise along the queue).
    pub fn pending_after(&self, seq: u64) -> impl DoubleEndedIterator<Item = &OutMsg> {
        let from = self.pending.partition_point(|m| m.seq <= seq);
        self.pending.range(from..)
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

//! The order in which a batch's inputs are handled: the order they arrived
//! in (their stream time), across the two sources.
//!
//! The two consumers hand their deliveries over in chunks, each in its own
//! stream's order, so a batch can hold an agent's `accept` after a customer
//! message that arrived later. Handled in that order, the later message's
//! time would pass the offer's deadline first (each input runs the timers
//! due before it) and the accept, sent in time, would lose.
//!
//! Invariant: each source's own order is kept whatever the stamps say (a
//! stream's messages are handled in sequence: an agent's `accept` before
//! its `complete`); between sources, the earlier stamp goes first, and on
//! equal stamps the delivery handed over first.

use chrono::{DateTime, Utc};
use std::collections::VecDeque;

/// Reorders `batch` by arrival across sources, keeping each source's order.
/// `key` gives an item's source (a small index) and its arrival time.
pub(super) fn by_arrival<T>(batch: &mut Vec<T>, key: impl Fn(&T) -> (usize, DateTime<Utc>)) {
    let mut queues: Vec<VecDeque<(usize, T)>> = Vec::new();
    for (i, item) in batch.drain(..).enumerate() {
        let (source, _) = key(&item);
        if queues.len() <= source {
            queues.resize_with(source + 1, VecDeque::new);
        }
        queues[source].push_back((i, item));
    }
    loop {
        // The head that arrived first (ties: handed over first).
        let next = queues
            .iter()
            .enumerate()
            .filter_map(|(q, items)| items.front().map(|(i, item)| (key(item).1, *i, q)))
            .min();
        let Some((_, _, q)) = next else { break };
        if let Some((_, item)) = queues[q].pop_front() {
            batch.push(item);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_800_000_000_000 + ms).unwrap_or_default()
    }

    #[test]
    fn an_accept_handed_over_after_a_later_message_goes_first() {
        // (source, stamp, name): the inbound consumer's chunk came first.
        let mut batch = vec![(0, t(500), "message"), (1, t(200), "accept"), (1, t(600), "complete")];
        by_arrival(&mut batch, |x| (x.0, x.1));
        let names: Vec<_> = batch.iter().map(|x| x.2).collect();
        assert_eq!(names, ["accept", "message", "complete"]);
    }

    #[test]
    fn a_source_keeps_its_own_order_even_when_its_stamps_go_back() {
        // A stream leader's clock stepped back between two messages.
        let mut batch = vec![(1, t(300), "accept"), (1, t(100), "complete"), (0, t(200), "message")];
        by_arrival(&mut batch, |x| (x.0, x.1));
        let names: Vec<_> = batch.iter().map(|x| x.2).collect();
        assert_eq!(names, ["message", "accept", "complete"]);
    }

    proptest! {
        /// Nothing is lost or doubled, each source's order is kept, and
        /// where both sources' stamps rise, the batch comes out by stamp
        /// (ties in the order handed over).
        #[test]
        fn merged_batches_keep_every_input_and_each_sources_order(
            items in proptest::collection::vec((0usize..2, 0i64..50), 0..40),
            sorted in any::<bool>(),
        ) {
            let mut batch: Vec<(usize, i64, usize)> =
                items.iter().enumerate().map(|(n, (s, ms))| (*s, *ms, n)).collect();
            if sorted {
                // Rising stamps within each source, as a stream's are.
                let mut seen = [0i64; 2];
                for item in &mut batch {
                    seen[item.0] += item.1;
                    item.1 = seen[item.0];
                }
            }
            let before = batch.clone();
            by_arrival(&mut batch, |x| (x.0, t(x.1)));
            prop_assert_eq!(batch.len(), before.len());
            for s in 0..2 {
                let want: Vec<usize> = before.iter().filter(|x| x.0 == s).map(|x| x.2).collect();
                let got: Vec<usize> = batch.iter().filter(|x| x.0 == s).map(|x| x.2).collect();
                prop_assert_eq!(got, want);
            }
            if sorted {
                for w in batch.windows(2) {
                    prop_assert!((w[0].1, w[0].2) <= (w[1].1, w[1].2), "{:?} before {:?}", w[0], w[1]);
                }
            }
        }
    }
}

//! After an outage, timers wait for the inputs that arrived during it.
//!
//! While the router was down, agents kept answering and customers kept
//! writing: JetStream holds those inputs. If the offer expiries and SLA
//! thresholds that fell due meanwhile fired first, an agent who accepted in
//! time would have the offer expired (and could be set away) for the
//! router's downtime. So at start-up each input source with a backlog
//! holds the timer clock back: timers fire only up to the stream time
//! (arrival) of the inputs processed so far, until the source has caught
//! up. A source whose messages were delivered to the stopped router but
//! not acknowledged is redelivered only after the ack wait, so it holds
//! the clock until then.
//!
//! Invariant: the timer clock never passes the arrival time of an input
//! that is still unprocessed in a lagging source, and never goes back.
//! Messages in flight at the stop arrived before the router's time as of
//! its last commit (or shortly after it, before the crash): while their
//! redelivery is awaited, their source holds the clock at the stop. They
//! are counted off as they come back (JetStream marks a redelivery), so
//! the wait ends when the last of them is read, or at the ack wait (plus
//! 2 s) at the latest.

use crate::bus::Source;
use chrono::{DateTime, Utc};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
struct Lag {
    /// The arrival time up to which this source lets timers fire.
    clock: DateTime<Utc>,
    /// Arrival time of the last input processed from this source.
    newest: DateTime<Utc>,
    /// Messages were in flight to the stopped router: wait for their
    /// redelivery until this instant even once the backlog is read.
    redelivery_until: Option<Instant>,
    /// Of those, how many have not come back yet.
    awaiting: u64,
    /// The backlog (messages never delivered) is read.
    drained: bool,
}

impl Lag {
    /// Messages in flight at the stop may still come back: they arrived
    /// before it, so the clock stays there (whatever newer inputs say).
    fn awaiting_redelivery(&self, now: Instant) -> bool {
        self.awaiting > 0 && self.redelivery_until.is_some_and(|t| now < t)
    }
}

#[derive(Debug, Default)]
pub struct CatchUp {
    lag: [Option<Lag>; 2],
    /// The clock handed out last: it never goes back.
    last: Option<DateTime<Utc>>,
}

/// What a consumer held at start-up.
#[derive(Debug, Clone, Copy, Default)]
pub struct Backlog {
    /// Stored, never delivered.
    pub pending: u64,
    /// Delivered to the stopped router, not acknowledged.
    pub unacked: u64,
}

/// The sources, each at its place in per-source arrays.
pub(super) const SOURCES: [Source; 2] = [Source::Inbound, Source::Agent];

/// A source's place in per-source arrays.
pub(super) fn source_ix(s: Source) -> usize {
    match s {
        Source::Inbound => 0,
        Source::Agent => 1,
    }
}

impl CatchUp {
    /// `since`: when the router stopped, as far as its inputs and timers
    /// go (its own time as of its last commit, `recover::stopped_at`).
    /// `ack_wait`: after it, unacknowledged messages are redelivered.
    pub fn new(backlog: [(Source, Backlog); 2], since: DateTime<Utc>, ack_wait: Duration, now: Instant) -> CatchUp {
        let mut c = CatchUp::default();
        for (s, b) in backlog {
            if b.pending == 0 && b.unacked == 0 {
                continue;
            }
            c.lag[source_ix(s)] = Some(Lag {
                clock: since,
                newest: since,
                redelivery_until: (b.unacked > 0).then(|| now + ack_wait + Duration::from_secs(2)),
                awaiting: b.unacked,
                drained: b.pending == 0,
            });
        }
        // The engine resumed there: no tick goes back before it.
        c.last = Some(since);
        c
    }

    /// How far timers have run: the clock handed out last (the resume
    /// time before any).
    pub fn timers_ran(&self) -> Option<DateTime<Utc>> {
        self.last
    }

    pub fn active(&self) -> bool {
        self.lag.iter().any(Option::is_some)
    }

    /// An input from `source` that arrived at `published`, with `pending`
    /// more behind it; `redelivered`: one JetStream sent before (one of
    /// those in flight at the stop, counted off until all came back).
    pub fn saw(&mut self, source: Source, published: DateTime<Utc>, pending: u64, redelivered: bool, now: Instant) {
        let slot = &mut self.lag[source_ix(source)];
        if let Some(l) = slot {
            if redelivered {
                l.awaiting = l.awaiting.saturating_sub(1);
            }
            l.newest = l.newest.max(published);
            // Messages in flight to the stopped router come back after the
            // ack wait, behind newer ones, with their older arrival times:
            // until then the newer ones do not move the clock.
            if !l.awaiting_redelivery(now) {
                l.clock = l.clock.max(l.newest);
            }
            l.drained |= pending == 0;
            if l.drained && !l.awaiting_redelivery(now) {
                *slot = None;
                tracing::info!(source = ?source, "Caught up with the input that arrived while stopped; timers run on.");
            }
        }
    }

    /// The next input of `source` still to be handled arrived at `next`
    /// (it is in the batch at hand): nothing the source delivers after it
    /// arrived earlier (a stream's order), unless messages in flight at the
    /// stop are still to come back. So the source holds the timers no
    /// further back than that, though its last input read is older: a
    /// reply read while the other stream lags still comes after the SLA
    /// threshold that fell due before it.
    pub fn ahead(&mut self, source: Source, next: DateTime<Utc>, now: Instant) {
        if let Some(l) = &mut self.lag[source_ix(source)] {
            if !l.awaiting_redelivery(now) {
                l.clock = l.clock.max(next);
            }
        }
    }

    /// The time due timers may fire up to, given the wall clock.
    pub fn timer_clock(&mut self, wall: DateTime<Utc>, now: Instant) -> DateTime<Utc> {
        for slot in &mut self.lag {
            if let Some(l) = slot {
                if !l.awaiting_redelivery(now) {
                    // The wait is over (timed out): the clock follows the
                    // source's inputs again, or the source is done.
                    l.clock = l.clock.max(l.newest);
                    if l.drained {
                        *slot = None;
                    }
                }
            }
        }
        let mut clock = self
            .lag
            .iter()
            .flatten()
            .map(|l| l.clock)
            .min()
            .unwrap_or(wall)
            .min(wall);
        if let Some(last) = self.last {
            clock = clock.max(last);
        }
        self.last = Some(clock);
        clock
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap_or_default()
    }

    #[test]
    fn a_lagging_source_holds_timers_at_its_inputs_arrival_until_drained() {
        let i0 = Instant::now();
        let b = [
            (Source::Inbound, Backlog::default()),
            (Source::Agent, Backlog { pending: 2, unacked: 0 }),
        ];
        let mut c = CatchUp::new(b, t(0), Duration::from_secs(30), i0);
        assert_eq!(c.timer_clock(t(100), i0), t(0), "held at the stop");
        c.saw(Source::Agent, t(10), 1, false, i0);
        assert_eq!(c.timer_clock(t(100), i0), t(10), "up to the input read");
        // An input from a source without backlog does not move it.
        c.saw(Source::Inbound, t(100), 0, false, i0);
        assert_eq!(c.timer_clock(t(100), i0), t(10));
        c.saw(Source::Agent, t(20), 0, false, i0);
        assert!(!c.active());
        assert_eq!(c.timer_clock(t(100), i0), t(100), "caught up: wall clock");
    }

    #[test]
    fn in_flight_messages_hold_the_clock_until_their_redelivery() {
        let i0 = Instant::now();
        let b = [
            (Source::Inbound, Backlog { pending: 0, unacked: 3 }),
            (Source::Agent, Backlog::default()),
        ];
        let mut c = CatchUp::new(b, t(0), Duration::from_secs(30), i0);
        // A newer message comes first; the three in flight (older) may
        // still come back.
        c.saw(Source::Inbound, t(5), 0, false, i0);
        assert_eq!(c.timer_clock(t(100), i0), t(0), "still waiting for the redelivery");
        c.saw(Source::Inbound, t(8), 0, false, i0 + Duration::from_secs(10));
        assert_eq!(c.timer_clock(t(110), i0 + Duration::from_secs(10)), t(0));
        let later = i0 + Duration::from_secs(33);
        assert_eq!(c.timer_clock(t(133), later), t(133));
        assert!(!c.active());
    }

    #[test]
    fn the_hold_ends_once_every_message_in_flight_came_back() {
        let i0 = Instant::now();
        let b = [
            (Source::Inbound, Backlog { pending: 1, unacked: 2 }),
            (Source::Agent, Backlog::default()),
        ];
        let mut c = CatchUp::new(b, t(0), Duration::from_secs(30), i0);
        // Down longer than the ack wait: the two come back at once, after
        // a newer one.
        c.saw(Source::Inbound, t(50), 2, false, i0);
        c.saw(Source::Inbound, t(-3), 1, true, i0);
        assert_eq!(c.timer_clock(t(100), i0), t(0), "one still to come");
        c.saw(Source::Inbound, t(-1), 1, true, i0);
        assert_eq!(c.timer_clock(t(100), i0), t(50), "all back: up to the newest read");
        c.saw(Source::Inbound, t(60), 0, false, i0);
        assert!(!c.active(), "drained, nothing in flight");
    }

    #[test]
    fn a_lagging_streams_next_input_in_the_batch_lets_the_timers_run_up_to_it() {
        let i0 = Instant::now();
        let b = [
            (Source::Inbound, Backlog { pending: 5, unacked: 0 }),
            (Source::Agent, Backlog { pending: 5, unacked: 0 }),
        ];
        let mut c = CatchUp::new(b, t(0), Duration::from_secs(30), i0);
        c.saw(Source::Inbound, t(5), 4, false, i0);
        c.saw(Source::Agent, t(20), 4, false, i0);
        assert_eq!(
            c.timer_clock(t(100), i0),
            t(5),
            "the inbound stream may still hold t(6)"
        );
        // Its next message, already in the batch, arrived at t(30).
        c.ahead(Source::Inbound, t(30), i0);
        assert_eq!(c.timer_clock(t(100), i0), t(20), "up to the agent's input at hand");
        // Not while messages in flight at the stop may still come back.
        let b = [
            (Source::Inbound, Backlog { pending: 5, unacked: 1 }),
            (Source::Agent, Backlog::default()),
        ];
        let mut c = CatchUp::new(b, t(0), Duration::from_secs(30), i0);
        c.ahead(Source::Inbound, t(30), i0);
        assert_eq!(c.timer_clock(t(100), i0), t(0));
    }

    #[test]
    fn nothing_waiting_means_no_hold_and_the_clock_never_goes_back() {
        let i0 = Instant::now();
        let mut c = CatchUp::new(
            [
                (Source::Inbound, Backlog::default()),
                (Source::Agent, Backlog::default()),
            ],
            t(0),
            Duration::from_secs(30),
            i0,
        );
        assert!(!c.active());
        assert_eq!(c.timer_clock(t(50), i0), t(50));
        assert_eq!(c.timer_clock(t(40), i0), t(50), "a wall clock stepping back does not");
    }
}

//! Driving the engine: feeding inputs, answering offers, timing, and the
//! figures of a report (percentiles, budgets, memory).

use super::*;

// ----- driving the engine -----

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum OnOffer {
    /// Accept at once (untimed): the slot becomes assigned.
    Accept,
    /// Leave the offer outstanding, remembering when it expires.
    Hold,
}

pub(crate) struct HeldOffer {
    pub(crate) expires_at: DateTime<Utc>,
}

#[derive(Default)]
pub(crate) struct Drained {
    pub(crate) offers: usize,
    pub(crate) expired: usize,
    pub(crate) outputs: usize,
    pub(crate) rejected: usize,
    /// Contacts offered and contacts whose offer expired: a ring group's
    /// offer to three agents, or its expiry, is one contact's.
    pub(crate) contacts_offered: BTreeSet<String>,
    pub(crate) contacts_expired: BTreeSet<String>,
}

pub(crate) struct Sim {
    pub(crate) e: Engine,
    pub(crate) now: DateTime<Utc>,
    pub(crate) source: ContactSource,
    pub(crate) rng: Rng,
    /// Draws each input's distance from the last (`--clock spread`); none:
    /// 1 ms (`--clock steady`). Apart from `rng`, so the inputs are the
    /// same either way.
    pub(crate) clock: Option<Rng>,
    pub(crate) offer_timeout: chrono::Duration,
    /// Accepted contacts: (agent, contact id).
    pub(crate) assigned: Vec<(AgentId, String)>,
    pub(crate) held: Vec<HeldOffer>,
    pub(crate) seq: u64,
    /// Work of the timed calls since the last [`Sim::work_report`].
    pub(crate) tally: Tally,
    /// Fire the timers due between inputs at their own instants
    /// ([`Sim::timers_before`]), as the daemon does; `false` leaves them to
    /// the next input (`--timers input`).
    pub(crate) ticks_at_deadlines: bool,
    /// Those ticks, timed, and their work.
    pub(crate) deadline_ticks: Histogram<u64>,
    pub(crate) deadline_tally: Tally,
}

/// What the timed engine calls of a scenario did besides their own event
/// (from [`Engine::last_work`]): how the routing model's per-event cost
/// is made up can be read next to the timings.
#[derive(Default)]
pub(crate) struct Tally {
    calls: usize,
    relaxed: usize,
    relaxed_max: usize,
    examined: usize,
    timers: usize,
}

/// The (contact id, agent) of an offer on an agent's desktop subject.
pub(crate) fn offer_of(payload: &[u8]) -> Option<(String, AgentId)> {
    let v: Value = serde_json::from_slice(payload).ok()?;
    if v.get("kind")?.as_str()? != "offer" {
        return None;
    }
    let contact = v.get("contact_id")?.as_str()?.to_string();
    let agent = AgentId::try_from(v.get("agent_id")?.as_str()?).ok()?;
    Some((contact, agent))
}

impl Sim {
    /// The next input's instant, 0.5–1.5 ms on (1 ms with a steady clock),
    /// once the timers due until then (its own instant included) have fired
    /// ([`Sim::timers_before`]).
    pub(crate) fn next_input(&mut self, on_offer: OnOffer) -> DateTime<Utc> {
        let step_ns = match &mut self.clock {
            Some(r) => 500_000 + r.below(1_000_000) as i64,
            None => 1_000_000,
        };
        self.now += chrono::Duration::nanoseconds(step_ns);
        let now = self.now;
        // Just after `now`: timers due at the input's own instant fire
        // before it (the daemon may take either first; this way the input
        // is timed on its own work).
        self.timers_before(now + chrono::Duration::nanoseconds(1), on_offer);
        now
    }

    pub(crate) fn agent_event(&mut self, agent: &AgentId, ty: &str, contact_id: &str) -> AgentEvent {
        self.seq += 1;
        let payload = json!({"v": 1, "id": format!("{ty}-{}", self.seq), "type": ty, "agent_id": agent, "contact_id": contact_id});
        decode_agent(agent.as_str(), ty, payload.to_string().as_bytes()).expect("generated agent event decodes")
    }

    /// Takes outputs and changes, as the daemon does after every input, and
    /// answers the offers among them (accepts are applied at `at`).
    pub(crate) fn settle(&mut self, at: DateTime<Utc>, on_offer: OnOffer) -> Drained {
        let mut d = Drained::default();
        loop {
            let outputs = self.e.take_outputs();
            let _changes = self.e.take_changes();
            d.outputs += outputs.len();
            let mut accept = Vec::new();
            for o in &outputs {
                match &o.subject {
                    OutSubject::Desktop(_) => {
                        if let Some((contact, agent)) = offer_of(&o.payload) {
                            d.offers += 1;
                            d.contacts_offered.insert(contact.clone());
                            match on_offer {
                                OnOffer::Accept => accept.push((agent, contact)),
                                OnOffer::Hold => self.held.push(HeldOffer {
                                    expires_at: at + self.offer_timeout,
                                }),
                            }
                        }
                    }
                    OutSubject::ContactEvent(what) if *what == "offer_expired" => {
                        d.expired += 1;
                        let v: Value = serde_json::from_slice(&o.payload).unwrap_or(Value::Null);
                        if let Some(id) = v.get("contact_id").and_then(Value::as_str) {
                            d.contacts_expired.insert(id.to_string());
                        }
                    }
                    _ => {}
                }
            }
            if accept.is_empty() {
                return d;
            }
            for (agent, contact) in accept {
                let ev = self.agent_event(&agent, "accept", &contact);
                match self.e.on_agent(&ev, at) {
                    Ok(Outcome::Applied) => self.assigned.push((agent, contact)),
                    _ => d.rejected += 1,
                }
            }
        }
    }

    /// Adds the last (timed) engine call's work to the tally.
    pub(crate) fn note_work(&mut self) {
        self.tally.add(self.e.last_work());
    }

    /// The tally as report fields (means per timed call), and a fresh one.
    fn work_report(&mut self) -> Map<String, Value> {
        std::mem::take(&mut self.tally).report()
    }

    /// Fires, each at its own instant and timed into `deadline_ticks`, the
    /// timers due before `until`: the daemon sleeps until the engine's next
    /// deadline and ticks then, so a relaxation step or an expiry due
    /// between two inputs is not the next input's work unless the daemon is
    /// busy. With `--timers input`, nothing (the next input fires them).
    pub(crate) fn timers_before(&mut self, until: DateTime<Utc>, on_offer: OnOffer) {
        while self.ticks_at_deadlines {
            let Some(due) = self.e.next_deadline().filter(|d| *d < until) else {
                return;
            };
            let at = due.max(self.now);
            let t = Instant::now();
            self.e.on_tick(at);
            self.deadline_ticks.saturating_record(t.elapsed().as_nanos() as u64);
            self.deadline_tally.add(self.e.last_work());
            self.settle(at, on_offer);
            if self.e.next_deadline() == Some(due) {
                // Not consumed by a tick at its instant (held back): leave it.
                return;
            }
        }
    }

    /// The `timer_tick_due` scenario: the ticks [`Sim::timers_before`] made.
    pub(crate) fn deadline_report(&mut self) -> Map<String, Value> {
        let mut s = stats(&self.deadline_ticks, false);
        s.extend(std::mem::take(&mut self.deadline_tally).report());
        s.insert("at_deadlines".into(), json!(self.ticks_at_deadlines));
        s
    }

    /// A timed scenario's report: its latency figures, its `timing` (from
    /// the budget's `done`) and its work tally (which starts afresh).
    pub(crate) fn scenario_report(
        &mut self,
        h: &Histogram<u64>,
        truncated: bool,
        timing: Map<String, Value>,
    ) -> Map<String, Value> {
        let mut s = stats(h, truncated);
        s.extend(timing);
        s.extend(self.work_report());
        s
    }

    /// One new contact; `on_inbound` timed into `h` when given.
    pub(crate) fn inbound(&mut self, h: Option<&mut Histogram<u64>>, on_offer: OnOffer) -> Drained {
        let ev = self.source.next_event();
        let now = self.next_input(on_offer);
        let t = Instant::now();
        let r = self.e.on_inbound(&ev, now);
        let took = t.elapsed();
        if let Some(h) = h {
            h.saturating_record(took.as_nanos() as u64);
            self.note_work();
        }
        assert!(
            matches!(r, Ok(Outcome::Opened { .. })),
            "a new conversation opens a contact: {r:?}"
        );
        self.settle(now, on_offer)
    }
}

impl Tally {
    fn add(&mut self, w: omniroute::routing::Work) {
        self.calls += 1;
        self.relaxed += w.relaxed;
        self.relaxed_max = self.relaxed_max.max(w.relaxed);
        self.examined += w.examined;
        self.timers += w.timers_fired;
    }

    /// Report fields: means per call.
    fn report(&self) -> Map<String, Value> {
        let mean = |n: usize| round3(n as f64 / self.calls.max(1) as f64);
        let mut m = Map::new();
        m.insert("relaxed_per_event".into(), json!(mean(self.relaxed)));
        m.insert("relaxed_max".into(), json!(self.relaxed_max));
        m.insert("examined_per_event".into(), json!(mean(self.examined)));
        m.insert("timers_per_event".into(), json!(mean(self.timers)));
        m
    }
}

/// A scenario's latencies split by a count of what each event did (4
/// counts 4 or more): the offers it made (a ring group's offer goes to
/// several agents at once), or the timers a tick fired (offers made by one
/// input expire at one instant). Where the scenario's tail comes from.
#[derive(Default)]
pub(crate) struct Split(BTreeMap<usize, Histogram<u64>>);

impl Split {
    pub(crate) fn record(&mut self, count: usize, ns: u64) {
        self.0
            .entry(count.min(4))
            .or_insert_with(histogram)
            .saturating_record(ns);
    }

    /// `{"0": {count, mean_us, p50_us, ...}, "1": ...}`.
    pub(crate) fn report(&self) -> Value {
        let m: Map<String, Value> = self
            .0
            .iter()
            .map(|(n, h)| {
                let mut s = stats(h, false);
                s.remove("truncated");
                (n.to_string(), Value::Object(s))
            })
            .collect();
        Value::Object(m)
    }
}

/// Each routing decision's share of its event's time: an event that
/// offers `n` contacts, or a tick that expires the offers of `n` contacts,
/// counts `n` times at a `n`-th of its time (an event that decides
/// nothing, once at all of it; a ring group's offer to three agents is one
/// contact's). Beside the scenario's own figures, never instead of them:
/// the last decision of such an event is out only when the whole event is.
#[derive(Default)]
pub(crate) struct PerDecision(Option<Histogram<u64>>);

impl PerDecision {
    pub(crate) fn record(&mut self, decisions: usize, ns: u64) {
        let n = decisions.max(1) as u64;
        let _ = self.0.get_or_insert_with(histogram).record_n((ns / n).max(1), n);
    }

    pub(crate) fn report(&self) -> Value {
        self.0.as_ref().map_or(Value::Null, |h| {
            let mut s = stats(h, false);
            s.remove("truncated");
            Value::Object(s)
        })
    }
}

/// Nanoseconds, 1 ns to 1 hour at 3 significant digits (longer is clamped).
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("histogram")
}

pub(crate) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

pub(crate) fn ms(d: Duration) -> f64 {
    round3(d.as_secs_f64() * 1000.0)
}

/// count, mean, p50, p99, p99.9 and max in microseconds.
pub(crate) fn stats(h: &Histogram<u64>, truncated: bool) -> Map<String, Value> {
    let us = |ns: f64| round3(ns / 1000.0);
    let mut m = Map::new();
    let n = h.len();
    m.insert("count".into(), json!(n));
    let q = |p: f64| if n == 0 { 0.0 } else { us(h.value_at_quantile(p) as f64) };
    m.insert("mean_us".into(), json!(if n == 0 { 0.0 } else { us(h.mean()) }));
    m.insert("p50_us".into(), json!(q(0.50)));
    m.insert("p99_us".into(), json!(q(0.99)));
    m.insert("p999_us".into(), json!(q(0.999)));
    m.insert("max_us".into(), json!(if n == 0 { 0.0 } else { us(h.max() as f64) }));
    m.insert("truncated".into(), json!(truncated));
    m
}

/// A computation of fixed length (no memory traffic, the same steps every
/// time) of about `micros` µs, timed `samples` times as the events are: its
/// p99 over its p50 is what this machine's scheduling and neighbours add to
/// the tail of any event of that length, whatever the code does. The
/// length matters: the share of events an interrupt lands in grows with
/// their length, and once it passes 1 % the p99 is the interrupt's cost,
/// not the event's. What an interrupt costs also depends on the event's
/// memory: see [`memory_walk_spread`].
pub(crate) fn fixed_work_spread(samples: usize, micros: u64) -> Map<String, Value> {
    fn work(n: u64) -> u64 {
        let mut x = std::hint::black_box(0x9e37_79b9_7f4a_7c15u64);
        for i in 0..n {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i ^ (x >> 29));
        }
        x
    }
    let (mut s, steps) = timed_spread(samples, micros, 200_000, |n| {
        std::hint::black_box(work(n));
    });
    s.insert("steps".into(), json!(steps));
    s
}

/// Times `run(steps)` `samples` times, `steps` making it about `micros` µs
/// (from the fastest of a few runs of `probe` steps); returns the stats and
/// `steps`.
fn timed_spread(samples: usize, micros: u64, probe: u64, mut run: impl FnMut(u64)) -> (Map<String, Value>, u64) {
    let fastest = (0..5)
        .map(|_| {
            let t = Instant::now();
            run(probe);
            t.elapsed().as_nanos().max(1) as u64
        })
        .min()
        .unwrap_or(1);
    let steps = (probe * micros * 1_000 / fastest).max(1);
    let mut h = histogram();
    for _ in 0..samples {
        let t = Instant::now();
        run(steps);
        h.saturating_record(t.elapsed().as_nanos() as u64);
    }
    (stats(&h, false), steps)
}

/// Like [`fixed_work_spread`], but each sample is a chain of dependent
/// loads at random places in 64 MiB (a random cycle through it), about
/// `micros` µs of cache and TLB misses as an event at this scale has: an
/// interrupt that lands inside it also costs what it evicts, which a
/// computation without memory traffic does not show. (Measured on these
/// virtual machines at 100 000 agents: 35–64 % of the freed-slot events
/// over 40 µs had an interrupt inside them, local timer interrupts, against
/// 1.3–1.6 % of the others, while a 20 µs computation kept a p99 of
/// 20.2–22.6 µs.)
pub(crate) fn memory_walk_spread(samples: usize, micros: u64, rng: &mut Rng) -> Map<String, Value> {
    const SLOTS: usize = 16 << 20;
    // Sattolo's shuffle: one cycle through every slot.
    let mut next: Vec<u32> = (0..SLOTS as u32).collect();
    for i in (1..SLOTS).rev() {
        let j = rng.below(i);
        next.swap(i, j);
    }
    let mut at = 0usize;
    let (mut s, steps) = timed_spread(samples, micros, 20_000, |n| {
        for _ in 0..n {
            at = next[at] as usize;
        }
        std::hint::black_box(at);
    });
    s.insert("loads".into(), json!(steps));
    s
}

/// Wall-time budget of one loop, with progress lines every few seconds.
pub(crate) struct Budget {
    pub(crate) label: String,
    pub(crate) start: Instant,
    pub(crate) limit: Duration,
    pub(crate) last_report: Instant,
    pub(crate) sched_start: (u64, u64),
}

/// This thread's time on a CPU and waiting for one, in ns
/// (`/proc/thread-self/schedstat`); zeros where unavailable.
pub(crate) fn sched_ns() -> (u64, u64) {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| {
            let mut f = s.split_whitespace().map(|x| x.parse::<u64>().ok());
            Some((f.next()??, f.next()??))
        })
        .unwrap_or((0, 0))
}

impl Budget {
    pub(crate) fn new(agents: usize, name: &str, limit: Duration) -> Budget {
        let label = format!("[routing_scale agents={agents}] {name}");
        eprintln!("{label}: start");
        let now = Instant::now();
        Budget {
            label,
            start: now,
            limit,
            last_report: now,
            sched_start: sched_ns(),
        }
    }

    pub(crate) fn over(&self) -> bool {
        self.start.elapsed() >= self.limit
    }

    pub(crate) fn progress(&mut self, what: impl FnOnce() -> String) {
        if self.last_report.elapsed() >= Duration::from_secs(5) {
            self.last_report = Instant::now();
            eprintln!(
                "{}: {} ({:.0} s)",
                self.label,
                what(),
                self.start.elapsed().as_secs_f64()
            );
        }
    }

    /// Logs the outcome; returns the loop's wall time and how much of it
    /// this thread spent on a CPU and waiting for one (a high wait share
    /// means other work on the machine inflated the timings).
    pub(crate) fn done(&self, what: String) -> Map<String, Value> {
        let wall = self.start.elapsed().as_secs_f64();
        let (run, wait) = sched_ns();
        let share = |ns: u64| {
            if wall > 0.0 {
                round3(ns as f64 / 1e9 / wall)
            } else {
                0.0
            }
        };
        let cpu_share = share(run.saturating_sub(self.sched_start.0));
        let wait_share = share(wait.saturating_sub(self.sched_start.1));
        eprintln!(
            "{}: {} in {:.1} s (on cpu {:.0}%, waiting for cpu {:.0}%)",
            self.label,
            what,
            wall,
            cpu_share * 100.0,
            wait_share * 100.0
        );
        let mut m = Map::new();
        m.insert("loop_secs".into(), json!(round3(wall)));
        m.insert("cpu_share".into(), json!(cpu_share));
        m.insert("cpu_wait_share".into(), json!(wait_share));
        m
    }
}

// ----- memory -----

pub(crate) fn page_size() -> u64 {
    let kernel_page = || -> Option<u64> {
        let f = std::fs::File::open("/proc/self/smaps").ok()?;
        for line in std::io::BufReader::new(f).lines() {
            let line = line.ok()?;
            if let Some(rest) = line.strip_prefix("KernelPageSize:") {
                let kb: u64 = rest.split_whitespace().next()?.parse().ok()?;
                return Some(kb * 1024);
            }
        }
        None
    };
    kernel_page().unwrap_or(4096)
}

/// Resident set size (`/proc/self/statm` × page size), 0 where unavailable.
pub(crate) fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
        .map_or(0, |pages| pages * page_size())
}

/// The 1-minute load average (other work on the machine skews timings).
pub(crate) fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|l| l.parse().ok()))
        .unwrap_or(0.0)
}

/// Subject, text and customer strings held by open contacts.
pub(crate) fn content_bytes(e: &Engine) -> u64 {
    e.contacts()
        .map(|c| {
            let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
            (opt(&c.subject)
                + opt(&c.text)
                + c.customer.id.len()
                + opt(&c.customer.name)
                + opt(&c.customer.tier)
                + opt(&c.customer.language)) as u64
        })
        .sum()
}

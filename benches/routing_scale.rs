//! `cargo bench --bench routing_scale -- [--agents 1000,20000,100000] [--waiting 100000] [--budget-secs 120]
//! [--strategies longest_idle,least_loaded] [--units 100] [--model full] [--ageing-secs 60]`:
//! the pure routing core ([`Engine`], no NATS) at contact-centre scale.
//! Prints one JSON object per size on stdout (and, for several sizes, a
//! final `{"summary":…}` line); progress goes to stderr.
//!
//! Model: 5 000 queues (`q0000`…), 50 skills (`s00`…`s49`), each queue one
//! skill at level 1..=5, chat + email, taking the `--strategies` in turn
//! (default `longest_idle`, `least_loaded`; `all` adds `round_robin` and
//! `most_skilled`; the quick run uses all four; `--units N` gives every agent
//! a weighted-capacity budget of N with the default weights and e-mail
//! interruptible, as the quick run does with 100; `--model full` turns on
//! the rest of the routing model on every queue, as the quick run does:
//! ageing every 60 s (`--ageing-secs`) up to 9 with a starvation bound at
//! five steps, relaxation to level 1 after half a step and overflow to the
//! next queue after one and a half, business
//! hours (a Madrid calendar open 06:00–23:30 every day; the simulated
//! clock runs on a Monday morning), and affinity with a 5 s
//! waiting window, customers drawn from 20 000 so they return, and queue-wait
//! and resolution SLA clocks beside first response), SLA policy `std` (chat 1 h, email 24 h, so SLA timers are
//! not due), offers time out after 30 s and missing them never sets an agent
//! away. Agents have 3–4 skills at levels
//! 1..=10, chat capacity 1..=3, email 1..=4, all available. Everything is
//! drawn from a fixed-seed splitmix64, and the simulated clock advances 1 ms
//! per input, so two runs (and two engines) see the same inputs.
//!
//! Only the engine call is timed: events are built and decoded before it,
//! outputs and changes are taken (as the daemon does after every input) and
//! offers answered after it.
//!
//! Scenarios, in order, on one engine per size:
//! 1. `new_contact_free_agents`: `on_inbound` while agents are free (each
//!    contact offered at once, then accepted untimed);
//! 2. `saturate` (untimed accepts, reported for information) until every
//!    reachable slot is assigned, then `new_contact_into_backlog`:
//!    `on_inbound` until `--waiting` contacts wait;
//! 3. `agent_frees_slot`: `on_agent` `complete` of a random assigned contact
//!    (each frees a slot that should be offered the next fitting waiting
//!    contact; one new contact is added untimed after each);
//! 4. `offer_expiry`: `on_tick` at each expiry time of the offers made in 3;
//! 5. `tick_idle_100k_open`: `on_tick` with no timer due;
//! 6. memory: RSS before any contact and at the full backlog;
//! 7. restore: JSON decode of every contact and agent record, then
//!    `Engine::restore`;
//! 8. `fixed_work_10us`: no engine, a computation of fixed length (about
//!    10 µs) timed the same way: on a shared machine its p99 is well above
//!    its p50 too, which is how much of the events' tails the machine adds.
//!
//! `--budget-secs` caps the wall time of each fill/measure loop; a loop cut
//! short reports `"truncated": true` and how far it got. Several sizes run
//! in one child process each, so one size's freed memory does not blur the
//! next one's RSS.
//!
//! Without `--bench` (`cargo test --all-targets`) a small run checks that the
//! scenarios still do what they mean to, with no timing assertions.

use chrono::{DateTime, TimeZone, Utc};
use hdrhistogram::Histogram;
use omniroute::calendar::Calendar;
use omniroute::domain::wire::{decode_agent, decode_inbound, AgentEvent, InboundEvent};
use omniroute::domain::{AgentId, Channel, Presence, QueueName, SkillLevel, SkillName};
use omniroute::routing::spec::{
    Affinity, Ageing, AgentSpec, QueueSpec, RelaxStep, RouterSpec, SlaPolicy, Strategy, Units,
};
use omniroute::routing::{Agent, Contact, Engine, OutSubject, Outcome};
use omniroute::sla::ClockKind;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The daemon's allocator (see `src/main.rs`), so the figures are the daemon's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SKILLS: usize = 50;
/// `--model full`: every `--ageing-secs` (60 by default) waited one
/// priority step up to 9; past five of them ahead of everything newer;
/// relaxation steps at a half and one and a half of them.
fn model_ageing(step_ms: i64) -> Ageing {
    Ageing {
        step_ms: Some(step_ms),
        cap: 9,
        max_wait_ms: Some(5 * step_ms),
    }
}
const OFFER_TIMEOUT_SECS: f64 = 30.0;
const SEED: u64 = 0x6f6d_6e69_726f_7574;
/// High, so scenario 4 measures expiries rather than agents being set away
/// (which withdraws their other offers) after a few missed ones.
const MAX_MISSED_OFFERS: u32 = 1_000_000;

#[derive(Debug, Clone)]
struct Params {
    full: bool,
    agents: usize,
    queues: usize,
    /// Waiting contacts to reach in scenario 2.
    waiting: usize,
    /// Cap on scenario 1's contacts (also at most half the capacity).
    free_contacts: usize,
    /// K of scenario 3.
    completes: usize,
    idle_ticks: usize,
    /// Saturation stops after this many contacts in a row got no offer.
    saturation_streak: usize,
    budget: Duration,
    /// Queue `q` uses `strategies[q % len]`.
    strategies: Vec<Strategy>,
    /// Every agent's weighted capacity budget.
    units: Option<u32>,
    /// Ageing, relaxation, hours and affinity on (`--model full`).
    model: bool,
    /// `--ageing-secs`, in ms: the model's ageing step.
    ageing_ms: i64,
}

impl Params {
    fn full(agents: usize, o: &Options) -> Params {
        let (waiting, budget) = (o.waiting, o.budget);
        Params {
            strategies: o.strategies.clone(),
            units: o.units,
            model: o.model,
            ageing_ms: o.ageing_ms,
            full: true,
            agents,
            queues: 5_000,
            waiting,
            free_contacts: 20_000,
            completes: 10_000,
            idle_ticks: 1_000,
            saturation_streak: 5_000,
            budget,
        }
    }

    fn quick(budget: Duration) -> Params {
        Params {
            strategies: ALL_STRATEGIES.to_vec(),
            units: Some(100),
            model: true,
            ageing_ms: 60_000,
            full: false,
            agents: 1_000,
            queues: 200,
            waiting: 2_000,
            free_contacts: 1_000,
            completes: 500,
            idle_ticks: 200,
            saturation_streak: 300,
            budget,
        }
    }
}

// ----- deterministic input -----

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

struct World {
    spec: Arc<RouterSpec>,
    total_capacity: u64,
    /// Capacity of agents who fit at least one queue: what saturation can fill.
    reachable_capacity: u64,
}

fn build_world(p: &Params, rng: &mut Rng) -> World {
    let skills: Vec<SkillName> = (0..SKILLS)
        .map(|i| SkillName::try_from(format!("s{i:02}")).expect("skill name"))
        .collect();
    let mut channels = [false; 4];
    channels[Channel::Chat.index()] = true;
    channels[Channel::Email.index()] = true;
    let mut queues = BTreeMap::new();
    let mut queue_order = Vec::with_capacity(p.queues);
    let all_week: BTreeMap<String, Vec<String>> = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .map(|d| (d.to_string(), vec!["06:00-23:30".to_string()]))
        .collect();
    let hours = Arc::new(Calendar::parse("calendars.bench", "Europe/Madrid", &all_week, &[]).expect("calendar"));
    let mut min_level = [SkillLevel::MAX; SKILLS];
    for q in 0..p.queues {
        let name = QueueName::try_from(format!("q{q:04}")).expect("queue name");
        let skill = q % SKILLS;
        let level = rng.between(1, 5) as SkillLevel;
        min_level[skill] = min_level[skill].min(level);
        queues.insert(
            name.clone(),
            QueueSpec {
                name: name.clone(),
                channels,
                skills: BTreeMap::from([(skills[skill].clone(), level)]),
                priority: rng.between(0, 9) as u8,
                sla_policy: Some("std".into()),
                strategy: p.strategies[q % p.strategies.len()],
                ring_size: 3,
                offer_timeout_secs: Some(OFFER_TIMEOUT_SECS),
                ageing: if p.model {
                    model_ageing(p.ageing_ms)
                } else {
                    Default::default()
                },
                relax: if p.model {
                    vec![
                        RelaxStep {
                            after_ms: p.ageing_ms / 2,
                            skills: BTreeMap::from([(skills[skill].clone(), 1)]),
                            overflow: None,
                        },
                        RelaxStep {
                            after_ms: 3 * p.ageing_ms / 2,
                            skills: BTreeMap::new(),
                            overflow: Some(
                                QueueName::try_from(format!("q{:04}", (q + 1) % p.queues)).expect("queue name"),
                            ),
                        },
                    ]
                } else {
                    Vec::new()
                },
                admission: Default::default(),
                hours: p.model.then(|| Arc::clone(&hours)),
                closed_overflow: None,
                order_by_slack: false,
                relax_before_breach: false,
            },
        );
        queue_order.push(name);
    }
    let mut first_response_secs = [None; 4];
    first_response_secs[Channel::Chat.index()] = Some(3_600.0);
    first_response_secs[Channel::Email.index()] = Some(86_400.0);
    let mut policy = SlaPolicy::first_response("std", first_response_secs, vec![0.5, 0.75, 0.9]);
    if p.model {
        // Queue wait and resolution clocks too (none due within the run).
        policy.targets[ClockKind::QueueWait.index()] = first_response_secs;
        policy.targets[ClockKind::Resolution.index()] = first_response_secs.map(|t| t.map(|t| 2.0 * t));
    }
    let policies = BTreeMap::from([("std".to_string(), policy)]);
    let mut agents = Vec::with_capacity(p.agents);
    let (mut total_capacity, mut reachable_capacity) = (0u64, 0u64);
    for a in 0..p.agents {
        let n = rng.between(3, 4) as usize;
        let mut picked: BTreeMap<usize, SkillLevel> = BTreeMap::new();
        while picked.len() < n {
            let s = rng.below(SKILLS);
            let level = rng.between(1, 10) as SkillLevel;
            picked.entry(s).or_insert(level);
        }
        let mut capacity = [0u32; 4];
        capacity[Channel::Chat.index()] = rng.between(1, 3) as u32;
        capacity[Channel::Email.index()] = rng.between(1, 4) as u32;
        let cap: u64 = capacity.iter().map(|c| *c as u64).sum();
        total_capacity += cap;
        if picked.iter().any(|(s, l)| *l >= min_level[*s]) {
            reachable_capacity += cap;
        }
        let id = AgentId::try_from(format!("a{a:06}")).expect("agent id");
        agents.push(AgentSpec {
            name: format!("Agent {a}"),
            id,
            skills: picked.into_iter().map(|(s, l)| (skills[s].clone(), l)).collect(),
            capacity,
            units: p.units,
            initial_status: Presence::Available,
        });
    }
    let spec = RouterSpec {
        queues: queues.into_iter().collect(),
        queue_order,
        rules: Vec::new(),
        policies,
        agents,
        offer_timeout_secs: OFFER_TIMEOUT_SECS,
        channel_offer_timeout_secs: [None; 4],
        channel_wrap_up_secs: [None; 4],
        max_missed_offers: MAX_MISSED_OFFERS,
        units: Units {
            interruptible: [true, false, false, false],
            ..Units::default()
        },
        sla_rules: Vec::new(),
        default_sla_policy: None,
        affinity: if p.model {
            Affinity {
                lookback_ms: Some(3_600_000),
                wait_ms: Some(5_000),
                ..Affinity::default()
            }
        } else {
            Affinity::default()
        },
    };
    World {
        spec: Arc::new(spec),
        total_capacity,
        reachable_capacity,
    }
}

const TIERS: [&str; 3] = ["gold", "silver", "standard"];
const LANGUAGES: [&str; 4] = ["en", "de", "fr", "es-MX"];
const TEXTS: [&str; 4] = [
    "Hello, my parcel has not arrived yet; could you check it?",
    "I was charged twice for the same order, please refund one.",
    "How do I change the delivery address of my open order?",
    "The app logs me out every time I open the payment screen.",
];

/// Inbound `message` events for new conversations.
struct ContactSource {
    rng: Rng,
    queues: usize,
    /// Customers drawn from; few enough with `--model full` that they return.
    customers: usize,
    next: u64,
    /// Bytes of subject, text and customer strings put in so far.
    content_bytes: u64,
}

impl ContactSource {
    fn next_event(&mut self) -> InboundEvent {
        let i = self.next;
        self.next += 1;
        let queue = format!("q{:04}", self.rng.below(self.queues));
        let channel = if self.rng.next() & 1 == 0 { "chat" } else { "email" };
        let priority = self.rng.below(10);
        let subject = format!("Question about order {i:08}");
        let text = TEXTS[self.rng.below(TEXTS.len())];
        let customer = format!("cust-{:07}", self.rng.below(self.customers));
        let tier = TIERS[self.rng.below(TIERS.len())];
        let language = LANGUAGES[self.rng.below(LANGUAGES.len())];
        self.content_bytes += (subject.len() + text.len() + customer.len() + tier.len() + language.len()) as u64;
        let payload = json!({
            "v": 1, "id": format!("m-{i:09}"), "type": "message", "channel": channel,
            "conversation_id": format!("conv-{i:09}"), "queue": queue, "priority": priority,
            "customer": {"id": customer, "tier": tier, "language": language},
            "subject": subject, "text": text,
        });
        decode_inbound(channel, payload.to_string().as_bytes()).expect("generated inbound event decodes")
    }
}

// ----- driving the engine -----

#[derive(Clone, Copy, PartialEq)]
enum OnOffer {
    /// Accept at once (untimed): the slot becomes assigned.
    Accept,
    /// Leave the offer outstanding, remembering when it expires.
    Hold,
}

struct HeldOffer {
    expires_at: DateTime<Utc>,
}

#[derive(Default)]
struct Drained {
    offers: usize,
    expired: usize,
    outputs: usize,
    rejected: usize,
}

struct Sim {
    e: Engine,
    now: DateTime<Utc>,
    source: ContactSource,
    rng: Rng,
    offer_timeout: chrono::Duration,
    /// Accepted contacts: (agent, contact id).
    assigned: Vec<(AgentId, String)>,
    held: Vec<HeldOffer>,
    seq: u64,
}

/// The (contact id, agent) of an offer on an agent's desktop subject.
fn offer_of(payload: &[u8]) -> Option<(String, AgentId)> {
    let v: Value = serde_json::from_slice(payload).ok()?;
    if v.get("kind")?.as_str()? != "offer" {
        return None;
    }
    let contact = v.get("contact_id")?.as_str()?.to_string();
    let agent = AgentId::try_from(v.get("agent_id")?.as_str()?).ok()?;
    Some((contact, agent))
}

impl Sim {
    fn advance(&mut self) -> DateTime<Utc> {
        self.now += chrono::Duration::milliseconds(1);
        self.now
    }

    fn agent_event(&mut self, agent: &AgentId, ty: &str, contact_id: &str) -> AgentEvent {
        self.seq += 1;
        let payload = json!({"v": 1, "id": format!("{ty}-{}", self.seq), "type": ty, "agent_id": agent, "contact_id": contact_id});
        decode_agent(agent.as_str(), ty, payload.to_string().as_bytes()).expect("generated agent event decodes")
    }

    /// Takes outputs and changes, as the daemon does after every input, and
    /// answers the offers among them (accepts are applied at `at`).
    fn settle(&mut self, at: DateTime<Utc>, on_offer: OnOffer) -> Drained {
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
                            match on_offer {
                                OnOffer::Accept => accept.push((agent, contact)),
                                OnOffer::Hold => self.held.push(HeldOffer {
                                    expires_at: at + self.offer_timeout,
                                }),
                            }
                        }
                    }
                    OutSubject::ContactEvent(what) if *what == "offer_expired" => d.expired += 1,
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

    /// One new contact; `on_inbound` timed into `h` when given.
    fn inbound(&mut self, h: Option<&mut Histogram<u64>>, on_offer: OnOffer) -> Drained {
        let ev = self.source.next_event();
        let now = self.advance();
        let t = Instant::now();
        let r = self.e.on_inbound(&ev, now);
        let took = t.elapsed();
        if let Some(h) = h {
            h.saturating_record(took.as_nanos() as u64);
        }
        assert!(
            matches!(r, Ok(Outcome::Opened { .. })),
            "a new conversation opens a contact: {r:?}"
        );
        self.settle(now, on_offer)
    }
}

/// Nanoseconds, 1 ns to 1 hour at 3 significant digits (longer is clamped).
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("histogram")
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn ms(d: Duration) -> f64 {
    round3(d.as_secs_f64() * 1000.0)
}

/// count, mean, p50, p99, p99.9 and max in microseconds.
fn stats(h: &Histogram<u64>, truncated: bool) -> Map<String, Value> {
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
/// time) of about 10 µs, timed `samples` times as the events are: its p99
/// over its p50 is what this machine's scheduling and neighbours add to the
/// tail of any event of that length, whatever the code does.
fn fixed_work_spread(samples: usize) -> Map<String, Value> {
    fn work(n: u64) -> u64 {
        let mut x = std::hint::black_box(0x9e37_79b9_7f4a_7c15u64);
        for i in 0..n {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i ^ (x >> 29));
        }
        x
    }
    // Steps per 10 µs, from the fastest of a few long runs.
    let probe = 200_000u64;
    let fastest = (0..5)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(work(probe));
            t.elapsed().as_nanos().max(1) as u64
        })
        .min()
        .unwrap_or(1);
    let steps = (probe * 10_000 / fastest).max(1);
    let mut h = histogram();
    for _ in 0..samples {
        let t = Instant::now();
        std::hint::black_box(work(steps));
        h.saturating_record(t.elapsed().as_nanos() as u64);
    }
    let mut s = stats(&h, false);
    s.insert("steps".into(), json!(steps));
    s
}

/// Wall-time budget of one loop, with progress lines every few seconds.
struct Budget {
    label: String,
    start: Instant,
    limit: Duration,
    last_report: Instant,
    sched_start: (u64, u64),
}

/// This thread's time on a CPU and waiting for one, in ns
/// (`/proc/thread-self/schedstat`); zeros where unavailable.
fn sched_ns() -> (u64, u64) {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| {
            let mut f = s.split_whitespace().map(|x| x.parse::<u64>().ok());
            Some((f.next()??, f.next()??))
        })
        .unwrap_or((0, 0))
}

impl Budget {
    fn new(agents: usize, name: &str, limit: Duration) -> Budget {
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

    fn over(&self) -> bool {
        self.start.elapsed() >= self.limit
    }

    fn progress(&mut self, what: impl FnOnce() -> String) {
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
    fn done(&self, what: String) -> Map<String, Value> {
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

fn page_size() -> u64 {
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
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
        .map_or(0, |pages| pages * page_size())
}

/// The 1-minute load average (other work on the machine skews timings).
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|l| l.parse().ok()))
        .unwrap_or(0.0)
}

/// Subject, text and customer strings held by open contacts.
fn content_bytes(e: &Engine) -> u64 {
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

// ----- one size -----

fn run_size(p: &Params) -> Value {
    let wall = Instant::now();
    let load_at_start = load_average();
    let mut rng = Rng(SEED ^ p.agents as u64);
    let world = build_world(p, &mut rng);
    let start = Utc
        .with_ymd_and_hms(2030, 1, 7, 9, 0, 0)
        .single()
        .expect("fixed start instant");
    eprintln!(
        "[routing_scale agents={}] queues={} skills={SKILLS} capacity={} (reachable {}) waiting target={} budget={} s",
        p.agents,
        p.queues,
        world.total_capacity,
        world.reachable_capacity,
        p.waiting,
        p.budget.as_secs()
    );
    let t = Instant::now();
    let mut e = Engine::new(Arc::clone(&world.spec), start);
    let engine_new = t.elapsed();
    e.take_outputs();
    e.take_changes();
    let rss_before = rss_bytes();
    let mut sim = Sim {
        e,
        now: start,
        source: ContactSource {
            rng: Rng(rng.next()),
            queues: p.queues,
            customers: if p.model { 20_000 } else { 5_000_000 },
            next: 0,
            content_bytes: 0,
        },
        rng: Rng(rng.next()),
        offer_timeout: chrono::Duration::milliseconds((OFFER_TIMEOUT_SECS * 1000.0) as i64),
        assigned: Vec::new(),
        held: Vec::new(),
        seq: 0,
    };
    let mut scenarios = Map::new();
    let mut truncated: Vec<&str> = Vec::new();

    // 1. New contacts while agents are free: each is offered at once.
    let n_free = p.free_contacts.min((world.total_capacity / 2) as usize);
    let mut h = histogram();
    let mut offered_at_once = 0usize;
    let mut b = Budget::new(p.agents, "new_contact_free_agents", p.budget);
    let mut cut = false;
    for i in 0..n_free {
        if b.over() {
            cut = true;
            break;
        }
        if sim.inbound(Some(&mut h), OnOffer::Accept).offers > 0 {
            offered_at_once += 1;
        }
        b.progress(|| format!("{i}/{n_free} contacts"));
    }
    let timing = b.done(format!("{} contacts, {offered_at_once} offered at once", h.len()));
    let mut s = stats(&h, cut);
    s.extend(timing);
    s.insert("contacts".into(), json!(n_free));
    s.insert("offered_at_once".into(), json!(offered_at_once));
    scenarios.insert("new_contact_free_agents".into(), Value::Object(s));
    if cut {
        truncated.push("new_contact_free_agents");
    }

    // 2a. Saturate: add contacts, accepting every offer, until every slot an
    // agent can be offered is assigned (or offers stop coming).
    let mut h = histogram();
    let mut b = Budget::new(p.agents, "saturate", p.budget);
    let mut streak = 0usize;
    let mut cut = false;
    let stop_reason = loop {
        if sim.assigned.len() as u64 >= world.reachable_capacity {
            break "all reachable capacity assigned";
        }
        if streak >= p.saturation_streak {
            break "no offer for a streak of contacts";
        }
        if sim.e.waiting_len() >= p.waiting {
            break "waiting target reached";
        }
        if b.over() {
            cut = true;
            break "budget";
        }
        if sim.inbound(Some(&mut h), OnOffer::Accept).offers > 0 {
            streak = 0;
        } else {
            streak += 1;
        }
        b.progress(|| {
            format!(
                "assigned {}/{} reachable, waiting {}",
                sim.assigned.len(),
                world.reachable_capacity,
                sim.e.waiting_len()
            )
        });
    };
    let timing = b.done(format!(
        "assigned {}/{} reachable ({stop_reason}), waiting {}",
        sim.assigned.len(),
        world.reachable_capacity,
        sim.e.waiting_len()
    ));
    let mut s = stats(&h, cut);
    s.extend(timing);
    s.insert("assigned".into(), json!(sim.assigned.len()));
    s.insert("reachable_capacity".into(), json!(world.reachable_capacity));
    s.insert("total_capacity".into(), json!(world.total_capacity));
    s.insert(
        "saturated".into(),
        json!(sim.assigned.len() as u64 >= world.reachable_capacity),
    );
    s.insert("stop".into(), json!(stop_reason));
    s.insert("waiting_after".into(), json!(sim.e.waiting_len()));
    scenarios.insert("saturate".into(), Value::Object(s));
    if cut {
        truncated.push("saturate");
    }

    // 2b. Fill the backlog.
    let mut h = histogram();
    let mut b = Budget::new(p.agents, "new_contact_into_backlog", p.budget);
    let mut cut = false;
    let mut offers_in_fill = 0usize;
    while sim.e.waiting_len() < p.waiting {
        if b.over() {
            cut = true;
            break;
        }
        offers_in_fill += sim.inbound(Some(&mut h), OnOffer::Accept).offers;
        b.progress(|| format!("waiting {}/{}", sim.e.waiting_len(), p.waiting));
    }
    let timing = b.done(format!("{} contacts, waiting {}", h.len(), sim.e.waiting_len()));
    let mut s = stats(&h, cut);
    s.extend(timing);
    s.insert("waiting_reached".into(), json!(sim.e.waiting_len()));
    s.insert("waiting_target".into(), json!(p.waiting));
    s.insert("open_contacts".into(), json!(sim.e.contacts_len()));
    s.insert("offers_during_fill".into(), json!(offers_in_fill));
    scenarios.insert("new_contact_into_backlog".into(), Value::Object(s));
    if cut {
        truncated.push("new_contact_into_backlog");
    }

    // 6. Memory at the full backlog.
    let rss_after = rss_bytes();
    let open_at_rss = sim.e.contacts_len();
    let waiting_at_rss = sim.e.waiting_len();
    let content_open = content_bytes(&sim.e);
    let per_open = |bytes: u64| {
        if open_at_rss == 0 {
            0.0
        } else {
            (bytes as f64 / open_at_rss as f64).round()
        }
    };
    let bytes_per_open_contact = per_open(rss_after.saturating_sub(rss_before));
    eprintln!(
        "[routing_scale agents={}] memory: rss {} MiB → {} MiB, {open_at_rss} open, {bytes_per_open_contact} B per open contact ({} B of content)",
        p.agents,
        rss_before >> 20,
        rss_after >> 20,
        per_open(content_open)
    );

    // 3. Completes free slots under the backlog; the offers they cause stay
    // outstanding for scenario 4.
    let k = p.completes.min(sim.assigned.len());
    let mut h = histogram();
    let mut b = Budget::new(p.agents, "agent_frees_slot", p.budget);
    let mut cut = false;
    let (mut refilled, mut offers_made, mut not_applied) = (0usize, 0usize, 0usize);
    for i in 0..k {
        if b.over() || sim.assigned.is_empty() {
            cut = b.over();
            break;
        }
        let pick = sim.rng.below(sim.assigned.len());
        let (agent, contact) = sim.assigned.swap_remove(pick);
        let ev = sim.agent_event(&agent, "complete", &contact);
        let now = sim.advance();
        let t = Instant::now();
        let r = sim.e.on_agent(&ev, now);
        h.saturating_record(t.elapsed().as_nanos() as u64);
        if !matches!(r, Ok(Outcome::Applied)) {
            not_applied += 1;
        }
        let d = sim.settle(now, OnOffer::Hold);
        offers_made += d.offers;
        if d.offers > 0 {
            refilled += 1;
        }
        offers_made += sim.inbound(None, OnOffer::Hold).offers;
        b.progress(|| format!("{i}/{k} completes, {refilled} slots re-offered"));
    }
    let timing = b.done(format!("{} completes, {refilled} slots re-offered", h.len()));
    let mut s = stats(&h, cut);
    s.extend(timing);
    s.insert("completes_requested".into(), json!(p.completes));
    s.insert("slots_reoffered".into(), json!(refilled));
    s.insert("offers_outstanding".into(), json!(offers_made));
    s.insert("not_applied".into(), json!(not_applied));
    s.insert("waiting_after".into(), json!(sim.e.waiting_len()));
    scenarios.insert("agent_frees_slot".into(), Value::Object(s));
    if cut {
        truncated.push("agent_frees_slot");
    }

    // 4. Offer expiry: tick at each expiry time of scenario 3's offers.
    let mut expiries: Vec<DateTime<Utc>> = std::mem::take(&mut sim.held).iter().map(|o| o.expires_at).collect();
    let targeted = expiries.len();
    expiries.sort();
    expiries.dedup();
    let mut h = histogram();
    let mut b = Budget::new(p.agents, "offer_expiry", p.budget);
    let mut cut = false;
    let (mut expired, mut reoffered) = (0usize, 0usize);
    for (i, at) in expiries.iter().enumerate() {
        if b.over() {
            cut = true;
            break;
        }
        let now = (*at).max(sim.now);
        sim.now = now;
        let t = Instant::now();
        sim.e.on_tick(now);
        h.saturating_record(t.elapsed().as_nanos() as u64);
        let d = sim.settle(now, OnOffer::Hold);
        expired += d.expired;
        reoffered += d.offers;
        b.progress(|| format!("{i}/{} ticks, {expired} offers expired", expiries.len()));
    }
    let timing = b.done(format!("{} ticks, {expired}/{targeted} offers expired", h.len()));
    let not_available = sim.e.agents().filter(|a| a.status != Presence::Available).count();
    let mut s = stats(&h, cut);
    s.extend(timing);
    s.insert("offers_targeted".into(), json!(targeted));
    s.insert("offers_expired".into(), json!(expired));
    s.insert("reoffered".into(), json!(reoffered));
    s.insert("agents_not_available_after".into(), json!(not_available));
    scenarios.insert("offer_expiry".into(), Value::Object(s));
    if cut {
        truncated.push("offer_expiry");
    }

    // 5. Idle ticks: nothing due.
    if sim.e.next_deadline().is_some_and(|d| d <= sim.now) {
        sim.e.on_tick(sim.now);
        sim.settle(sim.now, OnOffer::Hold);
    }
    let now = sim.now;
    let mut h = histogram();
    let mut b = Budget::new(p.agents, "tick_idle_100k_open", p.budget);
    let mut cut = false;
    let mut busy = 0usize;
    for i in 0..p.idle_ticks {
        if b.over() {
            cut = true;
            break;
        }
        let t = Instant::now();
        sim.e.on_tick(now);
        h.saturating_record(t.elapsed().as_nanos() as u64);
        if sim.settle(now, OnOffer::Hold).outputs > 0 {
            busy += 1;
        }
        b.progress(|| format!("{i}/{} ticks", p.idle_ticks));
    }
    let timing = b.done(format!("{} ticks", h.len()));
    let mut s = stats(&h, cut);
    s.extend(timing);
    s.insert("open_contacts".into(), json!(sim.e.contacts_len()));
    s.insert("waiting".into(), json!(sim.e.waiting_len()));
    s.insert("ticks_with_output".into(), json!(busy));
    scenarios.insert("tick_idle_100k_open".into(), Value::Object(s));
    if cut {
        truncated.push("tick_idle_100k_open");
    }

    // 8. The machine's own spread, for reading the tails above.
    scenarios.insert(
        "fixed_work_10us".into(),
        Value::Object(fixed_work_spread(p.idle_ticks * 20)),
    );

    // 7. Restore from the records the key-value bucket would hold.
    let contact_records: Vec<Vec<u8>> = sim
        .e
        .contacts()
        .map(|c| serde_json::to_vec(c).expect("contact serializes"))
        .collect();
    let agent_records: Vec<Vec<u8>> = sim
        .e
        .agents()
        .map(|a| serde_json::to_vec(a).expect("agent serializes"))
        .collect();
    let record_bytes: usize = contact_records.iter().chain(&agent_records).map(Vec::len).sum();
    let t = Instant::now();
    let contacts: Vec<Contact> = contact_records
        .iter()
        .map(|r| serde_json::from_slice(r).expect("contact record decodes"))
        .collect();
    let agents: Vec<Agent> = agent_records
        .iter()
        .map(|r| serde_json::from_slice(r).expect("agent record decodes"))
        .collect();
    let decode = t.elapsed();
    drop((contact_records, agent_records));
    let t = Instant::now();
    let restored = Engine::restore(Arc::clone(&world.spec), contacts, agents, sim.now);
    let restore = t.elapsed();
    let restored_ok = restored.contacts_len() == sim.e.contacts_len() && restored.waiting_len() == sim.e.waiting_len();
    eprintln!(
        "[routing_scale agents={}] restore: {} contacts, decode {:.0} ms, engine {:.0} ms",
        p.agents,
        restored.contacts_len(),
        ms(decode),
        ms(restore)
    );
    let restore_contacts = restored.contacts_len();
    drop(restored);

    json!({
        "bench": "routing_scale",
        "mode": if p.full { "full" } else { "quick" },
        "agents": p.agents,
        "queues": p.queues,
        "strategies": p.strategies.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "units": p.units,
        "model": if p.model { "full" } else { "basic" },
        "ageing_secs": p.ageing_ms as f64 / 1000.0,
        "skills": SKILLS,
        "total_capacity": world.total_capacity,
        "reachable_capacity": world.reachable_capacity,
        "waiting_target": p.waiting,
        "budget_secs": p.budget.as_secs(),
        "max_missed_offers": MAX_MISSED_OFFERS,
        "engine_new_ms": ms(engine_new),
        "scenarios": scenarios,
        "rss_before_bytes": rss_before,
        "rss_bytes": rss_after,
        "open_contacts_at_rss": open_at_rss,
        "waiting_at_rss": waiting_at_rss,
        "bytes_per_open_contact": bytes_per_open_contact,
        "content_bytes_open": content_open,
        "content_bytes_per_open_contact": per_open(content_open),
        "content_bytes_total_in": sim.source.content_bytes,
        "contacts_created": sim.source.next,
        "restore_contacts": restore_contacts,
        "restore_record_bytes": record_bytes,
        "restore_matches": restored_ok,
        "restore_decode_ms": ms(decode),
        "restore_engine_ms": ms(restore),
        "truncated": truncated,
        "wall_secs": round3(wall.elapsed().as_secs_f64()),
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "load_average_1m": [load_at_start, load_average()],
    })
}

// ----- command line -----

struct Options {
    agents: Vec<usize>,
    waiting: usize,
    budget: Duration,
    strategies: Vec<Strategy>,
    units: Option<u32>,
    model: bool,
    ageing_ms: i64,
}

const ALL_STRATEGIES: [Strategy; 5] = [
    Strategy::LongestIdle,
    Strategy::LeastLoaded,
    Strategy::RoundRobin,
    Strategy::MostSkilled,
    Strategy::RingGroup,
];

fn parse_options(args: &[String]) -> Options {
    let mut o = Options {
        agents: vec![1_000, 20_000, 100_000],
        waiting: 100_000,
        budget: Duration::from_secs(120),
        strategies: ALL_STRATEGIES[..2].to_vec(),
        units: None,
        model: false,
        ageing_ms: 60_000,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (key, inline) = match a.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (a.as_str(), None),
        };
        if !matches!(
            key,
            "--agents" | "--waiting" | "--budget-secs" | "--strategies" | "--units" | "--model" | "--ageing-secs"
        ) {
            continue;
        }
        let Some(v) = inline.or_else(|| it.next().cloned()) else {
            eprintln!("routing_scale: {key} needs a value");
            std::process::exit(2);
        };
        let bad = |what: &str| -> ! {
            eprintln!("routing_scale: {key} {v:?}: {what}");
            std::process::exit(2)
        };
        match key {
            "--agents" => {
                o.agents = v
                    .split(',')
                    .map(|n| n.trim().replace('_', "").parse::<usize>())
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap_or_else(|_| bad("expected a comma-separated list of agent counts"));
                if o.agents.is_empty() || o.agents.contains(&0) {
                    bad("agent counts must be positive");
                }
            }
            "--units" => {
                o.units = Some(
                    v.parse()
                        .ok()
                        .filter(|n| (1..=1_000_000).contains(n))
                        .unwrap_or_else(|| bad("expected a budget of 1..1000000 units")),
                )
            }
            "--ageing-secs" => {
                let secs: f64 = v.parse().unwrap_or_else(|_| bad("expected seconds"));
                if !(secs.is_finite() && (1.0..=86_400.0).contains(&secs)) {
                    bad("expected 1..86400 seconds");
                }
                o.ageing_ms = (secs * 1000.0) as i64;
            }
            "--model" => {
                o.model = match v.as_str() {
                    "full" => true,
                    "basic" => false,
                    _ => bad("expected full or basic"),
                }
            }
            "--strategies" if v == "all" => o.strategies = ALL_STRATEGIES.to_vec(),
            "--strategies" => {
                o.strategies = v
                    .split(',')
                    .map(|n| ALL_STRATEGIES.iter().copied().find(|s| s.as_str() == n.trim()))
                    .collect::<Option<Vec<_>>>()
                    .unwrap_or_else(|| bad("expected `all` or strategy names separated by commas"));
            }
            "--waiting" => {
                o.waiting = v
                    .replace('_', "")
                    .parse()
                    .unwrap_or_else(|_| bad("expected a number of contacts"))
            }
            _ => {
                let s: f64 = v.parse().unwrap_or_else(|_| bad("expected seconds"));
                if !(s.is_finite() && s > 0.0) {
                    bad("expected a positive number of seconds");
                }
                o.budget = Duration::from_secs_f64(s);
            }
        }
    }
    o
}

/// Every number in the report is finite, and nothing is null.
fn assert_finite(v: &Value, path: &str) {
    match v {
        Value::Null => panic!("{path} is null"),
        Value::Number(n) => assert!(n.as_f64().is_some_and(f64::is_finite), "{path} = {n} is not finite"),
        Value::Array(a) => a.iter().for_each(|x| assert_finite(x, path)),
        Value::Object(o) => o.iter().for_each(|(k, x)| assert_finite(x, &format!("{path}.{k}"))),
        _ => {}
    }
}

/// The quick run did what each scenario is meant to do.
fn check_quick(r: &Value, p: &Params) {
    assert_finite(r, "report");
    let sc = |name: &str, field: &str| r["scenarios"][name][field].as_u64().unwrap_or(0);
    assert!(sc("new_contact_free_agents", "count") > 0, "scenario 1 ran");
    assert!(
        sc("new_contact_free_agents", "offered_at_once") * 10 >= sc("new_contact_free_agents", "count") * 9,
        "with free agents nearly every contact is offered at once: {}",
        r["scenarios"]["new_contact_free_agents"]
    );
    assert!(
        sc("new_contact_into_backlog", "waiting_reached") >= p.waiting as u64,
        "backlog reached: {}",
        r["scenarios"]["new_contact_into_backlog"]
    );
    assert!(sc("agent_frees_slot", "count") > 0, "completes ran");
    assert!(
        sc("agent_frees_slot", "slots_reoffered") > 0,
        "freed slots were offered waiting contacts: {}",
        r["scenarios"]["agent_frees_slot"]
    );
    assert!(
        sc("offer_expiry", "offers_expired") > 0,
        "offers expired: {}",
        r["scenarios"]["offer_expiry"]
    );
    assert_eq!(
        sc("tick_idle_100k_open", "count"),
        p.idle_ticks as u64,
        "idle ticks ran"
    );
    assert_eq!(r["restore_matches"], json!(true), "restore rebuilt the same contacts");
    assert!(
        r["restore_contacts"].as_u64().unwrap_or(0) >= p.waiting as u64,
        "restore saw the backlog"
    );
}

fn summary(reports: &[Value]) -> Value {
    let sizes: Vec<Value> = reports
        .iter()
        .map(|r| {
            let mut per = Map::new();
            if let Some(sc) = r["scenarios"].as_object() {
                for (name, s) in sc {
                    per.insert(
                        name.clone(),
                        json!({"count": s["count"], "p50_us": s["p50_us"], "p99_us": s["p99_us"], "mean_us": s["mean_us"], "truncated": s["truncated"], "cpu_wait_share": s["cpu_wait_share"]}),
                    );
                }
            }
            json!({
                "agents": r["agents"],
                "scenarios": per,
                "bytes_per_open_contact": r["bytes_per_open_contact"],
                "open_contacts_at_rss": r["open_contacts_at_rss"],
                "restore_decode_ms": r["restore_decode_ms"],
                "restore_engine_ms": r["restore_engine_ms"],
                "truncated": r["truncated"],
            })
        })
        .collect();
    json!({ "summary": sizes })
}

/// Runs one size in a child process (fresh heap, honest RSS) and passes its
/// output through; the report, `None` if the child gave none, an error if it
/// could not be started.
fn run_child(agents: usize, o: &Options) -> std::io::Result<Option<Value>> {
    let out = Command::new(std::env::current_exe()?)
        .args([
            "--bench".to_string(),
            "--agents".to_string(),
            agents.to_string(),
            "--waiting".to_string(),
            o.waiting.to_string(),
            "--budget-secs".to_string(),
            o.budget.as_secs_f64().to_string(),
            "--strategies".to_string(),
            o.strategies.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(","),
        ])
        .args(o.units.map(|u| format!("--units={u}")))
        .args(o.model.then_some("--model=full"))
        .arg(format!("--ageing-secs={}", o.ageing_ms as f64 / 1000.0))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut report = None;
    for line in text.lines() {
        println!("{line}");
        if let Ok(v) = serde_json::from_str::<Value>(line) {
            if v.get("agents").is_some() {
                report = Some(v);
            }
        }
    }
    if !out.status.success() {
        eprintln!("routing_scale: the run for {agents} agents failed ({})", out.status);
    }
    Ok(report)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench`; `cargo test --all-targets` does not,
    // and then a quick run checks the benchmark still works.
    let full = args.iter().any(|a| a == "--bench");
    let o = parse_options(&args);
    if !full {
        let p = Params::quick(o.budget);
        let r = run_size(&p);
        println!("{r}");
        check_quick(&r, &p);
        return;
    }
    if let [agents] = o.agents[..] {
        println!("{}", run_size(&Params::full(agents, &o)));
        return;
    }
    let mut reports = Vec::new();
    for &agents in &o.agents {
        match run_child(agents, &o) {
            Ok(Some(r)) => reports.push(r),
            Ok(None) => {}
            Err(e) => {
                eprintln!("routing_scale: could not start a child ({e}); running {agents} agents in this process");
                let r = run_size(&Params::full(agents, &o));
                println!("{r}");
                reports.push(r);
            }
        }
    }
    println!("{}", summary(&reports));
}

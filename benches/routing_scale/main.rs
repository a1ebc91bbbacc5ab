//! `cargo bench --bench routing_scale -- [--agents 1000,20000,100000] [--waiting 100000] [--budget-secs 120]
//! [--strategies longest_idle,least_loaded] [--units 100] [--model full] [--ageing-secs 60]
//! [--timers deadline|input] [--clock spread|steady]`:
//! the pure routing core ([`Engine`], no NATS) at contact-centre scale.
//! Prints one JSON object per size on stdout (and, for several sizes, a
//! final `{"summary":…}` line); progress goes to stderr.
//!
//! Model: 5 000 queues (`q0000`…), 50 skills (`s00`…`s49`), each queue one
//! skill at level 1..=5, chat + email, taking the `--strategies` in turn
//! (default `longest_idle`, `least_loaded`; `all` adds `round_robin`,
//! `most_skilled` and `ring_group`, a fifth of the queues ringing three
//! agents at once; the quick run uses all five; `--units N` gives every agent
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
//! drawn from a fixed-seed splitmix64, so two runs (and two engines) see
//! the same inputs. The simulated clock advances 0.5–1.5 ms per input
//! (uniform, to the nanosecond; 1 ms on average), as arrivals do: with a
//! steady 1 ms step (`--clock steady`) every input, and so every offer's
//! expiry and every relaxation step, falls on a whole millisecond, and with
//! one contact arriving each millisecond nearly every offer expired in the
//! same tick as another contact's relaxation step (0.9 per expiry tick at
//! 20 000 agents with the full model), which a daemon on a real clock
//! would see in ticks of their own.
//!
//! Timers due between two inputs (relaxation steps, expiries of offers
//! made meanwhile, SLA thresholds) fire at their own instants in ticks of
//! their own, as in the daemon, which sleeps until the engine's next
//! deadline: those ticks are timed into `timer_tick_due`. Timers due at an
//! input's own instant fire just before it (the daemon may take either
//! first). `--timers input` leaves them all to the next input instead, as
//! a daemon too busy to wake between inputs would.
//!
//! Each timed scenario also reports what its calls did besides their own
//! event (`Engine::last_work`): `relaxed_per_event` and `relaxed_max`
//! (waiting contacts a relaxation step re-filed in the call: at the start
//! of an input, or in a tick), `timers_per_event` (timers fired) and
//! `examined_per_event` (agents and queue heads looked at).
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
//!    contact; one new contact is added untimed after each); `by_offers`
//!    splits the events by the offers they made, and `per_contact_offered`
//!    gives each contact offered its event's time over the contacts it
//!    offered (a ring group's three offers are one contact's);
//! 4. `offer_expiry`: `on_tick` at each expiry time of the offers made in 3
//!    (`by_timers`: split by the timers a tick fired; `per_contact_expired`:
//!    each contact whose offer expired at its tick's time over those
//!    contacts). The per-decision figures are beside the scenario's own,
//!    not instead of them: the last decision of an event is out when the
//!    whole event is;
//!    `timer_tick_due`: the ticks at deadlines between the inputs of 1–4;
//! 5. `tick_idle_100k_open`: `on_tick` with no timer due;
//! 6. memory: RSS before any contact and at the full backlog;
//! 7. restore: JSON decode of every contact and agent record, then
//!    `Engine::restore`;
//! 8. `fixed_work_10us`, `fixed_work_20us`: no engine, a computation of
//!    fixed length (about 10 and 20 µs) timed the same way: on a shared
//!    machine its p99 is well above its p50 too, which is how much of the
//!    events' tails the machine adds; `memory_walk_10us`: about 10 µs of
//!    dependent loads at random in 64 MiB, whose tail also shows what an
//!    interrupt costs an event by what it evicts (the longer the event, the
//!    larger the share of events an interrupt lands in).
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
use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The daemon's allocator (see `src/main.rs`), so the figures are the daemon's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod sim;
mod size;
mod world;

use sim::*;
use size::*;
use world::*;

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
    /// `--timers deadline` (default): timers due between inputs fire at
    /// their own instants, as in the daemon; `input`: at the next input.
    ticks_at_deadlines: bool,
    /// `--clock spread` (default): inputs 0.5–1.5 ms apart; `steady`: 1 ms.
    clock_spread: bool,
}

impl Params {
    fn full(agents: usize, o: &Options) -> Params {
        let (waiting, budget) = (o.waiting, o.budget);
        Params {
            strategies: o.strategies.clone(),
            units: o.units,
            model: o.model,
            ageing_ms: o.ageing_ms,
            ticks_at_deadlines: o.ticks_at_deadlines,
            clock_spread: o.clock_spread,
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
            ticks_at_deadlines: true,
            clock_spread: true,
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

// ----- command line -----

pub(crate) struct Options {
    pub(crate) agents: Vec<usize>,
    pub(crate) waiting: usize,
    pub(crate) budget: Duration,
    pub(crate) strategies: Vec<Strategy>,
    pub(crate) units: Option<u32>,
    pub(crate) model: bool,
    pub(crate) ageing_ms: i64,
    pub(crate) ticks_at_deadlines: bool,
    pub(crate) clock_spread: bool,
}

pub(crate) const ALL_STRATEGIES: [Strategy; 5] = [
    Strategy::LongestIdle,
    Strategy::LeastLoaded,
    Strategy::RoundRobin,
    Strategy::MostSkilled,
    Strategy::RingGroup,
];

pub(crate) fn parse_options(args: &[String]) -> Options {
    let mut o = Options {
        agents: vec![1_000, 20_000, 100_000],
        waiting: 100_000,
        budget: Duration::from_secs(120),
        strategies: ALL_STRATEGIES[..2].to_vec(),
        units: None,
        model: false,
        ageing_ms: 60_000,
        ticks_at_deadlines: true,
        clock_spread: true,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (key, inline) = match a.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (a.as_str(), None),
        };
        if !matches!(
            key,
            "--agents"
                | "--waiting"
                | "--budget-secs"
                | "--strategies"
                | "--units"
                | "--model"
                | "--ageing-secs"
                | "--timers"
                | "--clock"
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
            "--timers" => {
                o.ticks_at_deadlines = match v.as_str() {
                    "deadline" => true,
                    "input" => false,
                    _ => bad("expected deadline or input"),
                }
            }
            "--clock" => {
                o.clock_spread = match v.as_str() {
                    "spread" => true,
                    "steady" => false,
                    _ => bad("expected spread or steady"),
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
pub(crate) fn assert_finite(v: &Value, path: &str) {
    match v {
        Value::Null => panic!("{path} is null"),
        Value::Number(n) => assert!(n.as_f64().is_some_and(f64::is_finite), "{path} = {n} is not finite"),
        Value::Array(a) => a.iter().for_each(|x| assert_finite(x, path)),
        Value::Object(o) => o.iter().for_each(|(k, x)| assert_finite(x, &format!("{path}.{k}"))),
        _ => {}
    }
}

/// The quick run did what each scenario is meant to do.
pub(crate) fn check_quick(r: &Value, p: &Params) {
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
    assert!(
        sc("timer_tick_due", "count") > 0 && sc("timer_tick_due", "relaxed_max") > 0,
        "relaxation steps due between inputs fired at their own instants: {}",
        r["scenarios"]["timer_tick_due"]
    );
    assert_eq!(r["restore_matches"], json!(true), "restore rebuilt the same contacts");
    assert!(
        r["restore_contacts"].as_u64().unwrap_or(0) >= p.waiting as u64,
        "restore saw the backlog"
    );
}

pub(crate) fn summary(reports: &[Value]) -> Value {
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
pub(crate) fn run_child(agents: usize, o: &Options) -> std::io::Result<Option<Value>> {
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
        .arg(format!(
            "--timers={}",
            if o.ticks_at_deadlines { "deadline" } else { "input" }
        ))
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

pub(crate) fn main() {
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

//! One size: the scenarios in order on one engine, as the crate docs list.

use super::*;

// ----- one size -----

pub(crate) fn run_size(p: &Params) -> Value {
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
    // As the daemon does at start-up; after the RSS reading, so the tables
    // it brings in count in the memory per open contact, as they did when
    // they grew with the contacts.
    let t = Instant::now();
    e.prefault();
    let prefault = t.elapsed();
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
        // Its own seed: the other draws are the same with either clock.
        clock: p.clock_spread.then_some(Rng(SEED ^ 0x0063_6c6f_636b)),
        offer_timeout: chrono::Duration::milliseconds((OFFER_TIMEOUT_SECS * 1000.0) as i64),
        assigned: Vec::new(),
        held: Vec::new(),
        seq: 0,
        tally: Default::default(),
        ticks_at_deadlines: p.ticks_at_deadlines,
        deadline_ticks: histogram(),
        deadline_tally: Default::default(),
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
    let mut s = sim.scenario_report(&h, cut, timing);
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
    let mut s = sim.scenario_report(&h, cut, timing);
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
    let mut s = sim.scenario_report(&h, cut, timing);
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
    let mut by_offers = Split::default();
    let mut per_contact = PerDecision::default();
    for i in 0..k {
        if b.over() || sim.assigned.is_empty() {
            cut = b.over();
            break;
        }
        let pick = sim.rng.below(sim.assigned.len());
        let (agent, contact) = sim.assigned.swap_remove(pick);
        let ev = sim.agent_event(&agent, "complete", &contact);
        let now = sim.next_input(OnOffer::Hold);
        let t = Instant::now();
        let r = freed_slot(&mut sim.e, &ev, now);
        let ns = t.elapsed().as_nanos() as u64;
        h.saturating_record(ns);
        sim.note_work();
        if !matches!(r, Ok(Outcome::Applied)) {
            not_applied += 1;
        }
        let d = sim.settle(now, OnOffer::Hold);
        by_offers.record(d.offers, ns);
        per_contact.record(d.contacts_offered.len(), ns);
        offers_made += d.offers;
        if d.offers > 0 {
            refilled += 1;
        }
        offers_made += sim.inbound(None, OnOffer::Hold).offers;
        b.progress(|| format!("{i}/{k} completes, {refilled} slots re-offered"));
    }
    let timing = b.done(format!("{} completes, {refilled} slots re-offered", h.len()));
    let mut s = sim.scenario_report(&h, cut, timing);
    s.insert("completes_requested".into(), json!(p.completes));
    s.insert("slots_reoffered".into(), json!(refilled));
    s.insert("offers_outstanding".into(), json!(offers_made));
    s.insert("not_applied".into(), json!(not_applied));
    s.insert("by_offers".into(), by_offers.report());
    s.insert("per_contact_offered".into(), per_contact.report());
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
    let mut by_offers = Split::default();
    let mut by_timers = Split::default();
    let mut per_expired = PerDecision::default();
    for (i, at) in expiries.iter().enumerate() {
        if b.over() {
            cut = true;
            break;
        }
        let now = (*at).max(sim.now);
        // Before the expiry, not at it: this tick is the expiry's own.
        sim.timers_before(now, OnOffer::Hold);
        sim.now = now;
        let t = Instant::now();
        expiry_tick(&mut sim.e, now);
        let ns = t.elapsed().as_nanos() as u64;
        h.saturating_record(ns);
        sim.note_work();
        by_timers.record(sim.e.last_work().timers_fired, ns);
        let d = sim.settle(now, OnOffer::Hold);
        by_offers.record(d.offers, ns);
        per_expired.record(d.contacts_expired.len(), ns);
        expired += d.expired;
        reoffered += d.offers;
        b.progress(|| format!("{i}/{} ticks, {expired} offers expired", expiries.len()));
    }
    let timing = b.done(format!("{} ticks, {expired}/{targeted} offers expired", h.len()));
    let not_available = sim.e.agents().filter(|a| a.status != Presence::Available).count();
    let mut s = sim.scenario_report(&h, cut, timing);
    s.insert("offers_targeted".into(), json!(targeted));
    s.insert("offers_expired".into(), json!(expired));
    s.insert("reoffered".into(), json!(reoffered));
    s.insert("by_offers".into(), by_offers.report());
    s.insert("by_timers".into(), by_timers.report());
    s.insert("per_contact_expired".into(), per_expired.report());
    s.insert("agents_not_available_after".into(), json!(not_available));
    scenarios.insert("offer_expiry".into(), Value::Object(s));
    if cut {
        truncated.push("offer_expiry");
    }
    scenarios.insert("timer_tick_due".into(), Value::Object(sim.deadline_report()));

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
        sim.note_work();
        if sim.settle(now, OnOffer::Hold).outputs > 0 {
            busy += 1;
        }
        b.progress(|| format!("{i}/{} ticks", p.idle_ticks));
    }
    let timing = b.done(format!("{} ticks", h.len()));
    let mut s = sim.scenario_report(&h, cut, timing);
    s.insert("open_contacts".into(), json!(sim.e.contacts_len()));
    s.insert("waiting".into(), json!(sim.e.waiting_len()));
    s.insert("ticks_with_output".into(), json!(busy));
    scenarios.insert("tick_idle_100k_open".into(), Value::Object(s));
    if cut {
        truncated.push("tick_idle_100k_open");
    }

    // 8. The machine's own spread, for reading the tails above, at two
    // lengths that bracket the events'.
    for micros in [10, 20] {
        scenarios.insert(
            format!("fixed_work_{micros}us"),
            Value::Object(fixed_work_spread(p.idle_ticks * 20, micros)),
        );
    }
    scenarios.insert(
        "memory_walk_10us".into(),
        Value::Object(memory_walk_spread(p.idle_ticks * 20, 10, &mut sim.rng)),
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
        "timers": if p.ticks_at_deadlines { "deadline" } else { "input" },
        "clock": if p.clock_spread { "spread" } else { "steady" },
        "skills": SKILLS,
        "total_capacity": world.total_capacity,
        "reachable_capacity": world.reachable_capacity,
        "waiting_target": p.waiting,
        "budget_secs": p.budget.as_secs(),
        "max_missed_offers": MAX_MISSED_OFFERS,
        "engine_new_ms": ms(engine_new),
        "prefault_ms": ms(prefault),
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

/// The freed slot's agent event, apart by name for callgrind
/// (`--toggle-collect='*freed_slot*'`), as [`expiry_tick`] is.
#[inline(never)]
fn freed_slot(
    e: &mut omniroute::routing::Engine,
    ev: &omniroute::domain::wire::AgentEvent,
    now: DateTime<Utc>,
) -> Result<Outcome, omniroute::domain::wire::BadMessage> {
    e.on_agent(ev, now)
}

/// The offer expiry's tick, apart by name: `valgrind --tool=callgrind
/// --toggle-collect='*expiry_tick*'` counts these ticks alone (the engine's
/// `on_tick` also runs between inputs).
#[inline(never)]
fn expiry_tick(e: &mut omniroute::routing::Engine, now: DateTime<Utc>) {
    e.on_tick(now);
}

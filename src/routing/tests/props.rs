//! Property tests of the core's invariants on random rosters (levels,
//! capacities, presence, unit budgets), queues (requirement, strategy, ring
//! group, affinity) and event sequences (the
//! scanning reference model in `tests/it/routing_model/` checks each decision
//! itself): no offer beyond skill, capacity or presence, loads that match
//! what agents hold, nothing waiting while a free agent could take it (a
//! queue closed by its hours holds its contacts), a queue's members as its
//! hours keep them, and a restore that changes nothing; in a ring group,
//! one contact offered to several agents at once, assigned to exactly one
//! of them and withdrawn from the rest.

use super::*;
use proptest::prelude::{
    prop_assert, prop_assert_eq, prop_oneof, proptest, ProptestConfig, Strategy as PropStrategy, TestCaseError,
};

#[derive(Debug, Clone)]
enum Op {
    Contact {
        channel: usize,
        skill: Option<usize>,
        priority: u8,
    },
    Presence {
        agent: usize,
        status: usize,
    },
    Accept {
        agent: usize,
        nth: usize,
    },
    Decline {
        agent: usize,
        nth: usize,
    },
    Complete {
        agent: usize,
        nth: usize,
        wrap: u8,
    },
    Profile {
        agent: usize,
        level: u8,
        cap: u8,
    },
    End {
        nth: usize,
    },
    Tick {
        secs: u8,
    },
}

fn op() -> impl PropStrategy<Value = Op> {
    prop_oneof![
        4 => (0..4usize, proptest::option::of(0..3usize), 0..10u8).prop_map(|(channel, skill, priority)| Op::Contact { channel, skill, priority }),
        2 => (0..4usize, 0..3usize).prop_map(|(agent, status)| Op::Presence { agent, status }),
        3 => (0..4usize, 0..4usize).prop_map(|(agent, nth)| Op::Accept { agent, nth }),
        1 => (0..4usize, 0..4usize).prop_map(|(agent, nth)| Op::Decline { agent, nth }),
        3 => (0..4usize, 0..4usize, 0..3u8).prop_map(|(agent, nth, wrap)| Op::Complete { agent, nth, wrap }),
        1 => (0..4usize, 1..11u8, 0..3u8).prop_map(|(agent, level, cap)| Op::Profile { agent, level, cap }),
        1 => (0..8usize).prop_map(|nth| Op::End { nth }),
        2 => (1..20u8).prop_map(|secs| Op::Tick { secs }),
    ]
}

const SKILLS: [&str; 3] = ["s", "t", "u"];
const AGENTS: [&str; 4] = ["p0", "p1", "p2", "p3"];

/// One agent of a random roster: levels in `s`, `t`, `u` (0: not held),
/// capacity per channel, initial presence, and a budget of 100 units.
#[derive(Debug, Clone)]
struct AgentGen {
    levels: [u8; 3],
    capacity: [u8; 4],
    status: usize,
    units: bool,
}

fn agent_gen() -> impl PropStrategy<Value = AgentGen> {
    (
        proptest::array::uniform3(0..11u8),
        proptest::array::uniform4(0..4u8),
        0..3usize,
        proptest::bool::ANY,
    )
        .prop_map(|(levels, capacity, status, units)| AgentGen {
            levels,
            capacity,
            status,
            units,
        })
}

/// The queue's required level in `s` (0: none) and its strategy (when it
/// is not a ring group).
fn queue_gen() -> impl PropStrategy<Value = (u8, usize)> {
    (0..6u8, 0..4usize)
}

fn prop_spec(ring: Option<usize>, keep: bool, hours: bool, queue: (u8, usize), roster: &[AgentGen]) -> Arc<RouterSpec> {
    let strategy = match ring {
        Some(n) => format!("strategy = \"ring_group\"\nring_size = {n}\n"),
        None => {
            let s = ["longest_idle", "least_loaded", "round_robin", "most_skilled"][queue.1];
            format!("strategy = \"{s}\"\n")
        }
    };
    let skills = match queue.0 {
        0 => String::new(),
        l => format!("skills = {{ s = {l} }}\n"),
    };
    let keep = if keep {
        "[routing.affinity]\nlookback_secs = 600\nwait_secs = 10\n"
    } else {
        ""
    };
    // Open one minute in two from the start (09:00 UTC), so a run's ticks
    // open and close the queue, holding and filing its contacts.
    let (calendar, on_queue) = if hours {
        let windows: Vec<String> = (0..15)
            .map(|m| format!("\"09:{:02}-09:{:02}\"", 2 * m, 2 * m + 1))
            .collect();
        (
            format!(
                "[calendars.c]\ntimezone = \"UTC\"\nhours = {{ mon = [{}] }}\n",
                windows.join(", ")
            ),
            "calendar = \"c\"\n",
        )
    } else {
        (String::new(), "")
    };
    let mut agents = String::new();
    for (i, a) in roster.iter().enumerate() {
        let levels: Vec<String> = SKILLS
            .iter()
            .zip(a.levels)
            .filter(|(_, l)| *l > 0)
            .map(|(s, l)| format!("{s} = {l}"))
            .collect();
        let capacity: Vec<String> = Channel::ALL
            .iter()
            .zip(a.capacity)
            .map(|(c, n)| format!("{} = {n}", c.as_str()))
            .collect();
        agents.push_str(&format!(
            "[[agents]]\nid = \"{}\"\nskills = {{ {} }}\ncapacity = {{ {} }}\ninitial_status = \"{}\"\n{}",
            AGENTS[i],
            levels.join(", "),
            capacity.join(", "),
            ["available", "away", "offline"][a.status],
            if a.units { "units = 100\n" } else { "" },
        ));
    }
    spec(&format!(
        r#"
[routing]
offer_timeout_secs = 7
max_missed_offers = 3
[routing.units]
interruptible = ["email"]
{keep}
{calendar}
[sla.policies.p]
first_response_secs = {{ email = 30, chat = 5, social = 20, voice = 3 }}
warning_thresholds = [0.5]
[[queues]]
name = "q"
channels = ["email", "chat", "social", "voice"]
{skills}sla_policy = "p"
{on_queue}{strategy}
{agents}"#
    ))
}

/// Units an agent holds that count against a contact on `ch`
/// (interruptible work counts only against interruptible channels).
fn units_against(a: &Agent, ch: Channel) -> u64 {
    let w = &a.weights;
    Channel::ALL
        .iter()
        .filter(|o| !w.interruptible[o.index()] || w.interruptible[ch.index()])
        .map(|o| u64::from(a.load[o.index()]) * u64::from(w.weights[o.index()]))
        .sum()
}

/// Contacts an agent holds on a channel, counted from the contacts.
fn held(e: &Engine, a: &Agent, ch: Channel) -> u32 {
    let contacts = e.contacts().filter(|c| c.channel == ch && c.held_by(&a.id)).count() as u32;
    let wraps = a.wrap_ups.iter().filter(|w| w.channel == ch).count() as u32;
    contacts + wraps
}

fn check_invariants(e: &Engine, out: &[Outbound]) -> Result<(), TestCaseError> {
    // Between inputs the free index is current: every agent filed under the
    // entry its state gives (a re-index an input deferred was done).
    prop_assert!(e.stale_agents.is_empty(), "agents left stale after an input");
    for ax in 0..e.agents.len() as u32 {
        prop_assert_eq!(
            e.agents[ax as usize].entry,
            e.desired_entry(ax),
            "agent slot {} misfiled",
            ax
        );
    }
    for (agent, offer) in offers(out) {
        let a = e.agent(&agent).expect("offered agent exists");
        let c = e.contact(offer["contact_id"].as_str().unwrap_or_default());
        // The offer may have been answered later in the same step (never here:
        // one input per step), so the contact is still offered to this agent.
        let c = c.expect("offered contact is open");
        let offered_here = c.offer_to(&a.id) == offer["offer_id"].as_str();
        prop_assert!(offered_here, "offer not recorded on the contact");
        prop_assert_eq!(a.status, Presence::Available, "offer to a non-available agent");
        prop_assert!(
            a.fits(&c.required),
            "offer to {} lacking skills {:?} (has {:?})",
            agent,
            c.required,
            a.skills
        );
        prop_assert!(
            held(e, a, c.channel) <= a.capacity[c.channel.index()],
            "offer beyond capacity"
        );
    }
    for a in e.agents() {
        // Units: whatever a channel that interrupts nothing holds stays
        // within the budget (e-mail, interruptible, may be held beyond it
        // by chats and calls taken on top, as configured).
        if let Some(budget) = a.units {
            for ch in Channel::ALL.into_iter().filter(|c| !a.weights.interruptible[c.index()]) {
                prop_assert!(
                    units_against(a, ch) <= u64::from(budget),
                    "{} holds {:?}: beyond its {} units",
                    a.id,
                    a.load,
                    budget
                );
            }
        }
        for ch in Channel::ALL {
            prop_assert_eq!(
                a.load[ch.index()],
                held(e, a, ch),
                "load bookkeeping of {} on {}",
                a.id,
                ch
            );
        }
    }
    for c in e.contacts() {
        let offers = c.offers();
        let agents: BTreeSet<&AgentId> = offers.iter().map(|(a, _)| a).collect();
        prop_assert_eq!(agents.len(), offers.len(), "an agent twice in one ring");
        let ring = spec_ring(e);
        prop_assert!(offers.len() <= ring, "{} offers for a ring of {}", offers.len(), ring);
    }
    // A queue with hours lists exactly its waiting contacts (what opening
    // and closing it walks).
    for (q, slot) in e.queues.iter().enumerate() {
        let waiting: BTreeSet<u32> = (0..e.contacts.slots() as u32)
            .filter(|cx| e.slot(*cx).is_some_and(|s| s.q as usize == q && s.c.is_waiting()))
            .collect();
        let want = if slot.hours.is_some() { waiting } else { BTreeSet::new() };
        prop_assert_eq!(&slot.members, &want, "members of queue {}", q);
    }
    // Work-conserving: nothing waits while an available agent could take
    // it, except a contact kept for its customer's last agent, who is
    // available and has not passed on it, and one its queue's hours hold
    // (closed now).
    for c in e.contacts().filter(|c| c.state == ContactState::Waiting) {
        let slot = e.contact_slot_of(&c.id).and_then(|cx| e.slot(cx));
        if let Some(s) = slot.filter(|s| s.held) {
            prop_assert!(!e.queues[s.q as usize].open, "held by an open queue");
            continue;
        }
        if let Some((ax, _)) = slot.and_then(|s| s.reserved) {
            let a = &e.agents[ax as usize].a;
            prop_assert_eq!(Some(&a.id), c.preferred_agent.as_ref());
            prop_assert_eq!(a.status, Presence::Available, "kept for an agent who left");
            prop_assert!(!c.declined_by.contains(&a.id), "kept for an agent who passed on it");
            prop_assert!(!a.can_take(c), "kept for {} although they could take it", a.id);
            continue;
        }
        for a in e.agents() {
            prop_assert!(!a.can_take(c), "{} waits although {} could take it", c.id, a.id);
        }
    }
    Ok(())
}

fn nth_held(e: &Engine, agent: &str, nth: usize, offered: bool) -> Option<String> {
    let mut v: Vec<&Contact> = e
        .contacts()
        .filter(|c| AgentId::try_from(agent).is_ok_and(|a| c.held_by(&a)))
        .filter(|c| matches!(c.state, ContactState::Offered { .. }) == offered)
        .collect();
    v.sort_by(|a, b| a.id.cmp(&b.id));
    v.get(nth % v.len().max(1)).map(|c| c.id.clone())
}

/// The ring size the engine's queue `q` uses (1 unless a ring group).
fn spec_ring(e: &Engine) -> usize {
    e.spec
        .queues
        .get("q")
        .filter(|q| q.strategy == crate::routing::spec::Strategy::RingGroup)
        .map_or(1, |q| q.ring_size)
}

/// A ring group's contact accepted by one member: assigned to exactly that
/// agent, held by nobody else, and every other member told `withdrawn`
/// with their own offer id.
fn check_accepted(
    e: &Engine,
    cid: &str,
    agent: &str,
    before: &[(AgentId, String)],
    out: &[Outbound],
) -> Result<(), TestCaseError> {
    let Some(c) = e.contact(cid) else { return Ok(()) };
    let assigned = matches!(&c.state, ContactState::Assigned { agent: x, .. } if x.as_str() == agent);
    prop_assert!(assigned, "{} not assigned to {}", cid, agent);
    for (other, offer_id) in before.iter().filter(|(a, _)| a.as_str() != agent) {
        prop_assert!(!c.held_by(other), "{} still holds {}", other, cid);
        let told = out.iter().any(|o| {
            let v: serde_json::Value = serde_json::from_slice(&o.payload).unwrap_or_default();
            o.subject == OutSubject::Desktop(other.clone())
                && v["kind"] == "withdrawn"
                && v["offer_id"] == offer_id.as_str()
        });
        prop_assert!(told, "{} not told the ring's contact was taken", other);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn routing_never_breaks_skill_capacity_or_presence(
        ring in proptest::option::of(2..5usize),
        keep in proptest::bool::ANY,
        hours in proptest::bool::ANY,
        queue in queue_gen(),
        roster in proptest::collection::vec(agent_gen(), 4),
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        let spec = prop_spec(ring, keep, hours, queue, &roster);
        let mut e = Engine::new(Arc::clone(&spec), t(0.0));
        let first = e.take_outputs();
        check_invariants(&e, &first)?;
        let mut now = 0.0;
        for (i, op) in ops.into_iter().enumerate() {
            now += 0.5;
            let id = format!("e{i}");
            let r = match op {
                Op::Contact { channel, skill, priority } => {
                    let ch = Channel::ALL[channel].as_str();
                    let skills: Vec<&str> = skill.map(|s| SKILLS[s]).into_iter().collect();
                    let customer = format!("cust{}", priority % 2);
                    e.on_inbound(&inbound(&id, ch, &format!("conv{i}"), json!({"skills": skills, "priority": priority, "customer": {"id": customer}})), t(now)).map(|_| ())
                }
                Op::Presence { agent, status } => {
                    let s = ["available", "away", "offline"][status];
                    e.on_agent(&agent_ev(AGENTS[agent], "presence", json!({"status": s})), t(now)).map(|_| ())
                }
                Op::Accept { agent, nth } => match nth_held(&e, AGENTS[agent], nth, true) {
                    Some(cid) => {
                        let before = e.contact(&cid).map(Contact::offers).unwrap_or_default();
                        let r = e.on_agent(&agent_ev(AGENTS[agent], "accept", json!({"contact_id": cid})), t(now)).map(|_| ());
                        let out = e.take_outputs();
                        check_accepted(&e, &cid, AGENTS[agent], &before, &out)?;
                        e.out.extend(out);
                        r
                    }
                    None => Ok(()),
                },
                Op::Decline { agent, nth } => match nth_held(&e, AGENTS[agent], nth, true) {
                    Some(cid) => e.on_agent(&agent_ev(AGENTS[agent], "decline", json!({"contact_id": cid})), t(now)).map(|_| ()),
                    None => Ok(()),
                },
                Op::Complete { agent, nth, wrap } => match nth_held(&e, AGENTS[agent], nth, false) {
                    Some(cid) => e.on_agent(&agent_ev(AGENTS[agent], "complete", json!({"contact_id": cid, "wrap_up_secs": wrap})), t(now)).map(|_| ()),
                    None => Ok(()),
                },
                Op::Profile { agent, level, cap } => e
                    .on_agent(&agent_ev(AGENTS[agent], "profile", json!({"skills": {"s": level, "t": level}, "capacity": {"email": cap, "chat": cap}})), t(now))
                    .map(|_| ()),
                Op::End { nth } => {
                    let mut convs: Vec<String> = e.contacts().map(|c| c.conversation_id.clone()).collect();
                    convs.sort();
                    match convs.get(nth % convs.len().max(1)).cloned() {
                        Some(conv) => {
                            let ch = e.contact_for_conversation(&conv).map(|c| c.channel.as_str()).unwrap_or("email");
                            let ev = decode_inbound(ch, json!({"v":1,"id":id,"type":"end","channel":ch,"conversation_id":conv,"customer":{"id":"c"}}).to_string().as_bytes()).expect("end");
                            e.on_inbound(&ev, t(now)).map(|_| ())
                        }
                        None => Ok(()),
                    }
                }
                Op::Tick { secs } => {
                    now += secs as f64;
                    e.on_tick(t(now));
                    Ok(())
                }
            };
            prop_assert!(r.is_ok(), "well-formed input refused: {:?}", r);
            let out = e.take_outputs();
            check_invariants(&e, &out)?;
            // Every persisted record round-trips and restoring changes nothing.
            e.take_changes();
        }
        let (contacts, agents) = snapshot(&mut e);
        let n = contacts.len();
        let r = Engine::restore(Arc::clone(&spec), contacts, agents, t(now));
        prop_assert_eq!(r.contacts().count(), n);
        for a in e.agents() {
            prop_assert_eq!(r.agent(a.id.as_str()).map(|x| x.load), Some(a.load));
        }
    }
}

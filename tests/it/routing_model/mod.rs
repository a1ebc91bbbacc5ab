//! Differential test of the routing engine against a reference model.
//!
//! The **model** (`model.rs`) is a deliberately naive re-statement of what the
//! router decides: plain maps of agents and contacts, linear scans, no
//! indexes, no caches. It is fed the same inputs as the real
//! [`omniroute::routing::Engine`] (inbound messages and ends, agent events,
//! clock ticks, all with explicit `now`) and applies their semantics itself:
//!
//! - *accept*: the offered contact becomes assigned; the agent's run of missed
//!   offers ends;
//! - *decline*: the contact goes back to waiting with its original age, the
//!   agent joins its `declined_by`, the slot is released, the miss run ends;
//! - *offer expiry* (only on a tick at or after `expires_at`): as a decline,
//!   but it counts as a missed offer, and at `max_missed_offers` in a row the
//!   agent is set `away`;
//! - *presence*: leaving `available` withdraws every offer in flight to the
//!   agent (back to waiting, agent added to `declined_by`); returning to it
//!   resets `idle_since` to now and the miss run; an unchanged status is a
//!   no-op;
//! - *complete*: the contact closes; its slot stays held until
//!   `now + wrap_up_secs` when that is positive, else it is released;
//! - *end*: a waiting contact closes; an offered one closes and frees the
//!   slot; an assigned one stays with its agent;
//! - *profile*: skills and/or capacity are replaced (an unknown agent is
//!   created offline);
//! - *release*: whenever an agent's total load drops back to zero while they
//!   are available, `idle_since = max(idle_since, now)`;
//! - a follow-up message on an open conversation changes nothing routing-wise;
//!   on a closed one it opens a new contact.
//!
//! The model never reads the engine's state to decide anything. The only
//! thing taken from the engine is *which* offers it made (the `offer`
//! messages to agent desktops, in output order). Before each offer is applied
//! to the model, the model checks that it is a valid, optimal decision:
//!
//! 1. the contact is open and waiting;
//! 2. greedy order: no waiting contact that some available agent with a free
//!    slot could take has a strictly better key (higher priority, then older
//!    `received_at`; equal keys are equally good);
//! 3. the agent is available, has every required skill at or above its level
//!    and a free slot on the contact's channel;
//! 4. affinity: when the contact's customer had a contact completed within
//!    the lookback before this one opened, and that agent can take it and has
//!    not declined it, the offer goes to that agent; otherwise
//!    the agent is a best choice of the queue's strategy (`longest_idle`:
//!    smallest `idle_since`; `least_loaded`: lowest total load / total
//!    capacity, compared exactly, then smallest `idle_since`; `round_robin`:
//!    the oldest last offer, counting every offer of the run; `most_skilled`:
//!    highest level in the skill the contact requires at the highest level
//!    (alphabetical first on ties), then smallest `idle_since`) among the agents
//!    that could take it, agents in the contact's `declined_by` only when no
//!    other could; agents equal on the strategy's key are equally good (the
//!    engine's id tie-break is not required); the offer expires after the
//!    queue's timeout.
//!
//! The offer is then applied (load +1, `idle_since = now`, expiry timer).
//! After every input:
//!
//! 5. work conservation: no waiting contact could be taken by anyone;
//! 6. nothing lost or invented: the open contacts (by conversation), their
//!    ids, queue, channel, priority, required skills, age, `declined_by` and
//!    state (waiting / offered to X / assigned to X) agree with the engine's;
//! 7. every agent's status and per-channel load agree, and for available
//!    agents also `idle_since` and the missed-offer count (the strategy keys).
//!
//! Contact ids are learned from the engine (`contact_for_conversation` right
//! after a contact opens) and never constructed, and ties are never resolved
//! by id, so the test holds for any engine with the same routing semantics.
//! Nor does anything here depend on the id format, on `why.candidates`, on
//! offer or event ids, or on the order of `take_changes()` within one call.
//!
//! Files: `setup` (the configuration as data, the inputs), `model` (the
//! reference model and checks 1 to 5), `checks` (6 and 7, and comparing
//! two engines), `run` (random ops and the run feeding both), and here the
//! properties.
//!
//! The tests:
//! - `engine_decisions_match_the_reference_model`: checks 1–7 on 3000 random
//!   runs of up to 80 inputs, then a long tick that lets everything expire;
//! - `long_runs_match_the_reference_model`: the same on runs of up to 400
//!   inputs, where dozens of contacts wait at once;
//! - `restart_preserves_every_contact`: after a random run, the records a
//!   key-value bucket would hold (replayed from `take_changes()`) equal the
//!   engine's live contacts and agents; `Engine::restore` from them (and
//!   `restore_customers` from the customers' histories) gives the
//!   same open contacts, states and agents; and the same further inputs to
//!   both engines give identical offers (agent per conversation);
//! - `event_id_reused_by_another_conversation_opens_a_new_contact`: contact
//!   identity is per conversation and event, not per event id;
//! - `the_model_refuses_wrong_decisions`: the checks are not vacuous.

use chrono::{DateTime, Duration, Utc};
use omniroute::config::Config;
use omniroute::domain::wire::{decode_agent, decode_inbound, AgentEvent, InboundEvent};
use omniroute::domain::{Channel, Presence};
use omniroute::routing::customers::{parse_record_key, History};
use omniroute::routing::spec::RouterSpec;
use omniroute::routing::{Agent, Contact, ContactState, Engine, OutSubject, Outbound};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;
mod checks;
mod model;
mod run;
mod setup;

use checks::*;
use model::*;
use run::*;
use setup::*;

// ---------------------------------------------------------------------------
// The properties.
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    /// Every decision the engine makes is one the model allows, and the two
    /// agree on every contact and agent after every input.
    #[test]
    fn engine_decisions_match_the_reference_model(ops in steps(80)) {
        let mut run = Run::new();
        run.run(&ops)?;
        // Let every offer and wrap-up in flight run out.
        run.now_ms += 120_000;
        run.execute(&Action::Tick)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 150, ..ProptestConfig::default() })]

    /// The same, over long runs where queues build up (dozens of contacts
    /// waiting, many timers in flight).
    #[test]
    fn long_runs_match_the_reference_model(ops in steps(400)) {
        let mut run = Run::new();
        run.run(&ops)?;
        run.now_ms += 120_000;
        run.execute(&Action::Tick)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// A restart from the persisted records loses nothing, and the restored
    /// engine then decides exactly as the one that never stopped.
    #[test]
    fn restart_preserves_every_contact(before in steps(60), after in steps(40)) {
        let mut run = Run::new();
        run.run(&before)?;
        let (contacts, agents, customers) = run.snapshot().map_err(TestCaseError::fail)?;
        let mut restored = Engine::restore(Arc::clone(&run.spec), contacts, agents, run.now());
        restored.restore_customers(customers);
        check_same_engines(&run.engine, &restored, true).map_err(TestCaseError::fail)?;
        run.prefix = "after-";
        for s in &after {
            let Some(a) = run.resolve(s) else { continue };
            let (accepted, decisions) = run.execute(&a)?;
            let target = a
                .conv()
                .and_then(|conv| restored.contact_for_conversation(conv))
                .map_or_else(|| "no-such-contact".to_string(), |c| c.id.clone());
            let got = feed(&mut restored, &a, &target, run.now());
            prop_assert_eq!(got.is_ok(), accepted, "restored engine on {:?}: {:?}", a, got);
            let mut theirs: Vec<(String, String)> = seen_offers(&restored.take_outputs())
                .map_err(TestCaseError::fail)?
                .into_iter()
                .map(|o| (o.conv, o.agent))
                .collect();
            theirs.sort();
            prop_assert_eq!(&decisions, &theirs, "offers after {:?}: original vs restored", a);
            restored.take_changes();
            check_same_engines(&run.engine, &restored, false)
                .map_err(|e| TestCaseError::fail(format!("after {a:?}: {e}")))?;
        }
    }
}

/// The contact-id bug the new engine fixes: the id derived from the event id
/// alone, so a reused event id in another conversation replaced the open
/// contact. (The daemon's dedupe window is long over by then; the engine
/// itself does not dedupe by event id.)
#[test]
fn event_id_reused_by_another_conversation_opens_a_new_contact() {
    let mut run = Run::new();
    let msg = |id: &str, conv: &str| Msg {
        id: id.into(),
        conv: conv.into(),
        channel: Channel::Email,
        queue: Some("general"),
        priority: None,
        skills: Vec::new(),
        tier: None,
        text: Some("hello"),
        received_at: None,
    };
    let e = &mut run.engine;
    e.on_inbound(&inbound_event(&msg("X", "conv-a")), t(0))
        .expect("opens A");
    let offer = seen_offers(&e.take_outputs())
        .expect("offers")
        .pop()
        .expect("A is offered");
    e.on_agent(
        &agent_event(&offer.agent, "accept", json!({"contact_id": offer.contact_id})),
        t(1_000),
    )
    .expect("accept");
    let a = e.contact_for_conversation("conv-a").expect("A is open").clone();
    assert!(matches!(&a.state, ContactState::Assigned { agent, .. } if agent.as_str() == offer.agent));

    e.on_inbound(&inbound_event(&msg("X", "conv-b")), t(90_000_000))
        .expect("opens B");
    let b = e.contact_for_conversation("conv-b").expect("B is open").clone();
    assert_ne!(b.id, a.id, "B is a new contact");
    let a_now = e.contact_for_conversation("conv-a").expect("A is still open");
    assert_eq!(a_now.conversation_id, "conv-a");
    assert_eq!((&a_now.id, &a_now.state), (&a.id, &a.state), "A untouched");
    assert_eq!(e.contact(&a.id).map(|c| c.conversation_id.as_str()), Some("conv-a"));
    assert_eq!(e.contact(&b.id).map(|c| c.conversation_id.as_str()), Some("conv-b"));
    assert_eq!(e.contacts().count(), 2, "both open");
    let held = e
        .contacts()
        .filter(|c| match contact_view(c).state {
            StateView::Offered(x) | StateView::Assigned(x) => x == offer.agent,
            StateView::Waiting => false,
        })
        .count() as u32;
    let load = e.agent(&offer.agent).expect("agent").load[Channel::Email.index()];
    assert_eq!(load, held, "{}'s load counts what they hold", offer.agent);
}

/// The checker is not vacuous: wrong decisions are refused.
#[test]
fn the_model_refuses_wrong_decisions() {
    let now = t(0);
    let mut m = Model::new(now);
    let open_on = |m: &mut Model, conv: &str, queue: &'static str, channel: Channel, priority: u8| {
        let f = Msg {
            id: conv.into(),
            conv: conv.into(),
            channel,
            queue: Some(queue),
            priority: Some(priority),
            skills: Vec::new(),
            tier: None,
            text: None,
            received_at: None,
        };
        assert_eq!(m.apply(&Action::Message(f), now), Expect::Opened(conv.into()));
        m.contacts.get_mut(conv).expect("open").id = format!("id-{conv}");
    };
    let open = |m: &mut Model, conv: &str, queue: &'static str, priority: u8| {
        open_on(m, conv, queue, Channel::Email, priority);
    };
    let offer = |conv: &str, agent: &str, at: DateTime<Utc>, timeout_ms: i64| SeenOffer {
        agent: agent.into(),
        contact_id: format!("id-{conv}"),
        conv: conv.into(),
        expires_at: at + Duration::milliseconds(timeout_ms),
    };
    // general (s >= 2, email): ana (s3), cai (s5), fay (s2) are available with
    // an email slot; dee is away.
    open(&mut m, "low", "general", 1);
    open(&mut m, "high", "general", 5);
    assert!(m.check_offer(&offer("high", "ana", now, 10_000), now).is_ok());
    assert!(
        m.check_offer(&offer("high", "fay", now, 10_000), now).is_ok(),
        "idle tie"
    );
    let err = |r: Result<(), String>| r.expect_err("a wrong decision");
    assert!(err(m.check_offer(&offer("low", "ana", now, 10_000), now)).starts_with("(2)"));
    assert!(err(m.check_offer(&offer("high", "dee", now, 10_000), now)).starts_with("(3)"));
    assert!(err(m.check_offer(&offer("high", "ben", now, 10_000), now)).starts_with("(3)"));
    assert!(err(m.check_offer(&offer("high", "ana", now, 9_000), now)).starts_with("(4)"));
    m.offer("high", "ana", t(500));
    let later = t(1_000);
    assert!(err(m.check_offer(&offer("high", "cai", later, 10_000), later)).starts_with("(1)"));
    // ana was offered last: cai and fay have been idle longer.
    assert!(err(m.check_offer(&offer("low", "ana", later, 10_000), later)).starts_with("(4)"));
    // A decliner only when nobody else fits.
    m.contacts
        .get_mut("low")
        .expect("open")
        .declined_by
        .insert("cai".into());
    assert!(err(m.check_offer(&offer("low", "cai", later, 10_000), later)).starts_with("(4)"));
    assert!(m.check_offer(&offer("low", "fay", later, 10_000), later).is_ok());
    // least_loaded on billing (billing >= 5, email): ana (6) at 1 of 3, cai (5) at 0 of 4.
    open(&mut m, "bill", "billing", 9);
    assert!(err(m.check_offer(&offer("bill", "ana", later, 6_000), later)).starts_with("(4)"));
    assert!(m.check_offer(&offer("bill", "cai", later, 6_000), later).is_ok());
    assert!(err(m.check_work_conserving(later)).starts_with("(5)"));
    // most_skilled on tech (tech >= 3, s >= 1, chat): ben (tech 4) beats cai
    // (tech 3), whatever their idle times.
    m.agent_mut("cai").idle_since = t(-5_000);
    open_on(&mut m, "fiber", "tech", Channel::Chat, 9);
    assert!(err(m.check_offer(&offer("fiber", "cai", later, 7_500), later)).starts_with("(4)"));
    assert!(m.check_offer(&offer("fiber", "ben", later, 7_500), later).is_ok());
    // round_robin on social (s >= 1): cai and fay were never offered anything;
    // once cai is, fay is next.
    open_on(&mut m, "dm1", "social", Channel::Social, 9);
    open_on(&mut m, "dm2", "social", Channel::Social, 9);
    assert!(m.check_offer(&offer("dm1", "cai", later, 4_000), later).is_ok());
    m.offer("dm1", "cai", later);
    assert!(err(m.check_offer(&offer("dm2", "cai", later, 4_000), later)).starts_with("(3)"));
    m.agent_mut("cai").capacity[Channel::Social.index()] = 2;
    assert!(err(m.check_offer(&offer("dm2", "cai", later, 4_000), later)).starts_with("(4)"));
    assert!(m.check_offer(&offer("dm2", "fay", later, 4_000), later).is_ok());
}

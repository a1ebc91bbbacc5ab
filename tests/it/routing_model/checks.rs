//! Comparing the engine with the model (checks 6 and 7), and two engines.

use super::*;

// ---------------------------------------------------------------------------
// Comparing the engine with the model (checks 6 and 7), and two engines.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum StateView {
    Waiting,
    Offered(String),
    Assigned(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ContactView {
    pub(super) id: String,
    pub(super) channel: Channel,
    pub(super) queue: String,
    pub(super) priority: u8,
    pub(super) required: BTreeMap<String, u8>,
    pub(super) received_at: DateTime<Utc>,
    pub(super) state: StateView,
    pub(super) declined_by: BTreeSet<String>,
}

pub(super) fn contact_view(c: &Contact) -> ContactView {
    ContactView {
        id: c.id.clone(),
        channel: c.channel,
        queue: c.queue.as_str().to_string(),
        priority: c.priority,
        required: c.required.iter().map(|(s, l)| (s.as_str().to_string(), *l)).collect(),
        received_at: c.received_at,
        state: match &c.state {
            ContactState::Waiting => StateView::Waiting,
            ContactState::Offered { agent, .. } => StateView::Offered(agent.as_str().to_string()),
            ContactState::Assigned { agent, .. } => StateView::Assigned(agent.as_str().to_string()),
        },
        declined_by: c.declined_by.iter().map(|a| a.as_str().to_string()).collect(),
    }
}

/// The engine's open contacts by conversation.
pub(super) fn engine_contacts(e: &Engine) -> Result<BTreeMap<String, ContactView>, String> {
    let mut m = BTreeMap::new();
    for c in e.contacts() {
        if let Some(other) = m.insert(c.conversation_id.clone(), contact_view(c)) {
            return Err(format!(
                "(6) two open contacts for conversation {}: {} and {}",
                c.conversation_id, other.id, c.id
            ));
        }
    }
    Ok(m)
}

pub(super) fn model_contacts(m: &Model) -> BTreeMap<String, ContactView> {
    m.contacts
        .iter()
        .map(|(conv, c)| {
            let view = ContactView {
                id: c.id.clone(),
                channel: c.channel,
                queue: c.queue.name.to_string(),
                priority: c.priority,
                required: c.required.clone(),
                received_at: c.received_at,
                state: match &c.state {
                    Holding::Waiting => StateView::Waiting,
                    Holding::Offered { agent, .. } => StateView::Offered(agent.clone()),
                    Holding::Assigned { agent } => StateView::Assigned(agent.clone()),
                },
                declined_by: c.declined_by.clone(),
            };
            (conv.clone(), view)
        })
        .collect()
}

/// An agent as check 7 sees it: the strategy keys only while available
/// (returning to available resets them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct AgentView {
    pub(super) status: Presence,
    pub(super) load: [u32; 4],
    pub(super) keys: Option<(DateTime<Utc>, u32)>,
    pub(super) last_offer: u64,
    pub(super) units: Option<u32>,
}

pub(super) fn engine_agents(e: &Engine) -> BTreeMap<String, AgentView> {
    e.agents()
        .map(|a| {
            let view = AgentView {
                status: a.status,
                load: a.load,
                keys: (a.status == Presence::Available).then_some((a.idle_since, a.missed_offers)),
                last_offer: a.last_offer,
                units: a.units,
            };
            (a.id.as_str().to_string(), view)
        })
        .collect()
}

pub(super) fn model_agents(m: &Model) -> BTreeMap<String, AgentView> {
    m.agents
        .iter()
        .map(|(id, a)| {
            let view = AgentView {
                status: a.status,
                load: a.load,
                keys: (a.status == Presence::Available).then_some((a.idle_since, a.missed)),
                last_offer: a.last_offer,
                units: a.units,
            };
            (id.clone(), view)
        })
        .collect()
}

/// Lists every key missing, extra or different between two maps.
pub(super) fn diff<V: PartialEq + std::fmt::Debug>(
    what: &str,
    want: &BTreeMap<String, V>,
    got: &BTreeMap<String, V>,
) -> Result<(), String> {
    let mut problems = Vec::new();
    for (k, w) in want {
        match got.get(k) {
            None => problems.push(format!("{k} missing (expected {w:?})")),
            Some(g) if g != w => problems.push(format!("{k}: expected {w:?}, got {g:?}")),
            Some(_) => {}
        }
    }
    for (k, g) in got {
        if !want.contains_key(k) {
            problems.push(format!("{k} unexpected: {g:?}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{what}:\n  {}", problems.join("\n  ")))
    }
}

/// Checks 6 and 7.
pub(super) fn check_engine_matches_model(e: &Engine, m: &Model) -> Result<(), String> {
    diff(
        "(6) open contacts by conversation",
        &model_contacts(m),
        &engine_contacts(e)?,
    )?;
    for (conv, c) in &m.contacts {
        if e.contact(&c.id).map(|x| x.conversation_id.as_str()) != Some(conv.as_str()) {
            return Err(format!("(6) contact({}) does not find the contact of {conv}", c.id));
        }
        if e.contact_for_conversation(conv).map(|x| x.id.as_str()) != Some(c.id.as_str()) {
            return Err(format!("(6) contact_for_conversation({conv}) is not {}", c.id));
        }
    }
    let waiting = m.contacts.values().filter(|c| c.state == Holding::Waiting).count();
    if e.waiting_len() != waiting {
        return Err(format!("(6) waiting_len() is {}, model has {waiting}", e.waiting_len()));
    }
    diff("(7) agents", &model_agents(m), &engine_agents(e))
}

/// Everything of an agent that routing depends on, for engine-vs-engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FullAgent {
    pub(super) status: Presence,
    pub(super) load: [u32; 4],
    pub(super) idle_since: DateTime<Utc>,
    pub(super) missed: u32,
    pub(super) skills: BTreeMap<String, u8>,
    pub(super) capacity: [u32; 4],
    pub(super) wrap_ups: Vec<(Channel, DateTime<Utc>)>,
}

pub(super) fn full_agents(e: &Engine) -> BTreeMap<String, FullAgent> {
    e.agents()
        .map(|a: &Agent| {
            let mut wrap_ups: Vec<_> = a.wrap_ups.iter().map(|w| (w.channel, w.until)).collect();
            wrap_ups.sort();
            let view = FullAgent {
                status: a.status,
                load: a.load,
                idle_since: a.idle_since,
                missed: a.missed_offers,
                skills: a.skills.iter().map(|(s, l)| (s.as_str().to_string(), *l)).collect(),
                capacity: a.capacity,
                wrap_ups,
            };
            (a.id.as_str().to_string(), view)
        })
        .collect()
}

/// Same open contacts, states and agents. Ids are compared only when asked
/// (right after a restore): contacts opened later are named by each engine.
pub(super) fn check_same_engines(want: &Engine, got: &Engine, with_ids: bool) -> Result<(), String> {
    let strip = |mut m: BTreeMap<String, ContactView>| {
        if !with_ids {
            m.values_mut().for_each(|c| c.id.clear());
        }
        m
    };
    diff(
        "contacts (original vs restored)",
        &strip(engine_contacts(want)?),
        &strip(engine_contacts(got)?),
    )?;
    diff("agents (original vs restored)", &full_agents(want), &full_agents(got))
}

//! SLA clocks of open contacts: started, stopped, paused and resumed by
//! what happens to the contact, and one timer per contact at the earliest
//! next threshold of its clocks, so a tick costs the alerts due.
//!
//! | clock | starts | stops |
//! |---|---|---|
//! | `first_response` | received | the first `respond` (`accept` on chat and voice); the customer leaving |
//! | `queue_wait` | received | `accept` |
//! | `next_response` | a customer message after an agent reply (e-mail, social) | the next `respond`; the customer leaving |
//! | `resolution` | received | `complete` |
//!
//! Every clock stops when the contact closes. With the policy's
//! `pause_when_waiting_on_customer`, `await_customer` pauses the running
//! clocks and the customer's next message resumes them.
//!
//! A contact whose policy was removed from the configuration runs under
//! `sla.default_policy` (a warning is logged once per missing policy);
//! without a default, its clocks raise nothing.
//!
//! A contact is *at risk* while one of its running clocks has raised a
//! warning and not yet its breach; the engine counts them per queue as
//! they change (the `omniroute_contacts_at_risk` gauge).

use super::timers::Timer;
use super::{Engine, OutSubject, Outbound};
use crate::domain::wire::{self, AlertCustomer, SlaAlertMsg};
use crate::domain::Channel;
use crate::sla::{self, ClockKind, SlaClock};
use chrono::{DateTime, Utc};
use std::sync::Arc;

impl Engine {
    /// Starts the clocks the contact's policy sets for its channel, from
    /// its `received_at`.
    pub(super) fn start_clocks(&mut self, cx: u32) {
        let spec = Arc::clone(&self.spec);
        let Some(s) = self.slot_mut(cx) else { return };
        if let Some((p, _)) = spec.policy(s.c.sla_policy.as_deref()) {
            for k in [ClockKind::FirstResponse, ClockKind::QueueWait, ClockKind::Resolution] {
                if p.target(k, s.c.channel).is_some() && !s.c.clocks.iter().any(|c| c.clock == k) {
                    s.c.clocks.push(SlaClock::start(k, 0, s.c.received_at));
                }
            }
        }
        self.schedule_sla(cx);
    }

    /// Stops the contact's clocks of these kinds; whether any was there.
    pub(super) fn stop_clocks(&mut self, cx: u32, kinds: &[ClockKind]) -> bool {
        let Some(s) = self.slot_mut(cx) else { return false };
        let before = s.c.clocks.len();
        s.c.clocks.retain(|k| !kinds.contains(&k.clock));
        let stopped = s.c.clocks.len() != before;
        if stopped {
            self.dirty_contacts.push(cx);
            self.schedule_sla(cx);
        }
        stopped
    }

    /// A customer message on an open contact: paused clocks resume, and
    /// after an agent reply on e-mail or social a `next_response` run
    /// starts (one at a time: later messages join the running one).
    pub(super) fn customer_wrote(&mut self, cx: u32, now: DateTime<Utc>) {
        let spec = Arc::clone(&self.spec);
        let Some(s) = self.slot_mut(cx) else { return };
        let c = &mut s.c;
        let mut changed = false;
        for k in c.clocks.iter_mut().filter(|k| !k.running()) {
            k.resume(now);
            changed = true;
        }
        let target = spec
            .policy(c.sla_policy.as_deref())
            .and_then(|(p, _)| p.target(ClockKind::NextResponse, c.channel));
        let owed = c.responded_at.is_some()
            && !c.customer_ended
            && matches!(c.channel, Channel::Email | Channel::Social)
            && !c.clocks.iter().any(|k| k.clock == ClockKind::NextResponse);
        if owed && target.is_some() {
            c.next_response_runs += 1;
            c.clocks
                .push(SlaClock::start(ClockKind::NextResponse, c.next_response_runs, now));
            changed = true;
        }
        if changed {
            self.dirty_contacts.push(cx);
            self.schedule_sla(cx);
        }
    }

    /// `await_customer`: pauses the contact's running clocks if its policy
    /// says so; whether anything paused.
    pub(super) fn pause_clocks(&mut self, cx: u32, now: DateTime<Utc>) -> bool {
        let spec = Arc::clone(&self.spec);
        let Some(s) = self.slot_mut(cx) else { return false };
        let Some((p, _)) = spec.policy(s.c.sla_policy.as_deref()) else {
            return false;
        };
        if !p.pause_on_customer {
            return false;
        }
        let cal = p.calendar.as_deref();
        let mut paused = false;
        for k in s.c.clocks.iter_mut().filter(|k| k.running()) {
            k.pause(cal, now);
            paused = true;
        }
        if paused {
            self.dirty_contacts.push(cx);
            self.schedule_sla(cx);
        }
        paused
    }

    /// Schedules the contact's timer at the earliest next threshold of its
    /// clocks, and keeps its at-risk mark and its queue's count in step.
    pub(super) fn schedule_sla(&mut self, cx: u32) {
        let spec = Arc::clone(&self.spec);
        let Some(s) = self.slot(cx) else { return };
        let at_risk = s.c.clocks.iter().any(SlaClock::at_risk);
        let Some((p, fallback)) = spec.policy(s.c.sla_policy.as_deref()) else {
            self.cancel_sla(cx);
            self.set_at_risk(cx, at_risk);
            return;
        };
        if fallback {
            let missing = s.c.sla_policy.clone().unwrap_or_default();
            self.policy_gone(&missing, &p.name);
        }
        let Some(s) = self.slot(cx) else { return };
        let cal = p.calendar.as_deref();
        let ch = s.c.channel;
        let next =
            s.c.clocks
                .iter()
                .filter_map(|k| k.next(cal, p.target(k.clock, ch)?, &p.warnings))
                .min();
        let unchanged = s.sla_at == next;
        self.set_at_risk(cx, at_risk);
        // `sla_at` is set exactly while its timer is scheduled (a fired
        // timer clears it), so an unchanged deadline keeps its entry: most
        // stops (the queue-wait clock at an accept) leave the nearest
        // threshold where it was.
        if unchanged {
            return;
        }
        self.cancel_sla(cx);
        if let Some(at) = next {
            self.timers.insert(at, Timer::Sla(cx));
            if let Some(s) = self.slot_mut(cx) {
                s.sla_at = Some(at);
            }
        }
    }

    /// The nearest breach among the contact's running clocks.
    pub(super) fn breach_at(&self, cx: u32) -> Option<DateTime<Utc>> {
        let s = self.slot(cx)?;
        let (p, _) = self.spec.policy(s.c.sla_policy.as_deref())?;
        let cal = p.calendar.as_deref();
        s.c.clocks
            .iter()
            .filter_map(|k| k.due_at(cal, p.target(k.clock, s.c.channel)?, sla::BREACH))
            .min()
    }

    pub(super) fn cancel_sla(&mut self, cx: u32) {
        if let Some(at) = self.slot_mut(cx).and_then(|s| s.sla_at.take()) {
            self.timers.cancel(at, Timer::Sla(cx));
        }
    }

    /// Logs once per missing policy that its contacts run under the default.
    fn policy_gone(&mut self, missing: &str, default: &str) {
        if self.warned_policies.insert(missing.to_string()) {
            tracing::warn!(policy = %missing, default = %default, "A contact's SLA policy is no longer configured; its clocks run under the default policy.");
        }
    }

    pub(super) fn set_at_risk(&mut self, cx: u32, risk: bool) {
        let Some(s) = self.slot_mut(cx) else { return };
        if s.at_risk == risk {
            return;
        }
        s.at_risk = risk;
        let q = s.q;
        if let Some(slot) = self.queues.get_mut(q as usize) {
            slot.at_risk = if risk {
                slot.at_risk + 1
            } else {
                slot.at_risk.saturating_sub(1)
            };
        }
        self.mark_queue_changed(q);
    }

    /// Raises every threshold of the contact's clocks that is due and not
    /// yet fired (each once: recorded on the clock), then schedules the next.
    pub(super) fn fire_sla(&mut self, cx: u32, now: DateTime<Utc>) {
        let spec = Arc::clone(&self.spec);
        let Some(s) = self.contacts.get_mut(cx) else {
            return;
        };
        let Some((policy, _)) = spec.policy(s.c.sla_policy.as_deref()) else {
            return;
        };
        let cal = policy.calendar.as_deref();
        let c = &mut s.c;
        let mut alerts = Vec::new();
        for i in 0..c.clocks.len() {
            let Some(target) = policy.target(c.clocks[i].clock, c.channel) else {
                continue;
            };
            for share in c.clocks[i].due(cal, target, &policy.warnings, now) {
                let due_at = c.clocks[i].due_at(cal, target, share).unwrap_or(now);
                c.clocks[i].fired.push(sla::permille(share));
                let k = &c.clocks[i];
                let kind = sla::kind(share);
                let msg = SlaAlertMsg {
                    v: 1,
                    alert_id: sla::alert_id(&c.id, &k.label(), share),
                    kind,
                    contact_id: &c.id,
                    conversation_id: &c.conversation_id,
                    queue: &c.queue,
                    channel: c.channel,
                    policy: &policy.name,
                    clock: k.clock.as_str(),
                    run: (k.run > 0).then_some(k.run),
                    threshold: share,
                    target_secs: target,
                    elapsed_secs: k.elapsed_ms(cal, now) as f64 / 1000.0,
                    agent_id: c.agent(),
                    customer: AlertCustomer {
                        id: &c.customer.id,
                        tier: c.customer.tier.as_deref(),
                    },
                    due_at,
                    at: now,
                };
                alerts.push((
                    due_at,
                    Outbound {
                        subject: OutSubject::SlaAlert(kind),
                        msg_id: msg.alert_id.clone(),
                        payload: wire::to_json(&msg),
                        queue: Some(c.queue.clone()),
                    },
                ));
            }
        }
        if alerts.is_empty() {
            return;
        }
        // In the order they came due, across the contact's clocks.
        alerts.sort_by_key(|(due, _)| *due);
        self.out.extend(alerts.into_iter().map(|(_, o)| o));
        self.dirty_contacts.push(cx);
        self.schedule_sla(cx);
    }
}

//! Inputs read later than they were sent (after a downtime, behind the
//! other stream): an answer to an offer is late or not by when it was
//! sent, and a contact is received when its event was.

use super::*;

/// After a downtime the router holds the offer expiries back while one
/// source's backlog is read, and handles an input read after a later one
/// from the other source at that one's time: whether an answer was late
/// is decided by when it was sent.
#[test]
fn an_answer_sent_after_the_deadline_is_refused_even_while_the_expiry_is_held() {
    let agents =
        "[[agents]]\nid = \"a\"\nskills = { s = 5 }\ncapacity = { email = 4 }\ninitial_status = \"available\"\n";
    let mut e = engine(agents);
    let mut cids = Vec::new();
    for (n, at) in [(1, 0.0), (2, 0.5), (3, 1.0), (4, 1.5)] {
        e.on_inbound(
            &inbound(&n.to_string(), "email", &format!("c{n}"), json!({"queue": "q"})),
            t(at),
        )
        .expect("ok");
        let o = offers(&e.take_outputs());
        cids.push(o[0].1["contact_id"].as_str().expect("cid").to_string());
    }
    // No tick: the expiries (at 10, 10.5, 11 and 11.5 s) are held. Every
    // answer is read at 20 s.
    let answer = |e: &mut Engine, ty: &str, cid: &str, sent: Option<f64>| {
        if sent.is_some() {
            e.next_input_sent_at(sent.map(t));
        }
        let mut ev = agent_ev("a", ty, json!({"contact_id": cid}));
        ev.id = format!("{ty}-{cid}");
        e.on_agent(&ev, t(20.0)).expect("ok")
    };
    let late_accept = answer(&mut e, "accept", &cids[2], Some(11.0));
    assert!(
        matches!(late_accept, Outcome::Rejected(_)),
        "sent at the deadline: {late_accept:?}"
    );
    let late_decline = answer(&mut e, "decline", &cids[1], Some(10.6));
    assert!(
        matches!(late_decline, Outcome::Rejected(_)),
        "sent after it: {late_decline:?}"
    );
    let out = e.take_outputs();
    assert_eq!(events(&out, "rejected").len(), 2, "{out:?}");
    assert!(events(&out, "accepted").is_empty());
    // Sent in time, read late: it takes the contact.
    assert_eq!(answer(&mut e, "accept", &cids[3], Some(11.4)), Outcome::Applied);
    // Without a word on when it was sent (the engine's own clock), an
    // answer is on time until the expiry fires: the last one's time is
    // not carried over.
    assert_eq!(answer(&mut e, "accept", &cids[0], None), Outcome::Applied);
    assert_eq!(events(&e.take_outputs(), "accepted").len(), 2);
    // The two late ones are still offered until their expiry fires.
    e.on_tick(t(20.0));
    assert_eq!(events(&e.take_outputs(), "offer_expired").len(), 2);
}

/// An inbound event read after a later input of the other source is
/// handled at that input's time; the contact it opens without
/// `received_at` is still received when the event was sent, so its SLA
/// clock and its age start then. With `received_at`, that wins; with no
/// word on the sent time, the time it is handled.
#[test]
fn a_contact_opened_late_without_received_at_is_received_when_it_was_sent() {
    let mut e = engine("");
    let open = |e: &mut Engine, n: &str, extra: serde_json::Value, sent: Option<f64>| {
        e.next_input_sent_at(sent.map(t));
        let mut fields = json!({"queue": "q"});
        if let (Some(f), Some(x)) = (fields.as_object_mut(), extra.as_object()) {
            f.extend(x.clone());
        }
        e.on_inbound(&inbound(n, "email", n, fields), t(30.0)).expect("ok");
        let out = e.take_outputs();
        let q = events(&out, "queued");
        q[0]["waited_secs"].as_f64().expect("waited_secs")
    };
    assert_eq!(open(&mut e, "sent", json!({}), Some(5.0)), 25.0);
    let own = json!({"received_at": t(12.0).to_rfc3339()});
    assert_eq!(open(&mut e, "own", own, Some(5.0)), 18.0);
    assert_eq!(open(&mut e, "unsaid", json!({}), None), 0.0);
    // The first one's first-response clock (100 s, warning at half) runs
    // from 5 s: its warning is due at 55 s, not 80.
    assert_eq!(e.next_deadline(), Some(t(55.0)));
}

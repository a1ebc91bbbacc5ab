//! Answers to offers read while the router holds their expiries back
//! (after a downtime): late or not is decided by when they were sent.

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

//! The compiled binary: `kill -9` mid-run loses nothing and offers nothing
//! twice to a second agent; SIGTERM drains and exits 0; info logs carry no
//! message text or customer address.

use crate::support;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};
use support::binary::{wait_exit, Proc};
use support::{Client, NatsServer, WAIT};

const CFG: &str = r#"
[routing]
offer_timeout_secs = 120
[sla.policies.p]
first_response_secs = { email = 3600 }
[[queues]]
name = "q"
channels = ["email"]
skills = { s = 1 }
sla_policy = "p"
[[agents]]
id = "alpha"
skills = { s = 5 }
capacity = { email = 1 }
initial_status = "available"
[[agents]]
id = "beta"
skills = { s = 5 }
capacity = { email = 1 }
initial_status = "offline"
"#;

async fn spawn(dir: &std::path::Path, nats_url: &str, tag: &str) -> Proc {
    spawn_with(dir, nats_url, tag, &[]).await
}

async fn spawn_with(dir: &std::path::Path, nats_url: &str, tag: &str, env: &[(&str, String)]) -> Proc {
    // A router killed with -9 cannot release its lease: the next one takes
    // over when it lapses; keep that short here.
    let mut env = env.to_vec();
    env.push(("OMNIROUTE_RUNTIME__LEASE_TTL_SECS", "1".to_string()));
    support::binary::spawn(dir, CFG, nats_url, tag, &env).await
}

#[tokio::test]
async fn kill_9_and_restart_loses_nothing_and_never_offers_to_a_second_agent() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().expect("tmp");
    let mut c = Client::connect(&nats.url).await;
    // "four" is published right after the kill; until nats-server has seen
    // the dead router's connection close, its open pull request can still
    // take it, and such an input comes back after the ack wait (README,
    // "Durability and failover"). A short one keeps that within `WAIT`.
    let env = [("OMNIROUTE_NATS__ACK_WAIT_SECS", "2".to_string())];
    let mut p = spawn_with(dir.path(), &nats.url, "1", &env).await;

    c.contact("email", "one", json!({})).await;
    let o1 = c.any_offer("alpha").await;
    // beta logs in once alpha is busy, so who gets what never rests on a tie.
    c.agent("beta", "presence", json!({"status": "available"})).await;
    c.contact("email", "two", json!({})).await;
    let o2 = c.any_offer("beta").await;
    c.contact("email", "three", json!({})).await;
    c.expect("omni.event.contact.queued", WAIT, |v| v["conversation_id"] == "three")
        .await;
    let c1 = o1["contact_id"].as_str().expect("cid").to_string();
    let c2 = o2["contact_id"].as_str().expect("cid").to_string();
    c.agent("alpha", "accept", json!({"contact_id": c1})).await;
    c.expect("omni.event.contact.accepted", WAIT, |v| v["contact_id"] == c1.as_str())
        .await;

    p.child.kill().expect("SIGKILL");
    wait_exit(&mut p.child, Duration::from_secs(10));
    // While the router is down, a fourth customer writes in: JetStream keeps it.
    c.contact("email", "four", json!({})).await;

    let mut p2 = spawn_with(dir.path(), &nats.url, "2", &env).await;
    // The offer to beta went out before the crash (published, then recorded
    // as published in the journal): it still stands. beta accepts it; alpha
    // completes the pre-crash contact.
    c.agent("beta", "accept", json!({"contact_id": c2})).await;
    c.expect("omni.event.contact.accepted", WAIT, |v| v["contact_id"] == c2.as_str())
        .await;
    c.agent("alpha", "complete", json!({"contact_id": c1})).await;
    c.expect("omni.event.contact.completed", WAIT, |v| v["contact_id"] == c1.as_str())
        .await;
    // The waiting contact kept its place: alpha's freed slot takes "three", then "four".
    let o3 = c.any_offer("alpha").await;
    assert_eq!(o3["conversation_id"], "three");
    let c3 = o3["contact_id"].as_str().expect("cid").to_string();
    c.agent("alpha", "accept", json!({"contact_id": c3})).await;
    c.agent("alpha", "complete", json!({"contact_id": c3})).await;
    let o4 = c.any_offer("alpha").await;
    assert_eq!(o4["conversation_id"], "four");

    let rest = c.drain_received().await;
    for (s, v) in &rest {
        if s.starts_with("omni.offer.") && v["kind"] == "offer" {
            let to = &s["omni.offer.".len()..];
            let conv = v["conversation_id"].as_str().unwrap_or_default();
            let allowed = match conv {
                "one" | "three" | "four" => "alpha",
                _ => "beta",
            };
            assert_eq!(to, allowed, "{conv} offered to a second agent: {v}");
        }
    }
    p2.terminate();
}

#[tokio::test]
async fn sigterm_drains_and_exits_zero_and_logs_hold_no_customer_data() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().expect("tmp");
    let mut c = Client::connect(&nats.url).await;
    let mut p = spawn(dir.path(), &nats.url, "t").await;
    c.contact(
        "email",
        "private",
        json!({"customer": {"id": "cust-9", "address": "ana@example.com", "name": "Ana Ruiz"}, "subject": "Secret subject", "text": "My card number is CARD-SECRET-7f3a9c"}),
    )
    .await;
    c.any_offer("alpha").await;
    // A bad message too: its error is logged, never its content.
    c.publish_raw(
        "omni.inbound.email",
        br#"{"v":1,"text":"My card number is CARD-SECRET-7f3a9c"}"#.to_vec(),
    )
    .await;
    c.expect("omni.dlq.inbound", WAIT, |_| true).await;

    let started = Instant::now();
    kill(Pid::from_raw(p.child.id() as i32), Signal::SIGTERM).expect("SIGTERM");
    let status = wait_exit(&mut p.child, Duration::from_secs(30));
    assert!(status.success(), "exit status {status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "drain took {:?}",
        started.elapsed()
    );

    let mut log = String::new();
    std::fs::File::open(&p.log)
        .expect("log")
        .read_to_string(&mut log)
        .expect("read log");
    assert!(log.contains("Stopped."), "{log}");
    assert!(
        log.lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
        "JSON logs:\n{log}"
    );
    for secret in ["ana@example.com", "Ana Ruiz", "Secret subject", "CARD-SECRET-7f3a9c"] {
        assert!(!log.contains(secret), "log leaks {secret:?}:\n{log}");
    }
}

#[tokio::test]
async fn speaks_the_systemd_notify_protocol_with_a_watchdog() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().expect("tmp");
    let env = [("WATCHDOG_USEC", "400000".to_string())];
    // The harness gives the process its NOTIFY_SOCKET and returns once it
    // said READY=1 (and `/ready` agreed).
    let mut p = spawn_with(dir.path(), &nats.url, "n", &env).await;
    // Before READY=1, only its role (standing by until it holds the lease).
    assert!(
        p.before_ready.iter().all(|m| m.starts_with("STATUS=")),
        "ready comes first: {:?}",
        p.before_ready
    );
    let mut buf = [0u8; 256];
    let mut next = async |p: &mut Proc, what: &str| {
        let n = tokio::time::timeout(Duration::from_secs(20), p.notify.recv(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{what} within 20 s"))
            .expect("read the notify socket");
        String::from_utf8_lossy(&buf[..n]).to_string()
    };
    let mut statuses = p.before_ready.clone();
    let mut watchdogs = 0;
    while watchdogs < 2 || statuses.len() < 3 {
        match next(&mut p, "WATCHDOG=1 and the role").await {
            m if m.starts_with("STATUS=") => statuses.push(m),
            m => {
                assert_eq!(m, "WATCHDOG=1");
                watchdogs += 1;
            }
        }
    }
    assert_eq!(
        statuses,
        [
            omniroute::health::STATUS_STANDBY,
            omniroute::health::STATUS_LOADING,
            omniroute::health::STATUS_ACTIVE
        ],
        "its role, each change once"
    );
    kill(Pid::from_raw(p.child.id() as i32), Signal::SIGTERM).expect("SIGTERM");
    while next(&mut p, "STOPPING=1").await != "STOPPING=1" {}
    assert!(wait_exit(&mut p.child, Duration::from_secs(30)).success());
}

/// A short accept timeout, so the tests below can outlast it.
fn short_timeout() -> [(&'static str, String); 1] {
    [("OMNIROUTE_ROUTING__OFFER_TIMEOUT_SECS", "5".to_string())]
}

/// A router with a 5 s accept timeout that offered a contact to alpha:
/// the server, the router's directory, a client, the router, the offer
/// and the contact's id.
async fn offered_to_alpha() -> (NatsServer, tempfile::TempDir, Client, Proc, serde_json::Value, String) {
    offered_to_alpha_with(&short_timeout()).await
}

/// [`offered_to_alpha`] with the router's environment `env`.
async fn offered_to_alpha_with(
    env: &[(&str, String)],
) -> (NatsServer, tempfile::TempDir, Client, Proc, serde_json::Value, String) {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().expect("tmp");
    let mut c = Client::connect(&nats.url).await;
    let p = spawn_with(dir.path(), &nats.url, "1", env).await;
    c.contact("email", "one", json!({})).await;
    let offer = c.any_offer("alpha").await;
    let cid = offer["contact_id"].as_str().expect("cid").to_string();
    (nats, dir, c, p, offer, cid)
}

/// Kills the router (SIGKILL); while it is down, other agents keep working
/// (a backlog of several batches) and alpha accepts `offer` in time,
/// behind that backlog; then, once the offer's deadline has passed, a
/// customer writes (conversation `late`).
async fn down_with_an_accept_behind_a_backlog(c: &mut Client, p: &mut Proc, offer: &serde_json::Value, cid: &str) {
    p.child.kill().expect("SIGKILL");
    wait_exit(&mut p.child, Duration::from_secs(10));
    for _ in 0..700 {
        c.agent("beta", "presence", json!({"status": "offline"})).await;
    }
    c.agent("alpha", "accept", json!({"contact_id": cid})).await;
    past_deadline(offer).await;
    c.contact("email", "late", json!({})).await;
}

/// Returns once the offer's deadline has passed on the wall clock.
async fn past_deadline(offer: &serde_json::Value) {
    past(time_of(offer, "expires_at")).await
}

/// The instant a router message names in `field`.
fn time_of(v: &serde_json::Value, field: &str) -> chrono::DateTime<chrono::Utc> {
    v[field]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{field} in {v}"))
}

/// Returns once `t` has passed on the wall clock: these scenarios are about
/// an input published after (or before) a deadline while the router is
/// down, in another process, so the moment itself has to pass.
async fn past(t: chrono::DateTime<chrono::Utc>) {
    let left = (t - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(left + Duration::from_millis(300)).await;
}

/// Waits for the contact's `accepted` event, then checks that its offer
/// neither expired nor had an answer rejected (`why` otherwise).
async fn accepted_without_expiry(c: &mut Client, cid: &str, why: &str) {
    c.expect("omni.event.contact.accepted", WAIT, |v| v["contact_id"] == cid)
        .await;
    let rest = c.drain_received().await;
    assert!(
        !rest.iter().any(
            |(s, v)| (s == "omni.event.contact.offer_expired" || s == "omni.event.contact.rejected")
                && v["contact_id"] == cid
        ),
        "{why}: {rest:?}"
    );
}

#[tokio::test]
async fn an_accept_sent_while_the_router_was_down_wins_over_the_expiry_that_fell_due() {
    let (nats, dir, mut c, mut p, o, cid) = offered_to_alpha().await;
    down_with_an_accept_behind_a_backlog(&mut c, &mut p, &o, &cid).await;
    // The router comes back only after the offer's deadline, and reads the
    // late customer's message before that backlog ends: the accept is
    // handled after it, at its time, and still wins.
    let mut p2 = spawn_with(dir.path(), &nats.url, "2", &short_timeout()).await;
    accepted_without_expiry(&mut c, &cid, "the downtime counted against the agent").await;
    p2.terminate();
}

#[tokio::test]
async fn an_accept_sent_after_the_deadline_while_the_router_was_down_loses_to_the_expiry() {
    let (nats, dir, mut c, mut p, o, cid) = offered_to_alpha().await;
    // Stopped cleanly, with nothing in flight: a message delivered but not
    // acknowledged would hold the timers until its redelivery (see
    // src/daemon/catchup.rs), and this is about the order of the rest.
    p.terminate();
    // While the router is down, before the offer's deadline, a second agent
    // comes in...
    c.agent("beta", "presence", json!({"status": "available"})).await;
    // ...and the first accepts only after the deadline.
    past_deadline(&o).await;
    c.agent("alpha", "accept", json!({"contact_id": cid})).await;
    let mut p2 = spawn_with(dir.path(), &nats.url, "2", &short_timeout()).await;
    // Read in order of arrival, the expiry comes first: the contact goes to
    // the agent who came in, and the late accept does not apply.
    c.expect("omni.event.contact.offer_expired", WAIT, |v| {
        v["contact_id"] == cid.as_str()
    })
    .await;
    c.expect("omni.offer.beta", WAIT, |v| {
        v["kind"] == "offer" && v["contact_id"] == cid.as_str()
    })
    .await;
    let rejected = c
        .expect("omni.event.contact.rejected", WAIT, |v| v["contact_id"] == cid.as_str())
        .await;
    assert_eq!(rejected["agent_id"], "alpha");
    assert_eq!(
        rejected["error"],
        "contact is not offered to this agent (expired, withdrawn or closed)"
    );
    let rest = c.drain_received().await;
    assert!(
        !rest
            .iter()
            .any(|(s, v)| s == "omni.event.contact.accepted" && v["contact_id"] == cid.as_str()),
        "an accept sent after the deadline took the contact: {rest:?}"
    );
    p2.terminate();
}

#[tokio::test]
async fn a_reply_sent_after_the_breach_while_the_router_was_down_does_not_silence_it() {
    // The file's configuration with a 3 s first-response target.
    let sla = CFG.replace(
        "first_response_secs = { email = 3600 }",
        "first_response_secs = { email = 3 }",
    );
    assert_ne!(sla, CFG, "the target to shorten is in CFG");
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().expect("tmp");
    let mut c = Client::connect(&nats.url).await;
    let env = [("OMNIROUTE_RUNTIME__LEASE_TTL_SECS", "1".to_string())];
    let mut p = support::binary::spawn(dir.path(), &sla, &nats.url, "1", &env).await;
    c.contact("email", "one", json!({})).await;
    let queued = c.expect("omni.event.contact.queued", WAIT, |_| true).await;
    let cid = queued["contact_id"].as_str().expect("cid").to_string();
    c.any_offer("alpha").await;
    c.agent("alpha", "accept", json!({"contact_id": cid})).await;
    c.expect("omni.event.contact.accepted", WAIT, |v| v["contact_id"] == cid.as_str())
        .await;
    p.terminate();
    // The first reply goes out only after the 3 s target has passed (the
    // contact's clock started when it arrived, the `queued` event's time).
    past(time_of(&queued, "at") + chrono::Duration::seconds(3)).await;
    c.agent("alpha", "respond", json!({"contact_id": cid})).await;
    let mut p2 = support::binary::spawn(dir.path(), &sla, &nats.url, "2", &env).await;
    // Read in order of arrival, the breach comes first; the reply then
    // stops the clock.
    let b = c
        .expect("omni.alert.sla.breach", WAIT, |v| v["contact_id"] == cid.as_str())
        .await;
    assert_eq!(b["clock"], "first_response");
    c.expect("omni.event.contact.responded", WAIT, |v| {
        v["contact_id"] == cid.as_str()
    })
    .await;
    p2.terminate();
}

#[tokio::test]
async fn a_contact_from_a_downtime_longer_than_the_accept_timeout_gets_the_whole_timeout() {
    let (nats, dir, mut c, mut p, _, cid) = offered_to_alpha().await;
    c.agent("alpha", "accept", json!({"contact_id": cid})).await;
    c.expect("omni.event.contact.accepted", WAIT, |v| v["contact_id"] == cid.as_str())
        .await;
    p.terminate();
    // While the router is down, the contact is completed and a new one
    // arrives; the router comes back more than an accept timeout later.
    c.agent("alpha", "complete", json!({"contact_id": cid})).await;
    let sent = chrono::Utc::now();
    c.contact("email", "two", json!({})).await;
    past(sent + chrono::Duration::seconds(5)).await;
    let mut p2 = spawn_with(dir.path(), &nats.url, "2", &short_timeout()).await;
    // Handled at its arrival, it is offered with the whole 5 s from now,
    // not from that arrival (which would be over before it is sent).
    let two = c
        .expect("omni.offer.alpha", WAIT, |v| {
            v["kind"] == "offer" && v["conversation_id"] == "two"
        })
        .await;
    let seen = chrono::Utc::now();
    assert!(time_of(&two, "expires_at") > seen, "an offer already expired: {two}");
    let cid2 = two["contact_id"].as_str().expect("cid").to_string();
    c.agent("alpha", "accept", json!({"contact_id": cid2})).await;
    c.expect("omni.event.contact.accepted", WAIT, |v| {
        v["contact_id"] == cid2.as_str()
    })
    .await;
    p2.terminate();
}

/// The router resumes at the time it stopped, not at the wall clock, so
/// what it does at start-up comes before the inputs that arrived while it
/// was down, in its events' times too: a contact offered at the restart
/// (alpha has a second slot now) is not offered after a contact that
/// arrived during the downtime is queued. Stopped cleanly after an idle
/// second, it resumes at the stop, not at its last busy moment.
#[tokio::test]
async fn what_the_router_does_at_a_restart_comes_before_the_downtimes_inputs() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().expect("tmp");
    let mut c = Client::connect(&nats.url).await;
    let mut p = spawn(dir.path(), &nats.url, "1").await;
    c.contact("email", "one", json!({})).await;
    let one = c.any_offer("alpha").await;
    let cid = one["contact_id"].as_str().expect("cid").to_string();
    c.agent("alpha", "accept", json!({"contact_id": cid})).await;
    c.expect("omni.event.contact.accepted", WAIT, |v| v["contact_id"] == cid.as_str())
        .await;
    // Nobody is free for "two": it waits.
    c.contact("email", "two", json!({})).await;
    c.expect("omni.event.contact.queued", WAIT, |v| v["conversation_id"] == "two")
        .await;
    // The router stays up, idle, for a second before it is stopped.
    past(chrono::Utc::now() + chrono::Duration::seconds(1)).await;
    // In whole milliseconds, as the router keeps and writes times.
    let stop = chrono::DateTime::from_timestamp_millis(chrono::Utc::now().timestamp_millis()).expect("now");
    p.terminate();
    c.contact("email", "three", json!({})).await;
    past(chrono::Utc::now() + chrono::Duration::seconds(1)).await;
    let two_slots = CFG.replacen("capacity = { email = 1 }", "capacity = { email = 2 }", 1);
    let mut p2 = support::binary::spawn(dir.path(), &two_slots, &nats.url, "2", &[]).await;
    let offered = c
        .expect("omni.event.contact.offered", WAIT, |v| v["conversation_id"] == "two")
        .await;
    let queued = c
        .expect("omni.event.contact.queued", WAIT, |v| v["conversation_id"] == "three")
        .await;
    assert!(
        time_of(&offered, "at") <= time_of(&queued, "at"),
        "offered at the restart {} after a contact of the downtime queued {}",
        offered["at"],
        queued["at"]
    );
    // Stopped cleanly, it resumes where it stopped, not at its last busy
    // moment (two queued a second before the stop).
    assert!(
        time_of(&offered, "at") >= stop,
        "offered at the restart {} before the stop {stop}",
        offered["at"]
    );
    p2.terminate();
}

/// Runs a second router with `config` and `env` that aborts right after
/// its first journal entry with outbound messages (`after_journal`), as
/// `kill -9` would there; `what` names that entry for the failure.
fn crash_at_first_journal_entry(
    dir: &std::path::Path,
    config: &str,
    nats_url: &str,
    env: &[(&str, String)],
    what: &str,
) {
    let mut crashing = env.to_vec();
    crashing.push(("OMNIROUTE_FAILPOINT", "after_journal".to_string()));
    let mut p = support::binary::start(&["run"], dir, config, nats_url, "2", &crashing);
    let status = wait_exit(&mut p.child, WAIT);
    assert_eq!(
        status.signal(),
        Some(Signal::SIGABRT as i32),
        "the second router did not stop at {what}: {status:?}"
    );
}

/// A crash at the restart itself, before the downtime's inputs are read:
/// the second router commits what it does as it starts (an offer to the
/// agent its new configuration gave a second slot) and dies right after.
/// The third start resumes at the time the first router stopped, which the
/// second recorded with its commit, not at that commit's wall-clock time
/// (after the offer's deadline): so the accept sent in time during the
/// downtime still wins over the expiry, as it would have without the
/// second crash.
#[tokio::test]
async fn a_crash_at_the_restart_does_not_let_an_expiry_overtake_an_accept_of_the_downtime() {
    // Inputs in flight at a crash come back after the ack wait: short here.
    let mut env = short_timeout().to_vec();
    env.push(("OMNIROUTE_NATS__ACK_WAIT_SECS", "2".to_string()));
    let (nats, dir, mut c, mut p, o, cid) = offered_to_alpha_with(&env).await;
    // Nobody is free for "two": it waits.
    c.contact("email", "two", json!({})).await;
    c.expect("omni.event.contact.queued", WAIT, |v| v["conversation_id"] == "two")
        .await;
    p.child.kill().expect("SIGKILL");
    wait_exit(&mut p.child, Duration::from_secs(10));
    c.agent("alpha", "accept", json!({"contact_id": cid})).await;
    past_deadline(&o).await;

    let two_slots = CFG.replacen("capacity = { email = 1 }", "capacity = { email = 2 }", 1);
    env.push(("OMNIROUTE_RUNTIME__LEASE_TTL_SECS", "1".to_string()));
    crash_at_first_journal_entry(dir.path(), &two_slots, &nats.url, &env, "its start-up commit");
    let mut p3 = support::binary::spawn(dir.path(), &two_slots, &nats.url, "3", &env).await;
    let why = "the second start's commit time let the expiry overtake the accept";
    accepted_without_expiry(&mut c, &cid, why).await;
    p3.terminate();
}

/// A crash in the middle of a restart's catch-up: the second router reads
/// a customer's message that arrived after the offer's deadline while the
/// agent stream's backlog, the accept sent in time at its end, is still
/// being read; it journals that message (its clock now past the deadline,
/// its timers still held at the first stop) and dies. The third start
/// resumes its timers where they were held, not at the second's clock, so
/// the accept still wins over the expiry.
#[tokio::test]
async fn a_crash_during_the_catch_up_keeps_the_timers_where_they_were_held() {
    let mut env = short_timeout().to_vec();
    env.push(("OMNIROUTE_NATS__ACK_WAIT_SECS", "2".to_string()));
    let (nats, dir, mut c, mut p, o, cid) = offered_to_alpha_with(&env).await;
    down_with_an_accept_behind_a_backlog(&mut c, &mut p, &o, &cid).await;

    env.push(("OMNIROUTE_RUNTIME__LEASE_TTL_SECS", "1".to_string()));
    crash_at_first_journal_entry(
        dir.path(),
        CFG,
        &nats.url,
        &env,
        "its first journal entry with messages",
    );
    let mut p3 = support::binary::spawn(dir.path(), CFG, &nats.url, "3", &env).await;
    let why = "the second router's clock let the expiry overtake the accept";
    accepted_without_expiry(&mut c, &cid, why).await;
    p3.terminate();
}

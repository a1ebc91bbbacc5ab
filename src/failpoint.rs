//! Crash points for tests. With `OMNIROUTE_FAILPOINT=<name>` in its
//! environment the process aborts the first time it reaches the point of
//! that name: no destructor runs and nothing more is written, published or
//! acknowledged, as with `kill -9`. A test can so stop the router between
//! two chosen steps of the commit protocol (see `daemon::commit`) rather
//! than at a random moment. Unset, as in any deployment, a point costs one
//! read of a value set once.
//!
//! Points:
//! - `after_journal`: a batch with outbound messages is in the journal;
//!   none of them is published and none of its inputs acknowledged;
//! - `after_publish`: a round's messages are published (JetStream
//!   acknowledged them); its inputs are not acknowledged.

use std::sync::OnceLock;

static POINT: OnceLock<Option<String>> = OnceLock::new();

/// Aborts the process if `OMNIROUTE_FAILPOINT` names this point.
pub fn hit(name: &str) {
    let point = POINT.get_or_init(|| std::env::var("OMNIROUTE_FAILPOINT").ok().filter(|p| !p.is_empty()));
    if point.as_deref() == Some(name) {
        // Straight to stderr: the log pipeline may not flush before the abort.
        eprintln!("omniroute: crash point {name} reached (OMNIROUTE_FAILPOINT); aborting");
        std::process::abort();
    }
}

//! What ends an active routing session first: shutdown, the lease lost, a
//! consumer failing, or the routing loop ending (with its result).
//!
//! Invariant: a consumer that ends cleanly before shutdown is never taken
//! as the cause. It does so only when the routing loop has dropped its end
//! of the input queue, so the loop has ended (or is ending) and its result
//! is the cause: a fenced journal append means step down and stand by.
//! Taking the consumer's end instead stopped the process after a takeover
//! whose first append was refused (a chaos run: "Agent consumer ended").

use crate::bus::BusError;
use crate::daemon::DaemonError;
use std::time::Duration;
use tokio::task::{JoinError, JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

/// A consumer task's name and result.
pub(crate) type ConsumerEnd = (String, Result<(), BusError>);

/// What ended an active session's supervision first.
#[derive(Debug)]
pub(crate) enum Ended {
    Shutdown,
    LeaseLost,
    /// A consumer failed (or ended while the routing loop still ran).
    Consumer(String),
    /// The routing loop ended, with its result.
    Core(Result<Result<(), DaemonError>, JoinError>),
}

/// How long a consumer that saw the routing loop's queue close waits for
/// the loop's own result (it is already ending: its receiver is gone).
const CORE_END_WAIT: Duration = Duration::from_secs(5);

/// Waits for the first of: shutdown, the lease lost, a consumer's end, the
/// routing loop's end. `core` has completed iff the answer is
/// [`Ended::Core`] (it must not be awaited again then).
pub(crate) async fn first_end(
    consumers: &mut JoinSet<ConsumerEnd>,
    core: &mut JoinHandle<Result<(), DaemonError>>,
    shutdown: &CancellationToken,
    lost: &CancellationToken,
) -> Ended {
    tokio::select! {
        biased;
        _ = shutdown.cancelled() => Ended::Shutdown,
        _ = lost.cancelled() => Ended::LeaseLost,
        Some(r) = consumers.join_next() => match r {
            Ok((name, Ok(()))) if !shutdown.is_cancelled() => {
                match tokio::time::timeout(CORE_END_WAIT, &mut *core).await {
                    Ok(r) => Ended::Core(r),
                    Err(_) => Ended::Consumer(format!("{name} ended")),
                }
            }
            Ok((name, Ok(()))) => Ended::Consumer(format!("{name} ended")),
            Ok((name, Err(e))) => Ended::Consumer(format!("{name}: {e}")),
            Err(e) => Ended::Consumer(format!("consumer task: {e}")),
        },
        r = &mut *core => Ended::Core(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The race a loaded router hit: the consumer notices the routing
    /// loop's queue closed and ends before the loop's task has finished.
    #[tokio::test(start_paused = true)]
    async fn a_consumer_ending_first_yields_to_the_routing_loops_result() {
        let (shutdown, lost) = (CancellationToken::new(), CancellationToken::new());
        let mut consumers = JoinSet::new();
        consumers.spawn(async { ("Agent consumer".to_string(), Ok(())) });
        let mut core = tokio::spawn(async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Err(DaemonError::Bus(BusError::Fenced("the journal moved on".into())))
        });
        match first_end(&mut consumers, &mut core, &shutdown, &lost).await {
            Ended::Core(Ok(Err(DaemonError::Bus(e)))) => assert!(e.is_fenced(), "{e}"),
            other => panic!("the routing loop's result was not taken: {other:?}"),
        }
    }

    /// A consumer that ends cleanly while the loop keeps running (which
    /// should not happen) is still reported, after the bounded wait.
    #[tokio::test(start_paused = true)]
    async fn a_consumer_ending_while_the_loop_runs_is_reported() {
        let (shutdown, lost) = (CancellationToken::new(), CancellationToken::new());
        let mut consumers = JoinSet::new();
        consumers.spawn(async { ("Inbound consumer".to_string(), Ok(())) });
        let mut core = tokio::spawn(std::future::pending::<Result<(), DaemonError>>());
        match first_end(&mut consumers, &mut core, &shutdown, &lost).await {
            Ended::Consumer(why) => assert_eq!(why, "Inbound consumer ended"),
            other => panic!("expected the consumer's end: {other:?}"),
        }
        core.abort();
    }

    /// A consumer's error is the cause, at once.
    #[tokio::test(start_paused = true)]
    async fn a_consumer_error_is_the_cause() {
        let (shutdown, lost) = (CancellationToken::new(), CancellationToken::new());
        let mut consumers = JoinSet::new();
        consumers.spawn(async {
            (
                "Agent consumer".to_string(),
                Err(BusError::ConsumerDeleted("OMNI_AGENT/omniroute".into())),
            )
        });
        let mut core = tokio::spawn(std::future::pending::<Result<(), DaemonError>>());
        match first_end(&mut consumers, &mut core, &shutdown, &lost).await {
            Ended::Consumer(why) => assert!(why.starts_with("Agent consumer: "), "{why}"),
            other => panic!("expected the consumer's error: {other:?}"),
        }
        core.abort();
    }
}

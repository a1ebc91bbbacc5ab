//! omniroute: an omnichannel contact-routing daemon.
//!
//! Data flows one way: NATS consumers (`bus`) → the pure routing core
//! (`routing`, `sla`) → the commit protocol (`daemon`) → NATS publishes.
//!
//! | module | role |
//! |---|---|
//! | [`adapters`] | the channel adapters' pure decoders (chat, social, IVR, email) |
//! | [`config`] | TOML + environment layering, `validate()` listing every problem |
//! | [`domain`] | the wire contract's types and decoders |
//! | [`routing`] | the pure engine: queues, agents, skills, strategies, offers |
//! | [`sla`] | pure first-response clock arithmetic |
//! | [`bus`] | the only NATS code: streams, consumers, publisher, the state journal |
//! | [`daemon`] | the engine's owner task and the commit protocol |
//! | [`store`] | the journal's entries and snapshots, the outbox, remembered ids |
//! | [`http`] | `/live`, `/ready`, `/metrics`; the webhook listener |
//! | [`telemetry`] | logging set-up and metric names |
#![forbid(unsafe_code)]

pub mod adapters;
pub mod bus;
pub mod calendar;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod domain;
pub mod failpoint;
pub mod health;
pub mod http;
pub mod notify;
pub mod query;
pub mod routing;
pub mod sinks;
pub mod sla;
pub mod store;
mod supervise;
pub mod telemetry;

use config::{Config, Problem};
use daemon::{Daemon, DaemonError};
use futures::future::BoxFuture;
use health::Readiness;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("configuration is invalid:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Config(Vec<Problem>),
    #[error(transparent)]
    Bus(#[from] bus::BusError),
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    #[error("the HTTP listener failed: {0}")]
    Http(String),
}

/// The bound listeners `run` serves on (tests bind port 0).
pub struct Listeners {
    /// `[http] listen`: `/live`, `/ready`, `/metrics`; keep it private.
    pub ops: TcpListener,
    /// `[webhooks] listen`: the webhook adapters, when any is enabled.
    pub webhooks: Option<TcpListener>,
    /// Kept equal to whether `/ready` answers 200 (`true` first at the
    /// moment systemd hears `READY=1`): for a process embedding the daemon,
    /// or a test, to wait on instead of polling `/ready`.
    pub ready: Option<tokio::sync::watch::Sender<bool>>,
}

/// Runs the daemon until `shutdown` is cancelled, then drains: intake stops,
/// in-flight work is committed within `runtime.shutdown_grace_secs`, and the
/// function returns. The enabled webhook adapters are served beside the
/// router, on their own NATS connection, whether or not this instance holds
/// the routing lease (so every instance behind a load balancer takes
/// webhooks).
///
/// The daemon's futures are boxed here (as are [`run_with_clock`]'s and
/// [`run_adapter`]'s): the state machine is then compiled once, in this
/// crate, instead of again in every binary that awaits it (the daemon,
/// the integration tests and each benchmark took minutes of CI each).
pub fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> BoxFuture<'static, Result<(), RunError>> {
    run_with_clock(config, listeners, shutdown, clock::Clock::system())
}

/// [`run`] on a given wall clock (tests start it at a chosen instant).
pub fn run_with_clock(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
    clock: clock::Clock,
) -> BoxFuture<'static, Result<(), RunError>> {
    Box::pin(run_daemon(config, listeners, shutdown, clock))
}

async fn run_daemon(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
    clock: clock::Clock,
) -> Result<(), RunError> {
    let spec = Arc::new(config.validate().map_err(RunError::Config)?);
    let adapters = config.adapter_specs().map_err(RunError::Config)?;
    let sinks = config.sink_specs().map_err(RunError::Config)?;
    let cfg = Arc::new(config);
    let ready = Arc::new(Readiness::followed_by(listeners.ready));
    let http_stop = CancellationToken::new();
    let (query_tx, queries) = query::channel();
    let api = cfg
        .http
        .api_token
        .clone()
        .filter(|t| !t.0.is_empty())
        .map(|t| (t, query_tx));
    let mut http_task = tokio::spawn(http::serve(
        listeners.ops,
        Arc::clone(&ready),
        telemetry::metrics_handle(),
        api,
        http_stop.clone(),
    ));
    if listeners.webhooks.is_none() && adapters.iter().any(|a| a.kind.is_webhook()) {
        tracing::warn!("Webhook adapters are enabled but no webhook listener was given; they are not served.");
    }
    let mut webhooks = (!adapters.is_empty()).then(|| {
        tokio::spawn(serve_adapters(
            Arc::clone(&cfg),
            adapters,
            listeners.webhooks,
            Arc::new(Readiness::default()),
            http_stop.clone(),
        ))
    });
    // Alert sinks run on every instance, active or standby: they share
    // each sink's durable consumer, so an alert goes out once either way.
    let sink_task = (!sinks.is_empty()).then(|| tokio::spawn(serve_sinks(Arc::clone(&cfg), sinks, http_stop.clone())));
    let result = tokio::select! {
        r = run_routing(Arc::clone(&cfg), spec, Arc::clone(&ready), queries, shutdown, clock) => r,
        r = &mut http_task => Err(RunError::Http(match r {
            Ok(Ok(())) => "stopped".into(),
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        })),
        // The adapters end only with the process: earlier (an error, a
        // panic) the daemon exits rather than run on without its inputs.
        r = async {
            match webhooks.as_mut() {
                Some(w) => w.await,
                None => std::future::pending().await,
            }
        } => Err(RunError::Http(match r {
            Ok(Ok(())) => "the channel adapters stopped".into(),
            Ok(Err(e)) => format!("the channel adapters stopped: {e}"),
            Err(e) => format!("the channel adapters failed: {e}"),
        })),
    };
    ready.set_draining();
    http_stop.cancel();
    let _ = http_task.await;
    if let Some(w) = webhooks.filter(|w| !w.is_finished()) {
        let _ = w.await;
    }
    if let Some(t) = sink_task {
        let _ = t.await;
    }
    result
}

/// The alert sinks, each on its own task and durable consumer, on their
/// own NATS connection (a slow sink never touches routing).
async fn serve_sinks(cfg: Arc<Config>, sinks: Vec<sinks::SinkSpec>, stop: CancellationToken) {
    let mut nats = cfg.nats.clone();
    nats.client_name = format!("{}-sinks", nats.client_name);
    let client = match bus::connect_in_background(&nats, Arc::new(Readiness::default()), &stop).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "Alert sinks cannot connect to NATS.");
            return;
        }
    };
    let mut tasks: JoinSet<()> = JoinSet::new();
    for spec in sinks {
        tasks.spawn(sinks::run::run(
            spec,
            client.clone(),
            cfg.nats.subject_prefix.clone(),
            stop.clone(),
        ));
    }
    while tasks.join_next().await.is_some() {}
}

/// `omniroute adapter NAME`: one adapter alone, with the operator
/// endpoints (`/ready` is 200 while its NATS connection is up).
pub fn run_adapter(
    config: Config,
    name: &str,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> BoxFuture<'static, Result<(), RunError>> {
    Box::pin(run_one_adapter(config, name.to_string(), listeners, shutdown))
}

async fn run_one_adapter(
    config: Config,
    name: String,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let specs = config.validate_adapters().map_err(RunError::Config)?;
    let Some(spec) = specs.into_iter().find(|s| s.name == name) else {
        return Err(RunError::Config(vec![Problem::new(
            format!("adapters.{name}"),
            "missing",
            "no enabled adapter of this name in the configuration",
        )]));
    };
    let ready = Arc::new(Readiness::followed_by(listeners.ready));
    ready.set_streams_ok(true);
    let stop = CancellationToken::new();
    let ops = tokio::spawn(http::serve(
        listeners.ops,
        Arc::clone(&ready),
        telemetry::metrics_handle(),
        None,
        stop.clone(),
    ));
    let result = serve_adapters(
        Arc::new(config),
        vec![spec],
        listeners.webhooks,
        Arc::clone(&ready),
        shutdown,
    )
    .await;
    ready.set_draining();
    stop.cancel();
    let _ = ops.await;
    result
}

async fn serve_adapters(
    cfg: Arc<Config>,
    specs: Vec<adapters::spec::AdapterSpec>,
    listener: Option<TcpListener>,
    ready: Arc<Readiness>,
    stop: CancellationToken,
) -> Result<(), RunError> {
    let mut nats = cfg.nats.clone();
    nats.client_name = format!("{}-adapters", nats.client_name);
    let client = bus::connect_in_background(&nats, ready, &stop).await?;
    let timeout = Duration::from_secs_f64(cfg.webhooks.publish_timeout_secs);
    let publisher = bus::publish::InboundPublisher::new(client, &cfg.nats.subject_prefix, timeout);
    let (hooks, pollers): (Vec<_>, Vec<_>) = specs.into_iter().partition(|s| s.kind.is_webhook());
    let mut tasks: JoinSet<()> = JoinSet::new();
    tasks.spawn({
        let (publisher, cfg, stop) = (publisher.clone(), Arc::clone(&cfg), stop.clone());
        async move { publisher.ensure_inbound_stream(&cfg.nats, &stop).await }
    });
    for spec in pollers {
        tasks.spawn(adapters::imap::run(spec, publisher.clone(), stop.clone()));
    }
    let result = match listener {
        Some(l) if !hooks.is_empty() => http::webhooks::serve(l, hooks, publisher, stop.clone())
            .await
            .map_err(|e| RunError::Http(e.to_string())),
        _ => {
            stop.cancelled().await;
            Ok(())
        }
    };
    stop.cancel();
    while tasks.join_next().await.is_some() {}
    result
}

/// How a routing session ended, short of an error to exit on.
enum SessionEnd {
    /// Shutdown was asked for and the session drained.
    Shutdown,
    /// The lease was lost or the journal refused an append: another
    /// instance routes now.
    SteppedDown(String),
}

async fn run_routing(
    cfg: Arc<Config>,
    spec: Arc<routing::spec::RouterSpec>,
    ready: Arc<Readiness>,
    queries: query::Queries,
    shutdown: CancellationToken,
    clock: clock::Clock,
) -> Result<(), RunError> {
    tracing::info!(url = %cfg.nats.url, prefix = %cfg.nats.subject_prefix, "Connecting to NATS.");
    let client = match bus::connect(&cfg.nats, Arc::clone(&ready), &shutdown).await {
        Ok(c) => c,
        Err(_) if shutdown.is_cancelled() => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let Some(bus) = with_setup_retries("JetStream set-up", &ready, &shutdown, || {
        bus::Bus::setup(client.clone(), &cfg.nats)
    })
    .await?
    else {
        return Ok(());
    };
    let bus = bus.following(ready.nats_connection());
    let ttl = Duration::from_secs_f64(cfg.runtime.lease_ttl_secs);
    let Some(lease) = with_setup_retries("Lease bucket set-up", &ready, &shutdown, || {
        bus.lease(&cfg.nats.lease_bucket, ttl, cfg.nats.stream_replicas)
    })
    .await?
    else {
        return Ok(());
    };
    // Sends `READY=1` if NATS is still connected (see `health`).
    ready.set_streams_ok(true);
    let watchdog = notify::watchdog_interval().map(|every| {
        let (stop, ready) = (shutdown.clone(), Arc::clone(&ready));
        // Fed only while the routing loop turns (it does at least every
        // HEARTBEAT, and while retrying a commit) or, on a standby, while it
        // polls the lease: a hung loop is restarted by systemd.
        let stale_after = every + daemon::HEARTBEAT;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            while tokio::select! { _ = tick.tick() => true, _ = stop.cancelled() => false } {
                if ready.alive_within(stale_after) {
                    notify::notify("WATCHDOG=1");
                } else {
                    tracing::error!("Routing loop has not turned; withholding the watchdog ping.");
                }
            }
        })
    });
    let result = loop {
        ready.set_active(false);
        let beat = || ready.beat();
        // While it waits for the lease, the instance keeps the journal's
        // state read up to date, so a takeover reads only the latest entries.
        // (At most once a second: each look is a short-lived consumer.)
        let stop_warm = CancellationToken::new();
        let every = (ttl / 6).clamp(Duration::from_secs(1), Duration::from_secs(2));
        let mut warming = tokio::spawn(daemon::keep_warm(
            bus.clone(),
            Arc::clone(&cfg),
            every,
            stop_warm.clone(),
        ));
        let acquired = lease.acquire(&shutdown, beat).await;
        stop_warm.cancel();
        let Some(revision) = acquired? else {
            break Ok(());
        };
        tracing::info!(instance = %lease.instance, "This instance holds the routing lease: routing.");
        ready.set_active(true);
        let (keep_stop, lost) = (CancellationToken::new(), CancellationToken::new());
        let keeper = tokio::spawn({
            let (lease, keep_stop, lost) = (lease.clone(), keep_stop.clone(), lost.clone());
            async move { lease.keep(revision, keep_stop, lost).await }
        });
        // A look at the journal under way is waited for, briefly (a slow
        // one, on a loaded server, must not hold up the takeover, which
        // then reads afresh), and only once the lease is being renewed:
        // waiting before would let a short lease lapse.
        let warm = match tokio::time::timeout(WARM_WAIT, &mut warming).await {
            Ok(w) => w.ok().flatten(),
            Err(_) => {
                warming.abort();
                tracing::info!("The standby's look at the journal is slow; reading the state afresh.");
                None
            }
        };
        let session = Session {
            cfg: &cfg,
            spec: &spec,
            ready: &ready,
            bus: &bus,
            queries: &queries,
            clock: clock.clone(),
        };
        let r = run_active(&session, &shutdown, &lost, warm).await;
        keep_stop.cancel();
        let _ = keeper.await;
        ready.set_state_loaded(false);
        match r {
            Ok(SessionEnd::Shutdown) => {
                if let Err(e) = lease.release().await {
                    tracing::warn!(error = %e, "Could not release the routing lease; a standby takes over when it lapses.");
                }
                break Ok(());
            }
            Ok(SessionEnd::SteppedDown(why)) => {
                tracing::warn!(reason = %why, "Stepped down: another instance routes now. Standing by.");
                // Refused by the journal while still holding the lease: give
                // it up, so the next to take it (perhaps this instance, after
                // reading the journal afresh) need not wait out the TTL. A
                // lease already lost is not ours to purge (the revision no
                // longer matches: nothing happens).
                let _ = lease.release().await;
            }
            Err(RunError::Daemon(DaemonError::Bus(e @ bus::BusError::Permanent { .. }))) => {
                let _ = lease.release().await;
                tracing::error!(error = %e, "Routing stopped on an error retrying cannot fix; retrying every 30 s.");
                metrics::counter!(telemetry::PERMANENT_ERRORS, "kind" => "bus").increment(1);
                ready.set_fatal(Some(e.to_string()));
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(30)) => {}
                    _ = shutdown.cancelled() => break Err(e.into()),
                }
                ready.set_fatal(None);
            }
            // NATS answered with timeouts or "no responders" (a cluster
            // electing leaders after losing a node, a server restarting):
            // start the session again, as a standby would, instead of
            // ending the process over it.
            Err(RunError::Daemon(DaemonError::Bus(e))) if e.is_transient() => {
                let _ = lease.release().await;
                tracing::warn!(error = %e, "The routing session ended on a transient NATS error; starting again.");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.cancelled() => break Ok(()),
                }
            }
            Err(e) => {
                let _ = lease.release().await;
                break Err(e);
            }
        }
    };
    if let Some(w) = watchdog {
        w.abort();
    }
    result
}

/// Runs a JetStream set-up step (streams, the lease bucket), retrying
/// while JetStream is not ready (a cluster still electing its leaders, a
/// server restarting, answers with timeouts); `None` when shutdown came
/// first. `/ready` says what is being waited for.
async fn with_setup_retries<T, F, Fut>(
    what: &str,
    ready: &Readiness,
    shutdown: &CancellationToken,
    mut step: F,
) -> Result<Option<T>, RunError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, bus::BusError>>,
{
    let mut backoff = Duration::from_millis(250);
    loop {
        match step().await {
            Ok(b) => {
                ready.set_fatal(None);
                return Ok(Some(b));
            }
            Err(e @ (bus::BusError::Setup { .. } | bus::BusError::Transient { .. })) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "{what} failed; retrying.");
                ready.set_fatal(Some(format!("{what}: {e}")));
                ready.beat();
            }
            Err(e) => return Err(e.into()),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.cancelled() => return Ok(None),
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// One stretch as the active router: state from the journal, consumers,
/// the routing loop, until shutdown (drained) or until `lost` (the lease
/// went elsewhere) or the journal refuses an append.
/// What a routing session runs on, borrowed from `run_routing`.
struct Session<'a> {
    cfg: &'a Arc<Config>,
    spec: &'a Arc<routing::spec::RouterSpec>,
    ready: &'a Arc<Readiness>,
    bus: &'a bus::Bus,
    queries: &'a query::Queries,
    clock: clock::Clock,
}

/// How long a takeover waits for a standby's look at the journal under
/// way before reading the state afresh instead.
const WARM_WAIT: Duration = Duration::from_secs(2);

async fn run_active(
    s: &Session<'_>,
    shutdown: &CancellationToken,
    lost: &CancellationToken,
    warm: Option<daemon::Warm>,
) -> Result<SessionEnd, RunError> {
    let Session {
        cfg,
        spec,
        ready,
        bus,
        queries,
        ref clock,
    } = *s;
    let started = tokio::select! {
        d = Daemon::start(Arc::clone(cfg), Arc::clone(spec), bus.clone(), Arc::clone(ready), clock.clone(), warm) => d,
        _ = lost.cancelled() => return Ok(SessionEnd::SteppedDown("lease lost during start-up".into())),
    };
    let daemon = match started {
        Ok(d) => d,
        Err(DaemonError::Bus(e)) if e.is_fenced() => return Ok(SessionEnd::SteppedDown(e.to_string())),
        Err(e) => return Err(e.into()),
    };
    let intake = shutdown.child_token();
    let hard_stop = CancellationToken::new();
    let (tx, rx) = mpsc::channel(cfg.nats.batch_size * 4);
    let mut consumers = JoinSet::new();
    let resume_window = daemon.resume_window();
    daemon::spawn_consumers(&mut consumers, bus, &cfg.nats, tx, &intake, resume_window, ready);
    let mut core = tokio::spawn(daemon.run_loop(rx, Arc::clone(queries), hard_stop.clone()));
    tracing::info!(streams = %bus::stream_name(&cfg.nats.subject_prefix, "{INBOUND,AGENT,OUTBOUND}"), "Routing.");

    // Supervise: a task that ends before shutdown is a failure.
    let first = supervise::first_end(&mut consumers, &mut core, shutdown, lost).await;
    let mut core_done = None;
    let failure = match first {
        supervise::Ended::Shutdown => None,
        supervise::Ended::LeaseLost => Some("the routing lease was lost".to_string()),
        supervise::Ended::Consumer(why) => (!shutdown.is_cancelled()).then_some(why),
        supervise::Ended::Core(r) => {
            let why = match &r {
                Ok(Err(DaemonError::Bus(e))) if e.is_fenced() => {
                    intake.cancel();
                    consumers.shutdown().await;
                    return Ok(SessionEnd::SteppedDown(e.to_string()));
                }
                Ok(Err(e)) => e.to_string(),
                Ok(Ok(())) => "routing loop ended".into(),
                Err(e) => format!("routing task: {e}"),
            };
            if let Ok(Err(DaemonError::Bus(e @ bus::BusError::Permanent { .. }))) = r {
                intake.cancel();
                consumers.shutdown().await;
                return Err(DaemonError::Bus(e).into());
            }
            core_done = Some(r);
            (!shutdown.is_cancelled()).then_some(why)
        }
    };
    intake.cancel();
    if lost.is_cancelled() && !shutdown.is_cancelled() {
        // Stop writing at once: whatever is un-acked is redelivered to the
        // instance that holds the lease now.
        hard_stop.cancel();
        core.abort();
        consumers.shutdown().await;
        return Ok(SessionEnd::SteppedDown("the routing lease was lost".into()));
    }
    ready.set_draining();
    notify::notify("STOPPING=1");
    if let Some(why) = failure {
        tracing::error!(reason = %why, "A long-lived task failed; stopping the daemon.");
        hard_stop.cancel();
        core.abort();
        return Err(DaemonError::TaskDied(why).into());
    }
    tracing::info!("Shutting down: intake stopped, committing in-flight work.");
    let grace = Duration::from_secs_f64(cfg.runtime.shutdown_grace_secs);
    let drain = async {
        while let Some(r) = consumers.join_next().await {
            if let Ok((name, Err(e))) = r {
                tracing::warn!(task = %name, error = %e, "Consumer ended with an error during shutdown.");
            }
        }
        match core_done {
            Some(r) => r,
            None => core.await,
        }
    };
    let result = match tokio::time::timeout(grace, drain).await {
        Ok(Ok(r)) => r.map(|()| SessionEnd::Shutdown).map_err(RunError::from),
        Ok(Err(e)) => Err(DaemonError::TaskDied(format!("routing task: {e}")).into()),
        Err(_) => {
            hard_stop.cancel();
            Err(DaemonError::GraceExceeded(grace).into())
        }
    };
    // Acks are buffered publishes; make sure they leave before we exit.
    if !ready.nats_connected() {
        tracing::warn!("NATS is unreachable at shutdown; unacked input will be redelivered.");
    } else {
        match tokio::time::timeout(Duration::from_secs(5), bus.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "Could not flush the NATS connection at shutdown."),
            Err(_) => {
                tracing::warn!("NATS did not take the final flush within 5 s; unacked input will be redelivered.")
            }
        }
    }
    tracing::info!("Stopped.");
    result
}

//! Everything that speaks NATS: the connection, the contract's streams, the
//! durable consumers, the publisher, and the key-value buckets that hold the
//! router's state. No other module imports `async_nats`.
//!
//! Errors carry whether they are transient: the daemon retries those (the
//! message stays un-acked) and stops on the rest.

pub mod alerts;
pub mod journal;
pub mod lease;
pub mod publish;

use crate::config::NatsConfig;
use crate::health::Readiness;
use async_nats::jetstream::{self, consumer::pull, kv, stream};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot connect to NATS at {url}: {message}")]
    Connect { url: String, message: String },
    #[error("stream {stream} exists but does not cover {subject} (it has {have:?}); add the subject or change nats.subject_prefix")]
    StreamMismatch {
        stream: String,
        subject: String,
        have: Vec<String>,
    },
    #[error("JetStream set-up failed for {what}: {message}")]
    Setup { what: String, message: String },
    #[error("consumer {0} was deleted on the server")]
    ConsumerDeleted(String),
    /// NATS unreachable or slow for a moment: retry.
    #[error("NATS {what} failed: {message}")]
    Transient { what: &'static str, message: String },
    /// Another router appended to the journal: this one is no longer the
    /// active router and must not write (it steps down).
    #[error("the journal moved on without this router ({0}); another instance is active")]
    Fenced(String),
    /// Retrying cannot help: an operator has to act.
    #[error("{what}: {message}; fix: {fix}")]
    Permanent { what: String, message: String, fix: String },
}

impl BusError {
    pub fn is_transient(&self) -> bool {
        matches!(self, BusError::Transient { .. })
    }

    pub fn is_fenced(&self) -> bool {
        matches!(self, BusError::Fenced(_))
    }
}

fn transient<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> BusError {
    move |e| BusError::Transient {
        what,
        message: e.to_string(),
    }
}

fn setup<E: std::fmt::Display>(what: impl Into<String>) -> impl FnOnce(E) -> BusError {
    let what = what.into();
    move |e| BusError::Setup {
        what,
        message: e.to_string(),
    }
}

/// Which consumer a delivery came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Inbound,
    Agent,
}

/// One JetStream message handed to the daemon; acked only through
/// [`Delivery::ack`], after its effects are durable.
pub struct Delivery {
    pub source: Source,
    pub subject: String,
    pub payload: Bytes,
    /// Stream sequence: a stable id for the dead letter of this message.
    pub stream_seq: u64,
    /// When JetStream stored it (its arrival time, whatever the delay since).
    pub published: chrono::DateTime<chrono::Utc>,
    /// Messages still waiting for this consumer after this one.
    pub pending: u64,
    /// Delivered before and not acknowledged (to a router that stopped, for
    /// one): JetStream sends it again.
    pub redelivered: bool,
    msg: jetstream::Message,
}

impl Delivery {
    pub async fn ack(&self) -> Result<(), BusError> {
        self.msg.ack().await.map_err(|e| transient("ack")(e))
    }
}

/// A message for the outbound stream.
pub struct Publish {
    pub subject: String,
    pub msg_id: String,
    pub payload: Bytes,
}

/// Stream names derive from the prefix: `omni` → `OMNI_INBOUND`.
pub fn stream_name(prefix: &str, what: &str) -> String {
    format!("{}_{what}", prefix.replace(['.', '-'], "_").to_uppercase())
}

#[derive(Clone)]
pub struct Bus {
    js: jetstream::Context,
    client: async_nats::Client,
    state_stream: stream::Stream,
    prefix: String,
    /// The key-value bucket earlier releases kept state in, when it exists:
    /// read once, to carry its contacts and agents into a new journal.
    legacy_state: Option<kv::Store>,
    /// The connection's state (see [`Bus::following`]): requests under way
    /// when it changes are abandoned ([`on_this_connection`]).
    connection: tokio::sync::watch::Receiver<bool>,
}

/// Publishes awaiting their JetStream ack at once. async-nats allows 5000
/// per context and blocks the next publish until one is awaited; the
/// oldest is awaited once a window is outstanding, so a window must stay
/// below that (the journal's appends share the context).
const PUBLISH_WINDOW: usize = 1000;

/// Connects, reporting connection changes to the readiness latch. Retries
/// the first connection until `token` is cancelled, so the daemon can start
/// before NATS does and say so on `/ready`.
pub async fn connect(
    cfg: &NatsConfig,
    ready: Arc<Readiness>,
    token: &CancellationToken,
) -> Result<async_nats::Client, BusError> {
    connect_with(cfg, ready, token, true).await
}

/// A client that connects (and reconnects) in the background: returns at
/// once, before any server answered. The adapters use it, so a webhook
/// answers 503 while NATS is away instead of not listening at all.
pub async fn connect_in_background(
    cfg: &NatsConfig,
    ready: Arc<Readiness>,
    token: &CancellationToken,
) -> Result<async_nats::Client, BusError> {
    connect_with(cfg, ready, token, false).await
}

async fn connect_with(
    cfg: &NatsConfig,
    ready: Arc<Readiness>,
    token: &CancellationToken,
    wait: bool,
) -> Result<async_nats::Client, BusError> {
    let err = |m: String| BusError::Connect {
        url: cfg.url.clone(),
        message: m,
    };
    let ready_events = Arc::clone(&ready);
    let mut opts = async_nats::ConnectOptions::new()
        .name(&cfg.client_name)
        .connection_timeout(Duration::from_secs(5))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .event_callback(move |ev| {
            let ready = Arc::clone(&ready_events);
            async move {
                match ev {
                    async_nats::Event::Connected => {
                        ready.set_nats_connected(true);
                        ready.set_nats_error(None);
                        tracing::info!("Connected to NATS.");
                    }
                    async_nats::Event::Disconnected => {
                        ready.set_nats_connected(false);
                        tracing::warn!("Disconnected from NATS; reconnecting.");
                    }
                    // Failed connection attempts (wrong credentials, TLS,
                    // refused) arrive here on every retry.
                    async_nats::Event::ClientError(e) => {
                        let error = e.to_string();
                        let error = error.strip_prefix("nats: ").unwrap_or(&error).to_string();
                        if ready.set_nats_error(Some(error.clone())) {
                            tracing::warn!(%error, "Cannot connect to NATS; retrying.");
                        } else {
                            tracing::debug!(%error, "Cannot connect to NATS; retrying.");
                        }
                    }
                    async_nats::Event::ServerError(e) => tracing::warn!(error = %e, "NATS server reported an error."),
                    other => tracing::info!(event = %other, "NATS connection event."),
                }
            }
        });
    if let Some(path) = &cfg.credentials_file {
        opts = opts
            .credentials_file(path)
            .await
            .map_err(|e| err(format!("credentials file {}: {e}", path.display())))?;
    }
    if let (Some(u), Some(p)) = (&cfg.user, &cfg.password) {
        opts = opts.user_and_password(u.clone(), p.0.clone());
    }
    if let Some(t) = &cfg.token {
        opts = opts.token(t.0.clone());
    }
    if cfg.tls.required {
        opts = opts.require_tls(true);
    }
    if let Some(ca) = &cfg.tls.ca_file {
        opts = opts.add_root_certificates(ca.clone());
    }
    if let (Some(c), Some(k)) = (&cfg.tls.cert_file, &cfg.tls.key_file) {
        opts = opts.add_client_certificate(c.clone(), k.clone());
    }
    let urls: Vec<String> = cfg
        .url
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let client = tokio::select! {
        r = opts.connect(urls) => r.map_err(|e| err(e.to_string()))?,
        _ = token.cancelled() => return Err(err("cancelled while connecting".into())),
    };
    if !wait {
        return Ok(client);
    }
    // With retry on initial connect the client comes back before it has
    // reached a server; JetStream set-up must wait for a real connection,
    // however long NATS takes (each failed attempt is logged and shown on
    // `/ready`), not time out and exit.
    if client.connection_state() == async_nats::connection::State::Connected {
        ready.set_nats_connected(true);
    } else {
        tokio::select! {
            _ = ready.wait_nats_connected() => {}
            _ = token.cancelled() => return Err(err("cancelled while connecting".into())),
        }
    }
    Ok(client)
}

/// Creates the contract's streams named in `which` (`INBOUND`, `AGENT`,
/// `OUTBOUND`) when missing, and checks existing ones cover their subjects.
/// Existing streams are never modified: a subject gap is an error, other
/// differences are reported in the log. The router runs it for all three;
/// an adapter run alone for `INBOUND`, so it can publish before a router
/// ever started (both may run it at once: a lost creation race is a
/// stream that exists).
pub async fn ensure_streams(js: &jetstream::Context, cfg: &NatsConfig, which: &[&str]) -> Result<(), BusError> {
    let p = &cfg.subject_prefix;
    let week = Duration::from_secs(7 * 86_400);
    let all = [
        ("INBOUND", vec![format!("{p}.inbound.>")]),
        ("AGENT", vec![format!("{p}.agent.>")]),
        (
            "OUTBOUND",
            vec![
                format!("{p}.offer.>"),
                format!("{p}.event.>"),
                format!("{p}.alert.>"),
                format!("{p}.dlq.>"),
            ],
        ),
    ];
    for (what, subjects) in all.into_iter().filter(|(w, _)| which.contains(w)) {
        let name = stream_name(p, what);
        match js.get_stream(&name).await {
            Ok(mut s) => {
                let info = s.info().await.map_err(setup(format!("stream {name}")))?;
                check_subjects(&name, &info.config.subjects, &subjects)?;
                if info.config.num_replicas != cfg.stream_replicas {
                    tracing::warn!(stream = %name, replicas = info.config.num_replicas, configured = cfg.stream_replicas, "Stream exists with other replicas than configured; leaving it as it is.");
                }
                if info.config.retention != stream::RetentionPolicy::Limits {
                    tracing::warn!(stream = %name, retention = ?info.config.retention, "Stream exists with non-limits retention; leaving it as it is.");
                }
                tracing::info!(stream = %name, "Stream checked.");
            }
            Err(e) if matches!(e.kind(), stream_not_found if is_not_found(&stream_not_found)) => {
                js.create_stream(stream::Config {
                    name: name.clone(),
                    subjects,
                    storage: stream::StorageType::File,
                    retention: stream::RetentionPolicy::Limits,
                    max_age: week,
                    num_replicas: cfg.stream_replicas,
                    duplicate_window: Duration::from_secs_f64(cfg.duplicate_window_secs),
                    ..Default::default()
                })
                .await
                .map_err(setup(format!("creating stream {name}")))?;
                tracing::info!(stream = %name, "Stream created.");
            }
            Err(e) => {
                return Err(BusError::Setup {
                    what: format!("stream {name}"),
                    message: e.to_string(),
                })
            }
        }
    }
    Ok(())
}

/// An existing stream must cover every subject the router uses on it.
fn check_subjects(stream: &str, have: &[String], want: &[String]) -> Result<(), BusError> {
    match want.iter().find(|w| !have.iter().any(|h| subject_covers(h, w))) {
        Some(w) => Err(BusError::StreamMismatch {
            stream: stream.to_string(),
            subject: w.clone(),
            have: have.to_vec(),
        }),
        None => Ok(()),
    }
}

/// True when a stream subject (possibly with wildcards) covers `want`.
pub fn subject_covers(have: &str, want: &str) -> bool {
    let mut h = have.split('.');
    let mut w = want.split('.');
    loop {
        match (h.next(), w.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(t)) if t != ">" => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

impl Bus {
    /// Creates or checks the contract's streams and the router's buckets.
    /// Existing streams are never modified: a subject gap is an error, other
    /// differences are reported in the log.
    pub async fn setup(client: async_nats::Client, cfg: &NatsConfig) -> Result<Bus, BusError> {
        let js = jetstream::new(client.clone());
        let p = &cfg.subject_prefix;
        ensure_streams(&js, cfg, &["INBOUND", "AGENT", "OUTBOUND"]).await?;
        let state_stream = journal::setup_stream(&js, p, cfg.stream_replicas).await?;
        let legacy_state = js.get_key_value(&cfg.state_bucket).await.ok();
        Ok(Bus {
            js,
            client,
            state_stream,
            prefix: p.clone(),
            legacy_state,
            // Never changes until `following` gives the real one.
            connection: tokio::sync::watch::channel(true).1,
        })
    }

    /// This bus, abandoning the requests of the routing path (journal
    /// appends and reads, publishes, the start's look at the backlog) that
    /// are under way when `connection` changes, as a restarted server never
    /// answers them: the caller retries on the new connection at once,
    /// instead of after the request's timeout with routing stalled.
    pub fn following(mut self, connection: tokio::sync::watch::Receiver<bool>) -> Bus {
        self.connection = connection;
        self
    }

    /// The journal, positioned at its current tip.
    pub async fn journal(&self) -> Result<journal::Journal, BusError> {
        let (js, stream, connection) = (self.js.clone(), self.state_stream.clone(), self.connection.clone());
        journal::Journal::open(js, stream, &self.prefix, connection).await
    }

    /// What a durable consumer holds: (stored, never delivered; delivered,
    /// not acknowledged). `None` when the consumer does not exist.
    pub async fn backlog(&self, cfg: &NatsConfig, source: Source) -> Result<Option<(u64, u64)>, BusError> {
        on_this_connection(&self.connection, self.backlog_now(cfg, source)).await
    }

    async fn backlog_now(&self, cfg: &NatsConfig, source: Source) -> Result<Option<(u64, u64)>, BusError> {
        let what = match source {
            Source::Inbound => "INBOUND",
            Source::Agent => "AGENT",
        };
        let stream = self
            .js
            .get_stream(stream_name(&self.prefix, what))
            .await
            .map_err(transient("reading a stream"))?;
        let Ok(mut c) = stream.get_consumer::<pull::Config>(&cfg.consumer_name).await else {
            return Ok(None);
        };
        let info = c.info().await.map_err(transient("reading a consumer"))?;
        Ok(Some((info.num_pending, info.num_ack_pending as u64)))
    }

    /// The routing lease (its bucket created when missing).
    pub async fn lease(&self, bucket: &str, ttl: Duration, replicas: usize) -> Result<lease::Lease, BusError> {
        lease::open(&self.js, bucket, ttl, replicas).await
    }

    /// The largest message the server takes.
    pub fn max_payload(&self) -> usize {
        self.client.max_payload()
    }

    /// Every record of the key-value bucket earlier releases kept state in
    /// (empty when there is none).
    pub async fn load_legacy_state(&self) -> Result<Vec<(String, Bytes)>, BusError> {
        match &self.legacy_state {
            Some(store) => load_bucket(store).await,
            None => Ok(Vec::new()),
        }
    }

    /// Pulls from the durable consumer of one stream into `tx` until `token`
    /// is cancelled. Returns `Err` only on a failure that a retry cannot mend.
    pub async fn consume(
        &self,
        cfg: &NatsConfig,
        source: Source,
        tx: mpsc::Sender<Delivery>,
        token: CancellationToken,
        resume_window: Option<Duration>,
        mut connection: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), BusError> {
        let p = &cfg.subject_prefix;
        let (what, filter) = match source {
            Source::Inbound => ("INBOUND", format!("{p}.inbound.>")),
            Source::Agent => ("AGENT", format!("{p}.agent.>")),
        };
        let name = stream_name(p, what);
        // Setting up is a few JetStream requests that can each wait out a
        // timeout while NATS is away; shutdown must not wait for them.
        let setup_consumer = || async {
            let stream = self
                .js
                .get_stream(&name)
                .await
                .map_err(setup(format!("stream {name}")))?;
            let consumer: jetstream::consumer::Consumer<pull::Config> = match stream
                .get_consumer(&cfg.consumer_name)
                .await
            {
                Ok(c) => c,
                Err(_) => {
                    // A router that has processed input before and lost its
                    // consumer must not replay the whole stream (days of it,
                    // beyond what it remembers for idempotency): it resumes
                    // from the start of its dedupe window. A first start takes
                    // the whole backlog.
                    let deliver_policy = match resume_window {
                        Some(w) => {
                            let start_time =
                                chrono::Utc::now() - chrono::Duration::from_std(w).unwrap_or(chrono::Duration::days(1));
                            tracing::warn!(stream = %name, from = %start_time, "Durable consumer missing; re-creating it from the start of the dedupe window.");
                            jetstream::consumer::DeliverPolicy::ByStartTime { start_time }
                        }
                        None => jetstream::consumer::DeliverPolicy::All,
                    };
                    stream
                        .create_consumer(pull::Config {
                            durable_name: Some(cfg.consumer_name.clone()),
                            description: Some("omniroute router".into()),
                            deliver_policy,
                            ack_policy: jetstream::consumer::AckPolicy::Explicit,
                            ack_wait: Duration::from_secs_f64(cfg.ack_wait_secs),
                            max_deliver: -1,
                            max_ack_pending: 20_000,
                            filter_subject: filter.clone(),
                            ..Default::default()
                        })
                        .await
                        .map_err(setup(format!("consumer {} on {name}", cfg.consumer_name)))?
                }
            };
            Ok::<_, BusError>(consumer)
        };
        // A cluster electing leaders (a node lost, a fresh start) answers
        // set-up requests with timeouts for a while: retry, do not end the
        // session over it.
        let mut wait = Duration::from_millis(100);
        let consumer = loop {
            // Abandoned when the connection drops meanwhile (see
            // `on_this_connection`): retried at once on the new one.
            let attempt = tokio::select! {
                c = on_this_connection(&connection, setup_consumer()) => c,
                _ = token.cancelled() => return Ok(()),
            };
            match attempt {
                Ok(c) => break c,
                Err(e) => {
                    tracing::warn!(stream = %name, error = %e, "Cannot set up the consumer yet; retrying.");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = token.cancelled() => return Ok(()),
                    }
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        };
        let mut backoff = Duration::from_millis(100);
        'outer: while !token.is_cancelled() {
            // Starting a pull can wait on the server; shutdown must not.
            let start = consumer
                .stream()
                .max_messages_per_batch(cfg.batch_size)
                .heartbeat(Duration::from_secs(5))
                .expires(Duration::from_secs(30))
                .messages();
            let messages = tokio::select! {
                m = start => m,
                _ = token.cancelled() => break,
            };
            let mut messages = match messages {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(stream = %name, error = %e, "Cannot start pulling; retrying.");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = token.cancelled() => break,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            loop {
                let next = tokio::select! {
                    n = messages.next() => n,
                    _ = token.cancelled() => break 'outer,
                    // NATS is back after a drop: a restarted server has
                    // forgotten the pull request this stream waits on, and
                    // the stream may wait for it without end (seen after a
                    // second quick restart). Pull afresh; anything the old
                    // pull was handed and we dropped comes back after the
                    // ack wait.
                    true = reconnected(&mut connection) => {
                        tracing::info!(stream = %name, "NATS is back; pulling afresh.");
                        continue 'outer;
                    }
                };
                match next {
                    None => continue 'outer,
                    Some(Ok(msg)) => {
                        backoff = Duration::from_millis(100);
                        let (stream_seq, published, pending, redelivered) = msg
                            .info()
                            .map(|i| (i.stream_sequence, i.published, i.pending, i.delivered > 1))
                            .unwrap_or((0, chrono::Utc::now(), 0, false));
                        let d = Delivery {
                            source,
                            subject: msg.subject.to_string(),
                            payload: msg.payload.clone(),
                            stream_seq,
                            published,
                            pending,
                            redelivered,
                            msg,
                        };
                        if tx.send(d).await.is_err() {
                            break 'outer;
                        }
                    }
                    Some(Err(e)) => match e.kind() {
                        pull::MessagesErrorKind::ConsumerDeleted => {
                            return Err(BusError::ConsumerDeleted(format!("{name}/{}", cfg.consumer_name)))
                        }
                        pull::MessagesErrorKind::MissingHeartbeat => {
                            tracing::warn!(stream = %name, "Missed a heartbeat from the server; pulling again.");
                            continue 'outer;
                        }
                        _ => {
                            tracing::warn!(stream = %name, error = %e, "Pull failed; retrying.");
                            tokio::select! {
                                _ = tokio::time::sleep(backoff) => {}
                                _ = token.cancelled() => break 'outer,
                            }
                            backoff = (backoff * 2).min(Duration::from_secs(5));
                            continue 'outer;
                        }
                    },
                }
            }
        }
        Ok(())
    }

    /// Publishes to the outbound stream and waits for every JetStream ack.
    /// `Nats-Msg-Id` makes a retry after a partial failure harmless.
    ///
    /// A message over the server's max payload can never be published;
    /// retrying it would stall all routing, so it is dropped and reported.
    /// (The core bounds what it puts in messages, so this is a last guard.)
    pub async fn publish_all(&self, msgs: &[Publish]) -> Result<(), BusError> {
        on_this_connection(&self.connection, self.publish_all_now(msgs)).await
    }

    async fn publish_all_now(&self, msgs: &[Publish]) -> Result<(), BusError> {
        let max = self.client.max_payload();
        // A sliding window: the oldest acknowledgement is awaited only once
        // PUBLISH_WINDOW are outstanding, so the server never idles between
        // windows waiting for the next one to arrive.
        let mut acks = std::collections::VecDeque::with_capacity(PUBLISH_WINDOW.min(msgs.len()));
        for m in msgs {
            if m.payload.len() + m.msg_id.len() + 64 > max {
                tracing::error!(subject = %m.subject, msg_id = %m.msg_id, bytes = m.payload.len(), max, "Outbound message over the server's max payload; dropped.");
                metrics::counter!(crate::telemetry::DROPPED_OVERSIZE, "what" => "publish").increment(1);
                continue;
            }
            let publish = jetstream::message::PublishMessage::build()
                .payload(m.payload.clone())
                .message_id(&m.msg_id);
            let ack = self
                .js
                .send_publish(m.subject.clone(), publish)
                .await
                .map_err(transient("publish"))?;
            acks.push_back(std::future::IntoFuture::into_future(ack));
            if acks.len() >= PUBLISH_WINDOW {
                if let Some(oldest) = acks.pop_front() {
                    oldest.await.map_err(transient("publish ack"))?;
                }
            }
        }
        futures::future::try_join_all(acks)
            .await
            .map_err(transient("publish ack"))?;
        Ok(())
    }

    /// Flushes the client's write buffer (acks are fire-and-forget publishes).
    pub async fn flush(&self) -> Result<(), BusError> {
        self.client.flush().await.map_err(transient("flush"))
    }
}

fn is_not_found(kind: &jetstream::context::GetStreamErrorKind) -> bool {
    matches!(kind, jetstream::context::GetStreamErrorKind::JetStream(e) if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
}

async fn load_bucket(store: &kv::Store) -> Result<Vec<(String, Bytes)>, BusError> {
    let keys: Vec<String> = store
        .keys()
        .await
        .map_err(transient("bucket keys"))?
        .try_collect()
        .await
        .map_err(transient("bucket keys"))?;
    let reads: Vec<_> = keys
        .into_iter()
        .map(|k| async move {
            store
                .get(k.clone())
                .await
                .map(|v| v.map(|v| (k, v)))
                .map_err(transient("state read"))
        })
        .collect();
    let values: Vec<Option<(String, Bytes)>> = futures::stream::iter(reads).buffer_unordered(128).try_collect().await?;
    // A key deleted between listing and reading is simply gone.
    Ok(values.into_iter().flatten().collect())
}

/// `request`, unless the NATS connection changes first (lost, or lost and
/// back): a request sent on a connection the server then dropped is never
/// answered, and its timeout (seconds) would stall the caller. Abandoned,
/// it is a transient error, which every caller retries; what the request
/// may have done meanwhile is covered as for a timeout (the same message
/// ids, the journal's fence and `own_tip`).
pub(crate) async fn on_this_connection<T>(
    connection: &tokio::sync::watch::Receiver<bool>,
    request: impl std::future::Future<Output = Result<T, BusError>>,
) -> Result<T, BusError> {
    let mut connection = connection.clone();
    connection.mark_unchanged();
    let changed = async {
        if connection.changed().await.is_err() {
            // No sender: this connection is not followed.
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        biased;
        r = request => r,
        () = changed => Err(BusError::Transient {
            what: "request",
            message: "the NATS connection dropped while it was under way".into(),
        }),
    }
}

/// Resolves `true` when the connection comes back (a change to connected);
/// never resolves once the sender is gone.
async fn reconnected(connection: &mut tokio::sync::watch::Receiver<bool>) -> bool {
    loop {
        if connection.changed().await.is_err() {
            return std::future::pending().await;
        }
        if *connection.borrow_and_update() {
            return true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_on_an_unfollowed_connection_runs_to_its_end() {
        // A bus that follows nothing (its sender gone) never abandons.
        let unfollowed = tokio::sync::watch::channel(true).1;
        let r = on_this_connection(&unfollowed, async {
            tokio::task::yield_now().await;
            Ok::<_, BusError>(7)
        })
        .await;
        assert_eq!(r.ok(), Some(7));
        // A change before the request started is not its business.
        let (tx, rx) = tokio::sync::watch::channel(true);
        tx.send_replace(false);
        tx.send_replace(true);
        let r = on_this_connection(&rx, async {
            tokio::task::yield_now().await;
            Ok::<_, BusError>(8)
        })
        .await;
        assert_eq!(r.ok(), Some(8));
    }

    #[test]
    fn subject_cover_follows_nats_wildcards() {
        assert!(subject_covers("omni.inbound.>", "omni.inbound.>"));
        assert!(subject_covers("omni.>", "omni.inbound.>"));
        assert!(subject_covers(">", "omni.offer.>"));
        assert!(!subject_covers("omni.inbound.*", "omni.inbound.>"));
        assert!(!subject_covers("omni.inbound.email", "omni.inbound.>"));
        assert!(subject_covers("omni.*.>", "omni.alert.>"));
    }

    #[test]
    fn stream_names_follow_the_prefix() {
        assert_eq!(stream_name("omni", "INBOUND"), "OMNI_INBOUND");
        assert_eq!(stream_name("acme.cc-1", "AGENT"), "ACME_CC_1_AGENT");
    }
}

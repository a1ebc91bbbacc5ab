//! `email-imap`: reads mailboxes on an IMAP server and publishes each new
//! message as an `email` event. The only module speaking IMAP (async-imap);
//! decoding is [`super::email::decode`], publishing [`InboundPublisher`].
//!
//! A round, per mailbox: `SELECT`; `UID SEARCH UNSEEN` (or `ALL` when a
//! `processed_folder` is set: everything left in the mailbox is new);
//! in chunks of [`CHUNK`] messages, oldest first: sizes, then the bodies
//! in groups of at most `FETCH_BYTES` (16 MiB) with `BODY.PEEK[]`, which
//! does not set `\Seen` (only the header of a message over
//! `max_body_bytes`, routed with `attributes.truncated`), so memory stays
//! bounded whatever arrives;
//! decode, publish the group and wait for JetStream's acks, and only then
//! mark the group processed (`+FLAGS.SILENT (\Seen)`, or `MOVE` to the processed
//! folder; `COPY` + `\Deleted` + `UID EXPUNGE` where MOVE is missing).
//! Between rounds it waits in `IDLE` (when offered, one mailbox, and
//! `idle` is on) or sleeps `poll_secs`.
//!
//! Crash and outage semantics: a message is marked only after its event
//! is stored, so a kill, a lost IMAP connection or NATS being away between
//! the two leaves it unmarked and the next round publishes it again under
//! the same id (`mail:<Message-ID>`), which JetStream's duplicate window and
//! then the router's id memory drop: nothing lost, nothing routed twice.
//! Errors reconnect with exponential backoff (1 s doubling to 60 s);
//! `omniroute_adapter_imap_errors_total{adapter,stage}` counts them and
//! `omniroute_adapter_last_success_timestamp_seconds{adapter}` shows the
//! last completed round.
//!
//! Auto-replies and bounces are marked processed too (counted as ignored).
//! A message that cannot be decoded (no From, not a message), or whose
//! event would be over the NATS server's max payload, is copied to
//! `omni.dlq.inbound` with its one-line error (the router's dead-letter
//! format, `subject` = `imap:<adapter>/<mailbox>`) before it is marked; it
//! stays in the mailbox, or the processed folder, for a person to read.

use super::email::{self, EmailSettings};
use super::spec::{AdapterSpec, ImapSpec, ImapTls};
use super::AdapterError;
use crate::bus::publish::InboundPublisher;
use crate::telemetry;
use futures::TryStreamExt;
use sha2::Digest;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;

/// Messages fetched, published and marked together.
pub const CHUNK: usize = 50;
const BACKOFF_MAX: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Any single IMAP command; a server that stops answering is reconnected.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

type Conn = Either<TcpStream, tokio_rustls::client::TlsStream<TcpStream>>;
type Session = async_imap::Session<Conn>;

#[derive(Debug, thiserror::Error)]
enum ImapError {
    #[error("{stage}: {message}")]
    Imap { stage: &'static str, message: String },
    #[error("publishing: {0}")]
    Publish(String),
}

impl ImapError {
    fn stage(&self) -> &'static str {
        match self {
            ImapError::Imap { stage, .. } => stage,
            ImapError::Publish(_) => "publish",
        }
    }
}

fn at<E: std::fmt::Display>(stage: &'static str) -> impl Fn(E) -> ImapError {
    move |e| ImapError::Imap {
        stage,
        message: e.to_string(),
    }
}

/// Bounds one IMAP step in time.
async fn timed<T, E: std::fmt::Display>(
    stage: &'static str,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, ImapError> {
    match tokio::time::timeout(COMMAND_TIMEOUT, f).await {
        Ok(r) => r.map_err(at(stage)),
        Err(_) => Err(ImapError::Imap {
            stage,
            message: format!("no answer within {COMMAND_TIMEOUT:?}"),
        }),
    }
}

/// Runs the adapter until `stop` is cancelled.
pub async fn run(spec: AdapterSpec, publisher: InboundPublisher, stop: CancellationToken) {
    let Some(imap) = spec.imap.clone() else { return };
    let spec = Arc::new(spec);
    let mut backoff = Duration::from_secs(1);
    tracing::info!(adapter = %spec.name, host = %imap.host, port = imap.port, mailboxes = ?imap.mailboxes, "IMAP adapter starting.");
    while !stop.is_cancelled() {
        let started = Instant::now();
        match session(&spec, &imap, &publisher, &stop).await {
            Ok(()) => break,
            Err(e) => {
                metrics::counter!(telemetry::ADAPTER_IMAP_ERRORS, "adapter" => spec.name.clone(), "stage" => e.stage())
                    .increment(1);
                // A session that ran for a while resets the backoff.
                if started.elapsed() > BACKOFF_MAX {
                    backoff = Duration::from_secs(1);
                }
                tracing::warn!(adapter = %spec.name, error = %e, retry_in_secs = backoff.as_secs(), "IMAP adapter error; reconnecting.");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.cancelled() => break,
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
    tracing::info!(adapter = %spec.name, "IMAP adapter stopped.");
}

async fn connect(imap: &ImapSpec) -> Result<Session, ImapError> {
    let tcp = timed("connect", TcpStream::connect((imap.host.as_str(), imap.port))).await?;
    let conn: Conn = match imap.tls {
        ImapTls::Tls => Either::Right(tls(imap, tcp).await?),
        ImapTls::None => Either::Left(tcp),
        ImapTls::StartTls => {
            let mut c = async_imap::Client::new(tcp);
            timed("greeting", async { c.read_response().await.map(|_| ()) }).await?;
            timed("starttls", c.run_command_and_check_ok("STARTTLS", None)).await?;
            Either::Right(tls(imap, c.into_inner()).await?)
        }
    };
    let mut client = async_imap::Client::new(conn);
    if imap.tls != ImapTls::StartTls {
        timed("greeting", async { client.read_response().await.map(|_| ()) }).await?;
    }
    match tokio::time::timeout(CONNECT_TIMEOUT, client.login(&imap.username, &imap.password)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err((e, _))) => Err(ImapError::Imap {
            stage: "login",
            message: e.to_string(),
        }),
        Err(_) => Err(ImapError::Imap {
            stage: "login",
            message: "no answer".into(),
        }),
    }
}

async fn tls(imap: &ImapSpec, tcp: TcpStream) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ImapError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = &imap.ca_file {
        use rustls::pki_types::pem::PemObject;
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(path).map_err(at("ca_file"))?;
        for cert in certs {
            roots.add(cert.map_err(at("ca_file"))?).map_err(at("ca_file"))?;
        }
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(imap.host.clone()).map_err(at("tls"))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    timed("tls", connector.connect(name, tcp)).await
}

/// One connection: rounds until stopped or an error.
async fn session(
    spec: &AdapterSpec,
    imap: &ImapSpec,
    publisher: &InboundPublisher,
    stop: &CancellationToken,
) -> Result<(), ImapError> {
    let mut s = connect(imap).await?;
    let caps = timed("capability", s.capabilities()).await?;
    let can_move = caps.has_str("MOVE");
    let can_idle = imap.idle && caps.has_str("IDLE") && imap.mailboxes.len() == 1;
    tracing::info!(adapter = %spec.name, idle = can_idle, r#move = can_move, "IMAP session open.");
    loop {
        for mailbox in &imap.mailboxes {
            round(&mut s, spec, imap, mailbox, can_move, publisher).await?;
        }
        metrics::gauge!(telemetry::ADAPTER_LAST_SUCCESS, "adapter" => spec.name.clone())
            .set(chrono::Utc::now().timestamp() as f64);
        if stop.is_cancelled() {
            let _ = tokio::time::timeout(Duration::from_secs(2), s.logout()).await;
            return Ok(());
        }
        if can_idle {
            let mut handle = s.idle();
            timed("idle", handle.init()).await?;
            let (wait, interrupt) = handle.wait_with_timeout(imap.poll);
            let stopped = tokio::select! {
                r = wait => { r.map_err(at("idle"))?; false }
                _ = stop.cancelled() => true,
            };
            drop(interrupt);
            if stopped {
                return Ok(());
            }
            s = timed("idle done", handle.done()).await?;
        } else {
            tokio::select! {
                _ = tokio::time::sleep(imap.poll) => {}
                _ = stop.cancelled() => {
                    let _ = tokio::time::timeout(Duration::from_secs(2), s.logout()).await;
                    return Ok(());
                }
            }
        }
    }
}

/// Every new message of one mailbox, chunk by chunk.
async fn round(
    s: &mut Session,
    spec: &AdapterSpec,
    imap: &ImapSpec,
    mailbox: &str,
    can_move: bool,
    publisher: &InboundPublisher,
) -> Result<(), ImapError> {
    timed("select", s.select(mailbox)).await?;
    let query = if imap.processed_folder.is_some() {
        "ALL"
    } else {
        "UNSEEN"
    };
    let mut uids: Vec<u32> = timed("search", s.uid_search(query)).await?.into_iter().collect();
    uids.sort_unstable();
    let at = Mailbox {
        spec,
        imap,
        name: mailbox,
        can_move,
        publisher,
        settings: EmailSettings {
            adapter: spec.name.clone(),
            kind: "email-imap",
            mailbox: Some(mailbox.to_string()),
            defaults: spec.defaults.clone(),
        },
    };
    for chunk in uids.chunks(CHUNK) {
        let set = uid_set(chunk);
        let mut sizes: Vec<(u32, u32)> = timed("fetch sizes", async {
            s.uid_fetch(&set, "(UID RFC822.SIZE)")
                .await?
                .try_collect::<Vec<_>>()
                .await
        })
        .await?
        .iter()
        .filter_map(|f| Some((f.uid?, f.size?)))
        .collect();
        sizes.sort_unstable();
        for group in by_bytes(&sizes, spec.max_body_bytes) {
            let (small, large): (Vec<_>, Vec<_>) = group
                .iter()
                .partition(|(_, size)| (*size as usize) <= spec.max_body_bytes);
            process(s, &at, &small, &large).await?;
        }
    }
    Ok(())
}

/// Bytes of message bodies fetched in one command (and held at once): a
/// chunk of large messages is fetched in several commands, so memory
/// stays near this bound whatever arrives, and each command moves an
/// amount a slow link finishes within [`COMMAND_TIMEOUT`]. A message
/// larger than this (up to `max_body_bytes`) is fetched alone.
const FETCH_BYTES: usize = 16 << 20;
/// What a message over `max_body_bytes` counts for (its header only).
const HEADER_BYTES: usize = 64 << 10;

/// Consecutive runs of `sizes` holding at most [`FETCH_BYTES`] of what
/// will be fetched (at least one message each).
fn by_bytes(sizes: &[(u32, u32)], max_body_bytes: usize) -> Vec<&[(u32, u32)]> {
    let mut out = Vec::new();
    let (mut from, mut held) = (0, 0usize);
    for (i, (_, size)) in sizes.iter().enumerate() {
        let size = size_fetched(*size as usize, max_body_bytes);
        if i > from && held + size > FETCH_BYTES {
            out.push(&sizes[from..i]);
            (from, held) = (i, 0);
        }
        held += size;
    }
    if from < sizes.len() {
        out.push(&sizes[from..]);
    }
    out
}

fn size_fetched(size: usize, max_body_bytes: usize) -> usize {
    if size <= max_body_bytes {
        size
    } else {
        HEADER_BYTES
    }
}

/// The mailbox a round reads, and what reading it needs.
struct Mailbox<'a> {
    spec: &'a AdapterSpec,
    imap: &'a ImapSpec,
    name: &'a str,
    can_move: bool,
    publisher: &'a InboundPublisher,
    settings: EmailSettings,
}

/// Fetches, decodes, publishes and then marks one group of messages:
/// `small` whole, `large` (over `max_body_bytes`) by their header.
async fn process(
    s: &mut Session,
    at: &Mailbox<'_>,
    small: &[&(u32, u32)],
    large: &[&(u32, u32)],
) -> Result<(), ImapError> {
    let (spec, publisher) = (at.spec, at.publisher);
    let mut raws: Vec<(u32, Vec<u8>, bool)> = Vec::with_capacity(small.len() + large.len());
    for (part, query, truncated) in [(small, "BODY.PEEK[]", false), (large, "BODY.PEEK[HEADER]", true)] {
        if part.is_empty() {
            continue;
        }
        let set = uid_set(&part.iter().map(|(u, _)| *u).collect::<Vec<_>>());
        let fetched = timed("fetch", async {
            s.uid_fetch(&set, query).await?.try_collect::<Vec<_>>().await
        })
        .await?;
        for f in fetched {
            let body = if truncated { f.header() } else { f.body() };
            if let (Some(uid), Some(b)) = (f.uid, body) {
                raws.push((uid, b.to_vec(), truncated));
            }
        }
    }
    raws.sort_by_key(|r| r.0);
    let now = chrono::Utc::now();
    let mut events = Vec::new();
    for (uid, raw, truncated) in &raws {
        match email::decode(raw, &at.settings, now) {
            Ok(d) => {
                for what in &d.ignored {
                    metrics::counter!(telemetry::ADAPTER_IGNORED, "adapter" => spec.name.clone(), "what" => *what)
                        .increment(1);
                    tracing::info!(adapter = %spec.name, uid, what, "Mail not routed.");
                }
                events.extend(d.events.into_iter().map(|mut e| {
                    if *truncated {
                        e.attributes.insert(
                            "truncated".into(),
                            format!("message over {} bytes; read it in the mailbox", spec.max_body_bytes).into(),
                        );
                    }
                    (*uid, e)
                }));
            }
            Err(AdapterError::Bad(m) | AdapterError::Unauthorized(m)) => {
                dead_letter(at, *uid, raw, &m).await?;
            }
        }
    }
    let (uids, mut routed): (Vec<u32>, Vec<_>) = events.into_iter().unzip();
    if !routed.is_empty() {
        let started = Instant::now();
        let mut published = publisher.publish(&routed).await;
        if let Err(crate::bus::BusError::Permanent { .. }) = published {
            // An event the server cannot take (over its max payload) would
            // fail the group on every round: it is dead-lettered alone, the
            // rest published, so the mailbox moves on. (Sizes are checked
            // here only, on this rare path.)
            let mut fit = Vec::with_capacity(routed.len());
            for (uid, e) in uids.into_iter().zip(routed) {
                match publisher.over_max_payload(&e) {
                    Some(m) => {
                        let error = format!("the event is over the NATS server's max payload ({m} bytes)");
                        let raw = raws.iter().find(|r| r.0 == uid).map_or(&[][..], |r| &r.1[..]);
                        dead_letter(at, uid, raw, &error).await?;
                    }
                    None => fit.push(e),
                }
            }
            routed = fit;
            published = if routed.is_empty() {
                Ok(())
            } else {
                publisher.publish(&routed).await
            };
        }
        published.map_err(|e| ImapError::Publish(e.to_string()))?;
        metrics::histogram!(telemetry::ADAPTER_PUBLISH_SECONDS, "adapter" => spec.name.clone())
            .record(started.elapsed().as_secs_f64());
        metrics::counter!(telemetry::ADAPTER_EVENTS, "adapter" => spec.name.clone(), "channel" => "email")
            .increment(routed.len() as u64);
    }
    // Only now: every event of the group is stored.
    let done = uid_set(&raws.iter().map(|r| r.0).collect::<Vec<_>>());
    if !raws.is_empty() {
        mark(s, &done, at.imap, at.can_move).await?;
        metrics::counter!(telemetry::ADAPTER_REQUESTS, "adapter" => spec.name.clone(), "kind" => "email-imap", "outcome" => "processed")
            .increment(raws.len() as u64);
    }
    Ok(())
}

/// Copies a message that cannot be routed to the dead-letter stream,
/// before it is marked processed (and left for a person).
async fn dead_letter(at: &Mailbox<'_>, uid: u32, raw: &[u8], error: &str) -> Result<(), ImapError> {
    let (spec, publisher, mailbox) = (at.spec, at.publisher, at.name);
    metrics::counter!(telemetry::ADAPTER_IGNORED, "adapter" => spec.name.clone(), "what" => "undecodable").increment(1);
    tracing::warn!(adapter = %spec.name, uid, error, "Mail could not be routed; dead-lettered, marked processed and left for a person.");
    // Keyed by the raw bytes: a re-read after a crash is the same dead letter.
    let id = format!("dlq-{}-{}", spec.name, super::hex(&sha2::Sha256::digest(raw)));
    let from = format!("imap:{}/{mailbox}", spec.name);
    publisher
        .dead_letter(&id, &from, raw, error)
        .await
        .map_err(|e| ImapError::Publish(e.to_string()))
}

async fn mark(s: &mut Session, set: &str, imap: &ImapSpec, can_move: bool) -> Result<(), ImapError> {
    match &imap.processed_folder {
        None => {
            timed("mark seen", async {
                s.uid_store(set, "+FLAGS.SILENT (\\Seen)")
                    .await?
                    .try_collect::<Vec<_>>()
                    .await
            })
            .await?;
            Ok(())
        }
        Some(folder) if can_move => timed("move", s.uid_mv(set, folder)).await,
        Some(folder) => {
            timed("copy", s.uid_copy(set, folder)).await?;
            timed("delete", async {
                s.uid_store(set, "+FLAGS.SILENT (\\Deleted)")
                    .await?
                    .try_collect::<Vec<_>>()
                    .await
            })
            .await?;
            timed("expunge", async {
                s.uid_expunge(set).await?.try_collect::<Vec<_>>().await
            })
            .await?;
            Ok(())
        }
    }
}

/// `1,2,5` for a set of UIDs.
fn uid_set(uids: &[u32]) -> String {
    uids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_is_fetched_in_groups_of_bounded_bytes() {
        let mb = 1 << 20;
        let max_body = 25 * mb;
        // Fifty messages just under the body limit: one per group, never
        // fifty at once (1.2 GiB).
        let big: Vec<(u32, u32)> = (1..=50).map(|u| (u, (24 * mb) as u32)).collect();
        let groups = by_bytes(&big, max_body);
        assert_eq!(groups.len(), 50);
        // Small ones go together; a message over the limit counts for its
        // header; every message is in exactly one group, in order.
        let mixed: Vec<(u32, u32)> = (1..=50)
            .map(|u| {
                (
                    u,
                    if u % 10 == 0 {
                        (100 * mb) as u32
                    } else {
                        (3 * mb) as u32
                    },
                )
            })
            .collect();
        let groups = by_bytes(&mixed, max_body);
        let held = |g: &[(u32, u32)]| {
            g.iter()
                .map(|(_, s)| size_fetched(*s as usize, max_body))
                .sum::<usize>()
        };
        assert!(groups.iter().all(|g| !g.is_empty() && held(g) <= FETCH_BYTES));
        assert_eq!(groups.concat(), mixed);
        assert!(groups.len() <= 10, "small messages share a fetch: {}", groups.len());
        assert!(by_bytes(&[], max_body).is_empty());
    }
}

//! Logging and metrics set-up, and every metric name in one place.
//!
//! Metric names follow `omniroute_<what>_<unit>[_total]`; labels are bounded
//! sets (channel, queue, kind, outcome, type, subject). Agent and customer
//! ids never appear as labels.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use tracing_subscriber::{fmt, prelude::*, EnvFilter};

pub const INBOUND_EVENTS: &str = "omniroute_inbound_events_total";
pub const AGENT_EVENTS: &str = "omniroute_agent_events_total";
pub const CONTACTS_WAITING: &str = "omniroute_contacts_waiting";
pub const CONTACTS_AT_RISK: &str = "omniroute_contacts_at_risk";
pub const QUEUE_ESTIMATED_WAIT: &str = "omniroute_queue_estimated_wait_seconds";
pub const CONTACTS_OPEN: &str = "omniroute_contacts_open";
pub const OFFERS: &str = "omniroute_offers_total";
pub const CONTACT_EVENTS: &str = "omniroute_contact_events_total";
pub const ROUTING_DECISION_SECONDS: &str = "omniroute_routing_decision_duration_seconds";
pub const BATCH_COMMIT_SECONDS: &str = "omniroute_batch_commit_duration_seconds";
pub const OUTBOX_PUBLISH_SECONDS: &str = "omniroute_outbox_publish_duration_seconds";
pub const STANDBY_JOURNAL_SEQUENCE: &str = "omniroute_standby_journal_sequence";
pub const SLA_ALERTS: &str = "omniroute_sla_alerts_total";
pub const SLA_BREACHES: &str = "omniroute_sla_breaches_total";
pub const SLA_LATENESS: &str = "omniroute_sla_alert_lateness_seconds";
pub const DEAD_LETTERS: &str = "omniroute_dead_letters_total";
pub const AGENTS: &str = "omniroute_agents";
pub const COMMIT_RETRIES: &str = "omniroute_commit_retries_total";
pub const NATS_CONNECTED: &str = "omniroute_nats_connected";
pub const BUILD_INFO: &str = "omniroute_build_info";
pub const DROPPED_OVERSIZE: &str = "omniroute_dropped_oversize_total";
pub const ROUTING_TICK_SECONDS: &str = "omniroute_routing_tick_duration_seconds";
pub const ROUTING_CANDIDATES: &str = "omniroute_routing_candidates_examined";
pub const TIMERS_SCHEDULED: &str = "omniroute_timers_scheduled";
pub const ROUTER_ACTIVE: &str = "omniroute_router_active";
pub const PERMANENT_ERRORS: &str = "omniroute_permanent_errors_total";
pub const JOURNAL_BYTES: &str = "omniroute_journal_bytes_total";
pub const OUTBOX_PENDING: &str = "omniroute_outbox_pending";
pub const SNAPSHOTS: &str = "omniroute_snapshots_total";
pub const SNAPSHOT_SECONDS: &str = "omniroute_snapshot_duration_seconds";
pub const DEDUPE_IDS: &str = "omniroute_dedupe_ids";
pub const DEDUPE_EVICTED: &str = "omniroute_dedupe_evicted_total";
pub const ALERT_DELIVERIES: &str = "omniroute_alert_deliveries_total";
pub const ALERT_SINK_HELD: &str = "omniroute_alert_sink_held";
pub const ADAPTER_REQUESTS: &str = "omniroute_adapter_requests_total";
pub const ADAPTER_EVENTS: &str = "omniroute_adapter_events_total";
pub const ADAPTER_IGNORED: &str = "omniroute_adapter_ignored_total";
pub const ADAPTER_IMAP_ERRORS: &str = "omniroute_adapter_imap_errors_total";
pub const ADAPTER_LAST_SUCCESS: &str = "omniroute_adapter_last_success_timestamp_seconds";
pub const ADAPTER_PUBLISH_SECONDS: &str = "omniroute_adapter_publish_duration_seconds";

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(INBOUND_EVENTS, "Inbound customer events by channel and outcome.");
    describe_counter!(
        ALERT_DELIVERIES,
        "Alert sink outcomes by sink: delivered, retried, digested, dead_lettered, filtered, invalid."
    );
    describe_gauge!(
        ALERT_SINK_HELD,
        "Alerts held by a sink over its per-window limit, waiting for the digest."
    );
    describe_counter!(
        ADAPTER_REQUESTS,
        "Adapter requests by adapter, kind and outcome (published, ignored, bad_request, unauthorized, too_large, unavailable)."
    );
    describe_counter!(
        ADAPTER_IMAP_ERRORS,
        "IMAP adapter errors by adapter and stage (connect, login, select, fetch, publish, ...); each reconnects with backoff."
    );
    describe_gauge!(
        ADAPTER_LAST_SUCCESS,
        "Unix time of the IMAP adapter's last completed round over its mailboxes, by adapter."
    );
    describe_counter!(
        ADAPTER_EVENTS,
        "Events adapters published to JetStream, by adapter and channel."
    );
    describe_counter!(
        ADAPTER_IGNORED,
        "Items adapters did not route (echoes, receipts, auto-replies, bounces), by adapter and what."
    );
    describe_histogram!(
        ADAPTER_PUBLISH_SECONDS,
        Unit::Seconds,
        "Time from a decoded request to JetStream's acknowledgement of all its events, by adapter."
    );
    describe_counter!(AGENT_EVENTS, "Agent events by type and outcome.");
    describe_gauge!(CONTACTS_WAITING, "Contacts waiting for an agent, by queue.");
    describe_gauge!(
        CONTACTS_AT_RISK,
        "Open contacts with an SLA warning raised and no breach yet, by queue."
    );
    describe_gauge!(
        QUEUE_ESTIMATED_WAIT,
        "Estimated wait of the next contact, by queue: contacts waiting times the queue's pace."
    );
    describe_gauge!(CONTACTS_OPEN, "Open contacts (waiting, offered or assigned).");
    describe_counter!(OFFERS, "Offer outcomes by queue: offered, accepted, declined, expired.");
    describe_counter!(CONTACT_EVENTS, "Contact lifecycle events published, by kind.");
    describe_histogram!(
        ROUTING_DECISION_SECONDS,
        Unit::Seconds,
        "Time the routing core spends on one event."
    );
    describe_histogram!(
        BATCH_COMMIT_SECONDS,
        Unit::Seconds,
        "Time to make one batch durable (its journal append) and hand its outputs to the publisher."
    );
    describe_gauge!(
        STANDBY_JOURNAL_SEQUENCE,
        "On a standby: the journal sequence its warm state is read to (0: none yet)."
    );
    describe_histogram!(
        OUTBOX_PUBLISH_SECONDS,
        Unit::Seconds,
        "Time of one publisher round: the outputs of the committed batches waiting, published and acknowledged, then their inputs acked."
    );
    describe_histogram!(
        ROUTING_TICK_SECONDS,
        Unit::Seconds,
        "Time the routing core spends firing the timers due at one tick."
    );
    describe_histogram!(
        ROUTING_CANDIDATES,
        Unit::Count,
        "Agents and queue heads the routing core looked at for one event or tick."
    );
    describe_gauge!(
        TIMERS_SCHEDULED,
        "Offer expiries, wrap-up ends and SLA thresholds scheduled."
    );
    describe_counter!(SLA_ALERTS, "SLA alerts by queue, kind (warning, breach) and clock.");
    describe_counter!(SLA_BREACHES, "SLA breaches by queue and channel.");
    describe_histogram!(
        SLA_LATENESS,
        Unit::Seconds,
        "How long after its due time an SLA alert was committed and published."
    );
    describe_counter!(DEAD_LETTERS, "Messages dead-lettered, by dead-letter subject.");
    describe_gauge!(AGENTS, "Agents by presence status.");
    describe_counter!(COMMIT_RETRIES, "Batch commits retried after a transient NATS error.");
    describe_gauge!(NATS_CONNECTED, "1 while the NATS connection is up.");
    describe_counter!(
        DROPPED_OVERSIZE,
        "Outbound messages or state records over the server's max payload, dropped (should stay 0)."
    );
    describe_gauge!(
        ROUTER_ACTIVE,
        "1 while this instance holds the routing lease and routes; 0 while it stands by."
    );
    describe_counter!(
        PERMANENT_ERRORS,
        "Errors retrying cannot fix (routing stops until an operator acts), by kind."
    );
    describe_counter!(JOURNAL_BYTES, "Bytes appended to the state journal.");
    describe_gauge!(
        OUTBOX_PENDING,
        "Outbound messages decided and durable but not yet acknowledged by JetStream."
    );
    describe_counter!(SNAPSHOTS, "State snapshots written, by outcome (written, failed).");
    describe_histogram!(
        SNAPSHOT_SECONDS,
        Unit::Seconds,
        "Time to encode and write a state snapshot."
    );
    describe_gauge!(DEDUPE_IDS, "Event ids remembered for duplicate detection.");
    describe_counter!(
        DEDUPE_EVICTED,
        "Event ids forgotten before their retention ran out (routing.dedupe_max_ids reached)."
    );
    describe_gauge!(BUILD_INFO, "Always 1; the version label tells the running build.");
}

/// Registers every counter series whose labels are known from the
/// configuration at zero, so the first increase is visible to `increase()`
/// and `rate()` in Prometheus.
pub fn register_series(prefix: &str, queues: &[String]) {
    use metrics::counter;
    for q in queues {
        for kind in ["warning", "breach"] {
            for clock in crate::sla::ClockKind::ALL {
                counter!(SLA_ALERTS, "queue" => q.clone(), "kind" => kind, "clock" => clock.as_str()).increment(0);
            }
        }
        metrics::gauge!(CONTACTS_AT_RISK, "queue" => q.clone()).set(0.0);
        for outcome in ["offered", "accepted", "declined", "expired"] {
            counter!(OFFERS, "queue" => q.clone(), "outcome" => outcome).increment(0);
        }
    }
    for what in ["inbound", "agent"] {
        counter!(DEAD_LETTERS, "subject" => format!("{prefix}.dlq.{what}")).increment(0);
    }
    for ch in crate::domain::Channel::ALL {
        for outcome in ["opened", "attached", "ended", "ignored", "duplicate", "dead_lettered"] {
            counter!(INBOUND_EVENTS, "channel" => ch.as_str(), "outcome" => outcome).increment(0);
        }
    }
    counter!(COMMIT_RETRIES).increment(0);
}

/// Buckets for the routing core's own work: microseconds (its normal
/// range) up to seconds, so a pathological event shows where it landed.
const CORE_SECONDS_BUCKETS: &[f64] = &[
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.25, 1.0, 2.5, 5.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide Prometheus recorder once and returns its handle;
/// later calls (tests start several daemons) share it. `None` means another
/// recorder was installed first.
pub fn metrics_handle() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(ROUTING_DECISION_SECONDS.into()),
                    CORE_SECONDS_BUCKETS,
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        metrics_exporter_prometheus::Matcher::Full(ROUTING_TICK_SECONDS.into()),
                        CORE_SECONDS_BUCKETS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        metrics_exporter_prometheus::Matcher::Full(ROUTING_CANDIDATES.into()),
                        &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 1e3, 1e4, 1e5],
                    )
                })
                .and_then(|b| {
                    b.set_buckets(&[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    ])
                })
                .map(|b| b.build_recorder());
            match recorder {
                Ok(r) => {
                    let handle = r.handle();
                    if metrics::set_global_recorder(r).is_err() {
                        return None;
                    }
                    describe();
                    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
                    Some(handle)
                }
                Err(_) => None,
            }
        })
        .clone()
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("log filter {0:?} is not valid: {1}")]
    Filter(String, String),
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// Installs the global `tracing` subscriber: text on a terminal, JSON in
/// production. `RUST_LOG` overrides the configured level.
pub fn init_logging(format: &str, level: &str) -> Result<(), TelemetryError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(f) if !f.is_empty() => EnvFilter::builder()
            .parse(&f)
            .map_err(|e| TelemetryError::Filter(f, e.to_string()))?,
        _ => EnvFilter::builder()
            .parse(level)
            .map_err(|e| TelemetryError::Filter(level.to_string(), e.to_string()))?,
    };
    let registry = tracing_subscriber::registry().with(filter);
    let res = if format == "json" {
        registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_target(true),
            )
            .try_init()
    } else {
        {
            // Colours only for a person at a terminal, never into a journal or file.
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
            registry
                .with(fmt::layer().with_target(false).with_ansi(ansi))
                .try_init()
        }
    };
    res.map_err(|_| TelemetryError::AlreadyInstalled)
}

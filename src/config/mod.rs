//! Configuration: TOML files layered with `OMNIROUTE_SECTION__KEY`
//! environment variables, deserialised into plain data, then checked by
//! [`Config::validate`], which reports *every* problem with its key and value
//! and, when there are none, compiles the typed [`RouterSpec`] the routing
//! core runs on. Nothing here panics on bad input.

mod adapters;
mod routing;
mod sinks;
mod sla;
mod validate;

pub use routing::{
    AffinityConfig, AgentConfig, CalendarConfig, ChannelConfig, QueueConfig, RelaxConfig, RoutingConfig, RuleConfig,
    UnitsConfig,
};

pub use adapters::{AdapterConfig, MenuConfig, WebhooksConfig};
pub use sinks::{AlertsConfig, SinkConfig};
pub use sla::{SlaConfig, SlaPolicyConfig, SlaRuleConfig};

pub use validate::{Problem, RouterSpec};

use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The embedded default configuration (`config/omniroute.toml`), used when no
/// `--config` is given, so a fresh checkout runs with one command.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../config/omniroute.toml");

/// Prefix of environment overrides: `OMNIROUTE_NATS__URL` sets `nats.url`.
pub const ENV_PREFIX: &str = "OMNIROUTE";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration {path}: {message}")]
    Read { path: String, message: String },
    #[error("configuration has {} problem(s):\n{}", .0.len(), .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

/// A secret string: never printed by `Debug`, so configuration dumps and
/// error reports cannot leak it.
#[derive(Clone, Default, Deserialize, PartialEq)]
pub struct Secret(#[serde(deserialize_with = "lenient_string")] pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

/// Environment values that look like numbers arrive as numbers; a password
/// of digits is still a string.
fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Text(String),
        Int(i64),
        Float(f64),
        Bool(bool),
    }
    Ok(match Scalar::deserialize(d)? {
        Scalar::Text(s) => s,
        Scalar::Int(i) => i.to_string(),
        Scalar::Float(f) => f.to_string(),
        Scalar::Bool(b) => b.to_string(),
    })
}

fn lenient_opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    lenient_string(d).map(Some)
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct Config {
    pub nats: NatsConfig,
    pub http: HttpConfig,
    pub log: LogConfig,
    pub runtime: RuntimeConfig,
    pub routing: RoutingConfig,
    pub queues: Vec<QueueConfig>,
    pub rules: Vec<RuleConfig>,
    pub agents: Vec<AgentConfig>,
    pub sla: SlaConfig,
    pub webhooks: WebhooksConfig,
    pub adapters: BTreeMap<String, AdapterConfig>,
    pub alerts: AlertsConfig,
    /// `[calendars.<name>]`: business hours queues can keep.
    pub calendars: BTreeMap<String, CalendarConfig>,
}

/// `[nats]`: the connection and the JetStream resources the router owns.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct NatsConfig {
    /// Server URL(s), comma-separated for a cluster.
    pub url: String,
    /// First token of every subject (`omni` → `omni.inbound.email`).
    pub subject_prefix: String,
    /// Client name shown in the server's connection list.
    pub client_name: String,
    /// A `.creds` file (JWT + nkey seed).
    pub credentials_file: Option<PathBuf>,
    #[serde(deserialize_with = "lenient_opt_string")]
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub token: Option<Secret>,
    pub tls: TlsConfig,
    /// Replicas for streams and buckets the router creates (1 for a single
    /// server, 3 for a cluster). Existing streams are never changed.
    pub stream_replicas: usize,
    /// Key-value bucket where releases before the journal kept contacts and
    /// agents: read once, when the journal is empty, to carry them over.
    pub state_bucket: String,
    /// Unused since ids are kept in the journal; accepted so older files load.
    pub dedupe_bucket: String,
    /// Key-value bucket holding the routing lease (which instance routes).
    pub lease_bucket: String,
    /// Durable consumer name on `OMNI_INBOUND` and `OMNI_AGENT`.
    pub consumer_name: String,
    /// Largest payload accepted; bigger ones are dead-lettered.
    pub max_payload_bytes: usize,
    /// Messages fetched and processed per batch.
    pub batch_size: usize,
    /// How long the server waits for an ack before redelivering.
    pub ack_wait_secs: f64,
    /// Duplicate window for streams the router creates.
    pub duplicate_window_secs: f64,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: "nats://127.0.0.1:4222".into(),
            subject_prefix: "omni".into(),
            client_name: "omniroute".into(),
            credentials_file: None,
            user: None,
            password: None,
            token: None,
            tls: TlsConfig::default(),
            stream_replicas: 1,
            state_bucket: "omniroute_state".into(),
            dedupe_bucket: "omniroute_dedupe".into(),
            lease_bucket: "omniroute_lease".into(),
            consumer_name: "omniroute".into(),
            max_payload_bytes: 1 << 20,
            batch_size: 256,
            ack_wait_secs: 30.0,
            duplicate_window_secs: 600.0,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct TlsConfig {
    /// Require TLS even when the URL says `nats://`.
    pub required: bool,
    /// CA bundle (PEM) to trust instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// `[http]`: the operator listener (`/metrics`, `/live`, `/ready`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct HttpConfig {
    pub listen: String,
    /// Bearer token of the operator API (`/api/...`) on this listener;
    /// absent or empty: the API is off. Set it from the environment with
    /// `OMNIROUTE_HTTP__API_TOKEN` rather than in the file.
    pub api_token: Option<Secret>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:9464".into(),
            api_token: None,
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// `text` (human-readable) or `json` (one object per line, for
    /// journald/Loki/ELK).
    pub format: String,
    /// A `tracing` filter such as `info` or `omniroute=debug,async_nats=warn`;
    /// `RUST_LOG` wins when set.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: "text".into(),
            // async-nats logs each reconnect attempt at info; the bus
            // module reports each new connection problem once, at warn.
            level: "info,async_nats=warn".into(),
        }
    }
}

/// `[runtime]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RuntimeConfig {
    /// How long SIGTERM waits for in-flight work before giving up.
    pub shutdown_grace_secs: f64,
    /// Time to live of the routing lease: a standby takes over at most this
    /// long (plus a sixth of it) after the active router stops renewing.
    pub lease_ttl_secs: f64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            shutdown_grace_secs: 20.0,
            lease_ttl_secs: 6.0,
        }
    }
}

/// Where a configuration comes from.
#[derive(Debug, Clone)]
pub enum Source {
    File(PathBuf),
    Embedded,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Embedded => f.write_str("<embedded config/omniroute.toml>"),
        }
    }
}

impl Config {
    /// Loads a file (or the embedded default) and layers the process
    /// environment over it.
    pub fn load(source: &Source) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Config::load_with_env(source, env)
    }

    /// As [`Config::load`], with an explicit environment so tests need no
    /// `set_var`.
    pub fn load_with_env(
        source: &Source,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let text = match source {
            Source::Embedded => EMBEDDED_DEFAULT.to_string(),
            Source::File(p) => std::fs::read_to_string(p).map_err(|e| ConfigError::Read {
                path: p.display().to_string(),
                message: e.to_string(),
            })?,
        };
        Config::from_toml_with_env(&text, &source.to_string(), env)
    }

    pub fn from_toml_with_env(
        text: &str,
        origin: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let env: std::collections::HashMap<String, String> = env
            .into_iter()
            // Only `OMNIROUTE_<SECTION>__<KEY>` configures; other OMNIROUTE_*
            // variables (OMNIROUTE_CONFIG, tooling's OMNIROUTE_NATS_SERVER)
            // are not configuration keys.
            .filter(|(k, _)| {
                k.strip_prefix(&format!("{ENV_PREFIX}_"))
                    .is_some_and(|rest| rest.contains("__"))
            })
            .collect();
        let raw = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix(ENV_PREFIX)
                    .prefix_separator("_")
                    .separator("__")
                    .try_parsing(true)
                    .source(Some(env)),
            )
            .build()
            .map_err(|e| ConfigError::Read {
                path: origin.to_string(),
                message: e.to_string(),
            })?;
        let value: serde_json::Value = raw.try_deserialize().map_err(|e| ConfigError::Read {
            path: origin.to_string(),
            message: e.to_string(),
        })?;
        Config::from_value(value)
    }

    /// Deserialises, collecting every unknown key and every value of the
    /// wrong type (serde stops at the first: each bad value is reported,
    /// removed so its default applies, and the rest read again, at most
    /// [`MAX_TYPE_PROBLEMS`] times), then the semantic problems of what
    /// remains, so one run lists everything with its key and value.
    fn from_value(value: serde_json::Value) -> Result<Config, ConfigError> {
        let original = value.clone();
        let mut value = value;
        let mut unknown = std::collections::BTreeSet::new();
        let mut problems: Vec<Problem> = Vec::new();
        let parsed = loop {
            let mut on_unknown = |path: serde_ignored::Path| {
                unknown.insert(path.to_string());
            };
            let de = serde_ignored::Deserializer::new(value.clone(), &mut on_unknown);
            match serde_path_to_error::deserialize::<_, Config>(de) {
                Ok(cfg) => break Some(cfg),
                Err(e) => {
                    let path = e.path().to_string();
                    let (key, v) = locate(&original, &path);
                    problems.push(Problem::new(key, v, e.inner().to_string()));
                    if problems.len() >= MAX_TYPE_PROBLEMS || !remove_at(&mut value, &path) {
                        break None;
                    }
                }
            }
        };
        let mut all: Vec<Problem> = unknown
            .into_iter()
            .map(|k| {
                let (key, v) = locate(&original, &k);
                Problem::new(key, v, "unknown key")
            })
            .collect();
        all.extend(problems);
        match parsed {
            Some(cfg) if all.is_empty() => Ok(cfg),
            Some(cfg) => {
                // Report the semantic problems too, so one run lists everything.
                if let Err(more) = cfg.validate() {
                    all.extend(more);
                }
                Err(ConfigError::Invalid(all))
            }
            None => Err(ConfigError::Invalid(all)),
        }
    }

    /// The file's directory, for resolving relative paths in messages.
    pub fn describe_source(path: Option<&Path>) -> Source {
        match path {
            Some(p) => Source::File(p.to_path_buf()),
            None => Source::Embedded,
        }
    }
}

/// Type problems listed per file, at most (a file of the wrong shape
/// altogether is reported by its first ones).
const MAX_TYPE_PROBLEMS: usize = 50;

/// The segments of a serde path, `queues.1.skilz` or `agents[0].capacity`:
/// names and array indexes; `None` where a segment is unknown (`?`).
fn segments(path: &str) -> Option<Vec<Result<usize, String>>> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|s| !s.is_empty()) {
        if part == "?" {
            return None;
        }
        let (name, rest) = part.split_once('[').unwrap_or((part, ""));
        if !name.is_empty() {
            out.push(name.parse::<usize>().map_err(|_| name.to_string()));
        }
        for idx in rest.split('[').filter(|s| !s.is_empty()) {
            out.push(Ok(idx.trim_end_matches(']').parse().ok()?));
        }
    }
    Some(out)
}

/// Removes the value at `path`; false when there is nothing to remove.
fn remove_at(root: &mut serde_json::Value, path: &str) -> bool {
    let Some(segs) = segments(path) else { return false };
    let Some((last, parents)) = segs.split_last() else {
        return false;
    };
    let mut cur = root;
    for seg in parents {
        let next = match (seg, cur) {
            (Ok(i), serde_json::Value::Array(a)) => a.get_mut(*i),
            (Ok(i), serde_json::Value::Object(o)) => o.get_mut(&i.to_string()),
            (Err(k), serde_json::Value::Object(o)) => o.get_mut(k),
            _ => None,
        };
        match next {
            Some(n) => cur = n,
            None => return false,
        }
    }
    match (last, cur) {
        (Ok(i), serde_json::Value::Array(a)) if *i < a.len() => {
            a.remove(*i);
            true
        }
        (Ok(i), serde_json::Value::Object(o)) => o.remove(&i.to_string()).is_some(),
        (Err(k), serde_json::Value::Object(o)) => o.remove(k).is_some(),
        _ => false,
    }
}

/// Turns a serde path (`queues.1.skilz`, `agents[0].capacity`) into the
/// key as an operator writes it (`queues[1].skilz`) and finds its value.
fn locate(root: &serde_json::Value, path: &str) -> (String, String) {
    let mut key = String::new();
    let mut cur = Some(root);
    for seg in segments(path).unwrap_or_default() {
        match (seg, cur) {
            (Ok(i), Some(serde_json::Value::Array(a))) => {
                key.push_str(&format!("[{i}]"));
                cur = a.get(i);
            }
            (seg, c) => {
                let name = match seg {
                    Ok(i) => i.to_string(),
                    Err(k) => k,
                };
                if !key.is_empty() {
                    key.push('.');
                }
                cur = c.and_then(|v| v.get(&name));
                key.push_str(&name);
            }
        }
    }
    let value = match cur {
        Some(serde_json::Value::String(s)) => format!("{s:?}"),
        Some(v) => {
            let s = v.to_string();
            crate::domain::truncate(&s, 80)
        }
        None => "?".to_string(),
    };
    (if key.is_empty() { "(root)".into() } else { key }, value)
}

/// Asserts that `problems` are exactly `want`, in order, each line starting
/// with its `key = value` (the message after it may say more).
#[cfg(test)]
pub(crate) fn assert_problems_are(problems: &[Problem], want: &[&str]) {
    let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(text.len(), want.len(), "{}", text.join("\n"));
    for (got, want) in text.iter().zip(want) {
        assert!(got.starts_with(want), "{got:?} is not {want:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn environment_overrides_sections_and_ignores_other_omniroute_variables() {
        let cfg = Config::from_toml_with_env(
            EMBEDDED_DEFAULT,
            "test",
            env(&[
                ("OMNIROUTE_NATS__URL", "nats://10.0.0.5:4222"),
                ("OMNIROUTE_NATS__PASSWORD", "12345"),
                ("OMNIROUTE_NATS__USER", "router"),
                ("OMNIROUTE_ROUTING__OFFER_TIMEOUT_SECS", "12.5"),
                ("OMNIROUTE_NATS_SERVER", "/usr/bin/nats-server"),
                ("OMNIROUTE_CONFIG", "/etc/omniroute/omniroute.toml"),
                ("UNRELATED", "x"),
            ]),
        )
        .expect("loads");
        assert_eq!(cfg.nats.url, "nats://10.0.0.5:4222");
        assert_eq!(cfg.nats.password.as_ref().map(|p| p.0.as_str()), Some("12345"));
        assert_eq!(cfg.routing.offer_timeout_secs, 12.5);
        assert!(cfg.validate().is_ok());
        assert_eq!(
            format!("{:?}", cfg.nats.password),
            "Some(\"***\")",
            "secrets never print"
        );
    }

    #[test]
    fn case_of_ids_in_the_file_is_kept() {
        let toml = "[[queues]]\nname = \"Billing\"\nchannels = [\"email\"]\nskills = { VAT = 2 }\n";
        let cfg = Config::from_toml_with_env(toml, "t", Vec::new()).expect("loads");
        let spec = cfg.validate().expect("valid");
        let q = spec.queues.values().next().expect("queue");
        assert_eq!(q.name.as_str(), "Billing");
        assert_eq!(q.skills.keys().next().map(|s| s.as_str()), Some("VAT"));
    }

    #[test]
    fn every_problem_is_listed_with_key_and_value() {
        let toml = r#"
[nats]
url = "http://x"
batch_size = 0
bogus = true
[http]
listen = "nowhere"
[[queues]]
name = "a.b"
channels = ["email", "fax"]
skills = { billing = 11 }
priority = 12
sla_policy = "missing"
[[rules]]
queue = "nope"
regex = "("
[[agents]]
id = "x"
capacity = { pigeon = 1 }
initial_status = "busy"
units = 0
[[agents]]
id = "x"
[routing.units]
voice = 0
interruptible = ["email", "pager"]
[routing.affinity]
lookback_secs = -1
history = 50
[sla.policies.p]
first_response_secs = { email = -1 }
warning_thresholds = [1.5]
"#;
        let Err(ConfigError::Invalid(problems)) = Config::from_toml_with_env(toml, "t", Vec::new()) else {
            panic!("expected problems");
        };
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        for want in [
            "nats.bogus = true: unknown key",
            "nats.url = \"http://x\"",
            "nats.batch_size = 0",
            "http.listen = \"nowhere\"",
            "queues[0].name = \"a.b\"",
            "queues[0].channels[1] = \"fax\"",
            "queues[0].skills.billing = 11",
            "queues[0].priority = 12",
            "queues[0].sla_policy = \"missing\"",
            "rules[0].queue = \"nope\"",
            "rules[0].regex = \"(\"",
            "agents[0].capacity.pigeon = \"pigeon\"",
            "agents[0].initial_status = \"busy\"",
            "agents[1].id = \"x\": duplicate agent id",
            "agents[0].units = 0",
            "routing.units.voice = 0",
            "routing.units.interruptible[1] = \"pager\"",
            "routing.affinity.lookback_secs = -1",
            "routing.affinity.history = 50",
            "sla.policies.p.first_response_secs.email = -1.0",
            "sla.policies.p.warning_thresholds[0] = 1.5",
        ] {
            assert!(
                text.iter().any(|t| t.starts_with(want)),
                "missing {want:?} in:\n{}",
                text.join("\n")
            );
        }
    }

    #[test]
    fn a_strategy_and_units_round_trip_into_the_spec() {
        let toml = "[routing.units]\nchat = 50\ninterruptible = [\"email\"]\n[[queues]]\nname = \"q\"\nchannels = [\"chat\"]\nstrategy = \"round_robin\"\n[[agents]]\nid = \"a\"\nunits = 120\n";
        let spec = Config::from_toml_with_env(toml, "t", Vec::new())
            .expect("loads")
            .validate()
            .expect("valid");
        assert_eq!(spec.units.weights, [20, 50, 35, 100]);
        assert_eq!(spec.units.interruptible, [true, false, false, false]);
        assert_eq!(spec.agents[0].units, Some(120));
        let q = spec.queues.values().next().expect("queue");
        assert_eq!(q.strategy.as_str(), "round_robin");
    }

    #[test]
    fn every_type_error_is_listed_with_the_semantic_problems_of_the_rest() {
        let toml = r#"
[[queues]]
name = "billing"
channels = ["email"]
priority = "high"
skills = { billing = 11 }
[[rules]]
queue = "nowhere"
[[agents]]
id = "a"
capacity = { email = "two" }
[routing]
offer_timeout_secs = "soon"
"#;
        let Err(ConfigError::Invalid(problems)) = Config::from_toml_with_env(toml, "t", Vec::new()) else {
            panic!("expected problems");
        };
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        for want in [
            "queues[0].priority = \"high\": invalid type",
            "agents[0].capacity.email = \"two\": invalid type",
            "routing.offer_timeout_secs = \"soon\": invalid type",
            "queues[0].skills.billing = 11",
            "rules[0].queue = \"nowhere\"",
        ] {
            assert!(
                text.iter().any(|t| t.starts_with(want)),
                "missing {want:?} in:\n{}",
                text.join("\n")
            );
        }
    }

    #[test]
    fn every_routing_model_option_out_of_range_is_listed_with_its_key_and_value() {
        let toml = r#"
[routing]
default_strategy = "fastest"
[routing.channels.chat]
offer_timeout_secs = -1
wrap_up_secs = 1e9
[routing.channels.fax]
offer_timeout_secs = 5
[[queues]]
name = "a"
channels = ["chat"]
strategy = "random"
order = "fifo"
relax_before_breach = true
ageing_secs = -5
ageing_cap = 12
max_wait_secs = 1e12
max_waiting = 0
max_estimated_wait_secs = -3
admission_overflow = "nowhere"
ring_size = 3
calendar = "missing"
[[queues]]
name = "b"
channels = ["chat", "email"]
closed_overflow = "a"
[[queues.relax]]
after_secs = 60
skills = { billing = 11 }
[[queues.relax]]
after_secs = 30
overflow = "b"
[[queues.relax]]
after_secs = 90
overflow = "a"
[[queues.relax]]
after_secs = 120
"#;
        let cfg = Config::from_toml_with_env(toml, "t", Vec::new()).expect("well typed");
        let problems = cfg.validate().expect_err("out of range");
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        for want in [
            "routing.default_strategy = \"fastest\"",
            "routing.channels.chat.offer_timeout_secs = -1",
            "routing.channels.chat.wrap_up_secs = 1000000000",
            "routing.channels.fax = ",
            "queues[0].strategy = \"random\"",
            "queues[0].order = \"fifo\"",
            "queues[0].relax_before_breach = true",
            "queues[0].ageing_secs = -5",
            "queues[0].ageing_cap = 12",
            "queues[0].max_wait_secs = 1000000000000",
            "queues[0].max_waiting = 0",
            "queues[0].max_estimated_wait_secs = -3",
            "queues[0].admission_overflow = \"nowhere\"",
            "queues[0].ring_size = 3",
            "queues[0].calendar = \"missing\"",
            "queues[1].closed_overflow = \"a\"",
            "queues[1].relax[0].skills.billing = 11",
            "queues[1].relax[1].after_secs = 30",
            "queues[1].relax[1].overflow = \"b\"",
            "queues[1].relax[2].overflow = \"a\"",
            "queues[1].relax[3] = ",
        ] {
            assert!(
                text.iter().any(|t| t.starts_with(want)),
                "missing {want:?} in:\n{}",
                text.join("\n")
            );
        }
    }

    #[test]
    fn a_type_error_names_its_key() {
        let Err(ConfigError::Invalid(p)) =
            Config::from_toml_with_env("[nats]\nbatch_size = \"many\"\n", "t", Vec::new())
        else {
            panic!("expected a problem");
        };
        assert_eq!(p[0].key, "nats.batch_size");
        assert_eq!(p[0].value, "\"many\"");
    }

    #[test]
    fn durations_are_bounded_and_thresholds_must_stay_distinct() {
        let toml = r#"
[routing]
offer_timeout_secs = 1e13
[sla.policies.p]
first_response_secs = { email = 1e12 }
warning_thresholds = [0.5001, 0.5004, 0.9996]
[[queues]]
name = "q"
channels = ["email"]
"#;
        let cfg = Config::from_toml_with_env(toml, "t", Vec::new()).expect("well-typed");
        let problems = cfg.validate().expect_err("out of range");
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        for want in [
            "routing.offer_timeout_secs",
            "sla.policies.p.first_response_secs.email",
            "sla.policies.p.warning_thresholds[1]",
            "sla.policies.p.warning_thresholds[2]",
        ] {
            assert!(keys.contains(&want), "missing {want} in {keys:?}");
        }
        assert!(!keys.contains(&"sla.policies.p.warning_thresholds[0]"), "{keys:?}");
    }
}

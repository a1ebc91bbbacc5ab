//! `[alerts]`: where SLA alerts go besides NATS. `[alerts.sinks.<name>]`
//! tables, `type = "webhook"` or `"email"`, checked by
//! [`Config::sink_specs`] with every problem listed (secrets resolved as
//! for adapters: inline, `_env` or `_file`, never printed).

use super::adapters::{given, resolve};
use super::{Config, Problem, Secret};
use crate::domain::{Channel, QueueName};
use crate::sinks::{EmailSink, Filters, SinkKind, SinkSpec, SmtpTls, WebhookFormat};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct AlertsConfig {
    /// A link to the operator's desk in every alert message:
    /// `{contact_id}`, `{conversation_id}`, `{queue}` are replaced.
    pub link_template: Option<String>,
    pub sinks: BTreeMap<String, SinkConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SinkConfig {
    #[serde(rename = "type")]
    pub kind: String,
    pub enabled: bool,
    /// Filters: an alert passes when its value is in each non-empty list.
    pub kinds: Vec<String>,
    pub clocks: Vec<String>,
    pub queues: Vec<String>,
    pub channels: Vec<String>,
    pub tiers: Vec<String>,
    pub timeout_secs: f64,
    pub max_attempts: u32,
    /// Alerts sent one by one per window; the rest come as one digest.
    pub max_per_minute: u32,
    pub digest_window_secs: f64,
    /// `webhook`.
    pub url: Option<String>,
    pub secret: Option<Secret>,
    pub secret_env: Option<String>,
    pub secret_file: Option<PathBuf>,
    /// `json` (default) or `slack`.
    pub format: Option<String>,
    /// `email`.
    pub host: Option<String>,
    pub port: Option<u16>,
    /// `starttls` (default, 587), `tls` (465) or `none` (loopback only).
    pub tls: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    pub from: Option<String>,
    pub to: Vec<String>,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            kind: String::new(),
            enabled: true,
            kinds: Vec::new(),
            clocks: Vec::new(),
            queues: Vec::new(),
            channels: Vec::new(),
            tiers: Vec::new(),
            timeout_secs: 10.0,
            max_attempts: 5,
            max_per_minute: 30,
            digest_window_secs: 60.0,
            url: None,
            secret: None,
            secret_env: None,
            secret_file: None,
            format: None,
            host: None,
            port: None,
            tls: None,
            ca_file: None,
            username: None,
            password: None,
            password_env: None,
            password_file: None,
            from: None,
            to: Vec::new(),
        }
    }
}

const KINDS: [&str; 2] = ["warning", "breach"];
const CLOCKS: [&str; 4] = ["first_response", "next_response", "queue_wait", "resolution"];

impl Config {
    /// The enabled sinks, checked; `env` resolves `*_env` secrets.
    pub fn sink_specs_with(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<Vec<SinkSpec>, Vec<Problem>> {
        let mut p = Vec::new();
        let mut specs = Vec::new();
        let queues: Vec<&str> = self.queues.iter().map(|q| q.name.as_str()).collect();
        for (name, c) in &self.alerts.sinks {
            let key = format!("alerts.sinks.{name}");
            let mut bad = |k: &str, v: String, m: &str| p.push(Problem::new(format!("{key}{k}"), v, m));
            if let Err(e) = crate::domain::check_token(name) {
                bad("", format!("{name:?}"), &format!("sink name {e}"));
            }
            for (i, k) in c.kinds.iter().enumerate() {
                if !KINDS.contains(&k.as_str()) {
                    bad(&format!(".kinds[{i}]"), format!("{k:?}"), "must be warning or breach");
                }
            }
            for (i, k) in c.clocks.iter().enumerate() {
                if !CLOCKS.contains(&k.as_str()) {
                    bad(
                        &format!(".clocks[{i}]"),
                        format!("{k:?}"),
                        "must be first_response, next_response, queue_wait or resolution",
                    );
                }
            }
            for (i, q) in c.queues.iter().enumerate() {
                if QueueName::try_from(q.as_str()).is_err() || !queues.contains(&q.as_str()) {
                    bad(
                        &format!(".queues[{i}]"),
                        format!("{q:?}"),
                        "no queue of this name is configured",
                    );
                }
            }
            for (i, ch) in c.channels.iter().enumerate() {
                if let Err(e) = ch.parse::<Channel>() {
                    bad(&format!(".channels[{i}]"), format!("{ch:?}"), &e);
                }
            }
            if !(c.timeout_secs.is_finite() && c.timeout_secs > 0.0 && c.timeout_secs <= 300.0) {
                bad(
                    ".timeout_secs",
                    c.timeout_secs.to_string(),
                    "must be above 0 and at most 300",
                );
            }
            if !(1..=20).contains(&c.max_attempts) {
                bad(".max_attempts", c.max_attempts.to_string(), "must be 1 to 20");
            }
            if !(1..=10_000).contains(&c.max_per_minute) {
                bad(".max_per_minute", c.max_per_minute.to_string(), "must be 1 to 10000");
            }
            if !(c.digest_window_secs.is_finite() && (1.0..=3600.0).contains(&c.digest_window_secs)) {
                bad(
                    ".digest_window_secs",
                    c.digest_window_secs.to_string(),
                    "must be 1 to 3600",
                );
            }
            for (k, value, applies) in keys_of_one_type(c) {
                if let Some(v) = value.filter(|_| ["webhook", "email"].contains(&c.kind.as_str()) && applies != c.kind)
                {
                    bad(&format!(".{k}"), v, &format!("does not apply to {}", c.kind));
                }
            }
            let kind = match c.kind.as_str() {
                "webhook" => {
                    // What a disabled sink lacks is not a problem yet;
                    // what it gives must still be right.
                    let url = c.url.clone().unwrap_or_default();
                    if (c.enabled || c.url.is_some())
                        && (!(url.starts_with("https://") || url.starts_with("http://")) || url.contains(' '))
                    {
                        bad(".url", format!("{url:?}"), "must be an http(s) URL");
                    }
                    let secret_forms = (&c.secret, &c.secret_env, &c.secret_file);
                    let secret = resolve(&mut bad, env, "secret", secret_forms, c.enabled);
                    // A secret given but not found was reported by `resolve`.
                    if !given(secret_forms) && c.enabled {
                        bad(
                            ".secret",
                            "none".into(),
                            "a signing secret is required (secret, secret_env or secret_file)",
                        );
                    }
                    let format = match c.format.as_deref() {
                        None | Some("json") => WebhookFormat::Json,
                        Some("slack") => WebhookFormat::Slack,
                        Some(f) => {
                            bad(".format", format!("{f:?}"), "must be json or slack");
                            WebhookFormat::Json
                        }
                    };
                    Some(SinkKind::Webhook {
                        url,
                        secret: secret.unwrap_or_default(),
                        format,
                    })
                }
                "email" => {
                    let host = c.host.clone().unwrap_or_default();
                    if host.is_empty() && c.enabled {
                        bad(".host", "none".into(), "the SMTP server's host name is required");
                    }
                    let tls = match c.tls.as_deref().unwrap_or("starttls") {
                        "starttls" => SmtpTls::StartTls,
                        "tls" => SmtpTls::Tls,
                        "none" => {
                            let loopback = host == "localhost"
                                || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
                            if !loopback {
                                bad(
                                    ".tls",
                                    "\"none\"".into(),
                                    "plain SMTP is allowed only to a loopback address",
                                );
                            }
                            SmtpTls::None
                        }
                        other => {
                            bad(".tls", format!("{other:?}"), "must be starttls, tls or none");
                            SmtpTls::StartTls
                        }
                    };
                    let password_forms = (&c.password, &c.password_env, &c.password_file);
                    let password = resolve(&mut bad, env, "password", password_forms, c.enabled);
                    if given(password_forms) != c.username.is_some() {
                        bad(
                            ".username",
                            format!("{:?}", c.username),
                            "give both username and a password, or neither",
                        );
                    }
                    let from = c.from.clone().unwrap_or_default();
                    if let (Err(e), true) = (crate::sinks::email::mailbox(&from), c.enabled || c.from.is_some()) {
                        bad(".from", format!("{from:?}"), &format!("not a mailbox: {e}"));
                    }
                    if c.to.is_empty() && c.enabled {
                        bad(".to", "[]".into(), "at least one recipient is needed");
                    }
                    for (i, t) in c.to.iter().enumerate() {
                        if let Err(e) = crate::sinks::email::mailbox(t) {
                            bad(&format!(".to[{i}]"), format!("{t:?}"), &format!("not a mailbox: {e}"));
                        }
                    }
                    if let Some(f) = &c.ca_file {
                        if !f.exists() {
                            bad(".ca_file", format!("{:?}", f.display().to_string()), "no such file");
                        }
                    }
                    let port = c.port.unwrap_or(match tls {
                        SmtpTls::Tls => 465,
                        SmtpTls::StartTls => 587,
                        SmtpTls::None => 25,
                    });
                    Some(SinkKind::Email(EmailSink {
                        host,
                        port,
                        tls,
                        ca_file: c.ca_file.clone(),
                        username: c.username.clone(),
                        password,
                        from,
                        to: c.to.clone(),
                    }))
                }
                other => {
                    bad(".type", format!("{other:?}"), "must be webhook or email");
                    None
                }
            };
            if let (Some(kind), true) = (kind, c.enabled) {
                specs.push(SinkSpec {
                    name: name.clone(),
                    kind,
                    filters: Filters {
                        kinds: c.kinds.clone(),
                        clocks: c.clocks.clone(),
                        queues: c.queues.clone(),
                        channels: c.channels.clone(),
                        tiers: c.tiers.clone(),
                    },
                    timeout: Duration::from_secs_f64(c.timeout_secs.clamp(0.001, 300.0)),
                    max_attempts: c.max_attempts,
                    max_per_minute: c.max_per_minute,
                    digest_window: Duration::from_secs_f64(c.digest_window_secs.clamp(1.0, 3600.0)),
                    link_template: self.alerts.link_template.clone(),
                });
            }
        }
        if p.is_empty() {
            Ok(specs)
        } else {
            Err(p)
        }
    }

    pub fn sink_specs(&self) -> Result<Vec<SinkSpec>, Vec<Problem>> {
        self.sink_specs_with(&|k| std::env::var(k).ok())
    }
}

/// The keys only one sink type reads, with the value a problem shows
/// (`None`: not set; secrets and addresses are never shown) and that type.
/// Set on the other type it would be ignored, so `validate` reports it.
fn keys_of_one_type(c: &SinkConfig) -> Vec<(&'static str, Option<String>, &'static str)> {
    fn shown<T: std::fmt::Debug>(v: &Option<T>) -> Option<String> {
        v.as_ref().map(|v| format!("{v:?}"))
    }
    fn hidden<T>(v: &Option<T>) -> Option<String> {
        v.as_ref().map(|_| "…".to_string())
    }
    let to = (!c.to.is_empty()).then(|| "…".to_string());
    vec![
        ("url", hidden(&c.url), "webhook"),
        ("secret", hidden(&c.secret), "webhook"),
        ("secret_env", shown(&c.secret_env), "webhook"),
        ("secret_file", shown(&c.secret_file), "webhook"),
        ("format", shown(&c.format), "webhook"),
        ("host", shown(&c.host), "email"),
        ("port", shown(&c.port), "email"),
        ("tls", shown(&c.tls), "email"),
        ("ca_file", shown(&c.ca_file), "email"),
        ("username", hidden(&c.username), "email"),
        ("password", hidden(&c.password), "email"),
        ("password_env", shown(&c.password_env), "email"),
        ("password_file", shown(&c.password_file), "email"),
        ("from", hidden(&c.from), "email"),
        ("to", to, "email"),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    #[test]
    fn every_sink_problem_is_listed_with_its_key() {
        let toml = r#"
[[queues]]
name = "billing"
channels = ["email"]
[alerts.sinks.hook]
type = "webhook"
url = "ftp://x"
kinds = ["panic"]
queues = ["nope"]
max_attempts = 0
[alerts.sinks.mail]
type = "email"
host = "smtp.example.com"
tls = "none"
from = "not an address"
username = "u"
[alerts.sinks.pager]
type = "pager"
"#;
        let cfg = Config::from_toml_with_env(toml, "t", Vec::new()).expect("well-typed");
        let problems = cfg.sink_specs_with(&|_| None).expect_err("invalid");
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        for want in [
            "alerts.sinks.hook.url = \"ftp://x\"",
            "alerts.sinks.hook.kinds[0] = \"panic\"",
            "alerts.sinks.hook.queues[0] = \"nope\"",
            "alerts.sinks.hook.max_attempts = 0",
            "alerts.sinks.hook.secret = none",
            "alerts.sinks.mail.tls = \"none\"",
            "alerts.sinks.mail.from = \"not an address\"",
            "alerts.sinks.mail.to = []",
            "alerts.sinks.mail.username = Some(\"u\")",
            "alerts.sinks.pager.type = \"pager\"",
        ] {
            assert!(
                text.iter().any(|t| t.starts_with(want)),
                "missing {want:?} in\n{}",
                text.join("\n")
            );
        }
        assert!(cfg.validate().is_err(), "validate lists sink problems too");
    }

    /// A disabled sink may name a secret that is not provisioned yet and
    /// leave out what only sending needs; what it gives is still checked.
    /// An enabled sink's missing variable is one problem, not two.
    #[test]
    fn a_disabled_sink_needs_no_provisioned_secret_and_a_missing_one_is_reported_once() {
        let toml = r#"
[alerts.sinks.later]
type = "email"
enabled = false
password_env = "NOT_YET"
username = "u"
[alerts.sinks.off]
type = "webhook"
enabled = false
url = "ftp://x"
[alerts.sinks.hook]
type = "webhook"
url = "https://hooks.example.com/a"
secret_env = "MISSING_VAR"
"#;
        let cfg = Config::from_toml_with_env(toml, "t", Vec::new()).expect("well-typed");
        let problems = cfg.sink_specs_with(&|_| None).expect_err("invalid");
        super::super::assert_problems_are(
            &problems,
            &[
                "alerts.sinks.hook.secret_env = \"MISSING_VAR\"",
                "alerts.sinks.off.url = \"ftp://x\"",
            ],
        );
    }

    /// A key only the other sink type reads is reported, not ignored;
    /// credentials and addresses are never shown.
    #[test]
    fn a_key_of_the_other_sink_type_is_reported() {
        let toml = r#"
[alerts.sinks.hook]
type = "webhook"
url = "https://hooks.example.com/T0/secret"
secret = "s"
tls = "tls"
to = ["ops@example.com"]
[alerts.sinks.mail]
type = "email"
host = "smtp.example.com"
from = "omniroute@example.com"
to = ["ops@example.com"]
format = "slack"
secret_env = "HOOK_SECRET"
"#;
        let cfg = Config::from_toml_with_env(toml, "t", Vec::new()).expect("well-typed");
        let problems = cfg.sink_specs_with(&|_| None).expect_err("invalid");
        super::super::assert_problems_are(
            &problems,
            &[
                "alerts.sinks.hook.tls = \"tls\": does not apply to webhook",
                "alerts.sinks.hook.to = …: does not apply to webhook",
                "alerts.sinks.mail.secret_env = \"HOOK_SECRET\": does not apply to email",
                "alerts.sinks.mail.format = \"slack\": does not apply to email",
            ],
        );
    }
}

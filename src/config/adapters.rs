//! `[webhooks]` and `[adapters.<name>]`: the channel adapters' settings as
//! data, and [`Config::adapter_specs`], which checks them (every problem
//! with its key and value, as `validate` does for the rest) and resolves
//! secrets from the file, the environment or a path.
//!
//! Secrets (`secret`, `verify_token`) are given one of three ways:
//! `secret = "…"` in the file, `secret_env = "VAR"` (read from the
//! environment at start), or `secret_file = "/run/secrets/chat"` (the
//! file's content, trailing newline removed). They are never printed.

use super::{Config, Problem, Secret};
use crate::adapters::ivr::MenuChoice;
use crate::adapters::spec::{AdapterKind, AdapterSpec, ImapSpec, ImapTls, SocialFormat};
use crate::adapters::Defaults;
use crate::domain::{QueueName, SkillName};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::PathBuf;

/// `[webhooks]`: the one public listener every webhook adapter is served
/// on (each at its own path), apart from the operator listener (`[http]`),
/// which should stay private.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct WebhooksConfig {
    pub listen: String,
    /// How long a webhook waits for JetStream's acknowledgement before
    /// answering 503.
    pub publish_timeout_secs: f64,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            listen: "127.0.0.1:8081".into(),
            publish_timeout_secs: 5.0,
        }
    }
}

/// `[adapters.<name>]`: one adapter instance; `type` says which keys apply.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AdapterConfig {
    #[serde(rename = "type")]
    pub kind: String,
    pub enabled: bool,
    /// URL path on the webhook listener (default `/webhooks/<name>`).
    pub path: Option<String>,
    pub secret: Option<Secret>,
    pub secret_env: Option<String>,
    pub secret_file: Option<PathBuf>,
    /// `social-webhook` with `format = "meta"`: the GET handshake's token.
    pub verify_token: Option<Secret>,
    pub verify_token_env: Option<String>,
    pub verify_token_file: Option<PathBuf>,
    /// `social-webhook`: `meta` (default) or `generic`.
    pub format: Option<String>,
    /// `ivr-webhook`: the URL Twilio calls, exactly as configured there
    /// (the signature covers it; behind a proxy the local URL differs).
    pub public_url: Option<String>,
    /// `ivr-webhook`: the TwiML answered to Twilio (hold music, `<Enqueue>`).
    pub reply: Option<String>,
    /// Request bodies above this are refused with 413.
    pub max_body_bytes: Option<u64>,
    pub queue: Option<String>,
    pub skills: Vec<String>,
    pub priority: Option<i64>,
    pub tier: Option<String>,
    pub language: Option<String>,
    /// `ivr-webhook`: digits or speech keywords → routing.
    pub menu: Vec<MenuConfig>,
    /// `email-imap`: the server (`host`, `port`, `tls` = `tls` (993),
    /// `starttls` (143) or `none`, allowed only to a loopback address),
    /// an extra CA (`ca_file`, PEM) beside the system roots.
    pub host: Option<String>,
    pub port: Option<u16>,
    pub tls: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    /// Mailboxes to read (default `["INBOX"]`).
    pub mailboxes: Vec<String>,
    /// Where a processed message is moved; without it, it is marked seen
    /// and only unseen messages are read.
    pub processed_folder: Option<String>,
    /// Seconds between polls; with IDLE, the longest wait before a poll.
    pub poll_secs: Option<f64>,
    /// Use IDLE when the server offers it (default true).
    pub idle: Option<bool>,
}

impl Default for AdapterConfig {
    fn default() -> Self {
        AdapterConfig {
            kind: String::new(),
            enabled: true,
            path: None,
            secret: None,
            secret_env: None,
            secret_file: None,
            verify_token: None,
            verify_token_env: None,
            verify_token_file: None,
            format: None,
            public_url: None,
            reply: None,
            max_body_bytes: None,
            queue: None,
            skills: Vec::new(),
            priority: None,
            tier: None,
            language: None,
            menu: Vec::new(),
            host: None,
            port: None,
            tls: None,
            ca_file: None,
            username: None,
            password: None,
            password_env: None,
            password_file: None,
            mailboxes: Vec::new(),
            processed_folder: None,
            poll_secs: None,
            idle: None,
        }
    }
}

/// `[[adapters.<name>.menu]]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct MenuConfig {
    pub digits: Option<String>,
    pub keywords: Vec<String>,
    pub queue: Option<String>,
    pub skills: Vec<String>,
    pub language: Option<String>,
    pub priority: Option<i64>,
}

/// Default body limits: mail carries attachments; the JSON webhooks do not.
const MAX_BODY_EMAIL: u64 = 25 * 1024 * 1024;
const MAX_BODY_JSON: u64 = 1024 * 1024;
/// Above this a body limit is a configuration mistake (the request is held
/// in memory).
const MAX_BODY_CEILING: u64 = 64 * 1024 * 1024;

impl Config {
    /// The enabled adapters, checked and with their secrets resolved;
    /// `env` looks up `*_env` secrets (tests pass their own).
    pub fn adapter_specs_with(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<Vec<AdapterSpec>, Vec<Problem>> {
        let mut p = Vec::new();
        let mut specs = Vec::new();
        let mut paths = BTreeSet::new();
        if self.adapters.values().any(|a| a.enabled) {
            // The listener is bound only for webhook adapters (an IMAP
            // adapter publishes, with the same timeout, but serves nothing).
            let serves = self.adapters.values().any(|a| a.enabled && a.kind != "email-imap");
            if serves && self.webhooks.listen.parse::<std::net::SocketAddr>().is_err() {
                p.push(Problem::new(
                    "webhooks.listen",
                    format!("{:?}", self.webhooks.listen),
                    "must be an address such as 0.0.0.0:8081",
                ));
            }
            let t = self.webhooks.publish_timeout_secs;
            if !(t.is_finite() && t > 0.0 && t <= 60.0) {
                p.push(Problem::new(
                    "webhooks.publish_timeout_secs",
                    t,
                    "must be above 0 and at most 60",
                ));
            }
        }
        for (name, a) in &self.adapters {
            let key = format!("adapters.{name}");
            let mut bad = |k: &str, v: String, m: &str| p.push(Problem::new(format!("{key}{k}"), v, m));
            if let Err(e) = crate::domain::check_token(name) {
                bad("", format!("{name:?}"), &format!("adapter name {e}"));
            }
            let kind = match a.kind.as_str() {
                "chat-webhook" => Some(AdapterKind::Chat),
                "social-webhook" => Some(AdapterKind::Social),
                "ivr-webhook" => Some(AdapterKind::Ivr),
                "email-webhook" => Some(AdapterKind::Email),
                "email-imap" => Some(AdapterKind::Imap),
                other => {
                    bad(
                        ".type",
                        format!("{other:?}"),
                        "must be one of chat-webhook, social-webhook, ivr-webhook, email-webhook, email-imap",
                    );
                    None
                }
            };
            let path = a.path.clone().unwrap_or_else(|| format!("/webhooks/{name}"));
            // `:` too: the HTTP router reads a segment starting with it as a
            // capture of the old syntax and refuses the route.
            if !path.starts_with('/') || path.len() > 200 || path.contains(['{', '}', '*', '?', '#', ':', ' ']) {
                bad(
                    ".path",
                    format!("{path:?}"),
                    "must start with / and hold no {, }, *, ?, #, : or spaces",
                );
            } else if a.enabled && kind != Some(AdapterKind::Imap) && !paths.insert(path.clone()) {
                bad(".path", format!("{path:?}"), "another enabled adapter serves this path");
            }
            let secret_forms = (&a.secret, &a.secret_env, &a.secret_file);
            // Looked up only where the type reads them (elsewhere they are
            // reported as not applying, below).
            let reads = |kinds: &[AdapterKind]| kind.is_none_or(|k| kinds.contains(&k));
            let secret = reads(WEBHOOKS)
                .then(|| resolve(&mut bad, env, "secret", secret_forms, a.enabled))
                .flatten();
            let verify_forms = (&a.verify_token, &a.verify_token_env, &a.verify_token_file);
            let verify = reads(&[AdapterKind::Social])
                .then(|| resolve(&mut bad, env, "verify_token", verify_forms, a.enabled))
                .flatten();
            let format = match (kind, a.format.as_deref()) {
                (Some(AdapterKind::Social), None | Some("meta")) => SocialFormat::Meta,
                (Some(AdapterKind::Social), Some("generic")) => SocialFormat::Generic,
                (Some(AdapterKind::Social), Some(f)) => {
                    bad(".format", format!("{f:?}"), "must be meta or generic");
                    SocialFormat::Meta
                }
                (_, Some(f)) => {
                    bad(".format", format!("{f:?}"), "applies to social-webhook only");
                    SocialFormat::Meta
                }
                (_, None) => SocialFormat::Meta,
            };
            if let Some(kind) = kind {
                for (k, value, applies) in keys_of_one_type(a) {
                    if let Some(v) = value.filter(|_| !applies.contains(&kind)) {
                        bad(&format!(".{k}"), v, &format!("does not apply to {}", kind.as_str()));
                    }
                }
            }
            let imap = (kind == Some(AdapterKind::Imap)).then(|| imap_spec(&mut bad, env, a));
            // Required when enabled; a secret given but not found was
            // reported by `resolve` already.
            if a.enabled && !given(secret_forms) && kind.is_some() && kind != Some(AdapterKind::Imap) {
                bad(
                    ".secret",
                    "none".into(),
                    "a signing secret is required (secret, secret_env or secret_file)",
                );
            }
            if a.enabled && kind == Some(AdapterKind::Social) && format == SocialFormat::Meta && !given(verify_forms) {
                bad(
                    ".verify_token",
                    "none".into(),
                    "format meta needs the verify token of the GET handshake",
                );
            }
            if let Some(u) = &a.public_url {
                if !(u.starts_with("https://") || u.starts_with("http://")) {
                    bad(".public_url", format!("{u:?}"), "must be the http(s) URL Twilio calls");
                }
            }
            let max_body =
                a.max_body_bytes
                    .unwrap_or(if matches!(kind, Some(AdapterKind::Email | AdapterKind::Imap)) {
                        MAX_BODY_EMAIL
                    } else {
                        MAX_BODY_JSON
                    });
            if max_body == 0 || max_body > MAX_BODY_CEILING {
                bad(".max_body_bytes", max_body.to_string(), "must be 1 to 67108864");
            }
            let defaults = routing_defaults(
                &mut bad,
                "",
                a.queue.as_deref(),
                &a.skills,
                a.priority,
                a.language.as_deref(),
            );
            let mut menu = Vec::new();
            for (i, m) in a.menu.iter().enumerate() {
                let k = format!(".menu[{i}]");
                if kind != Some(AdapterKind::Ivr) {
                    bad(&k, "…".into(), "a menu applies to ivr-webhook only");
                }
                if m.digits.is_none() && m.keywords.is_empty() {
                    bad(&k, "…".into(), "a menu choice needs digits or keywords");
                }
                if let Some(d) = &m.digits {
                    if d.is_empty() || d.len() > 16 || !d.chars().all(|c| c.is_ascii_digit() || c == '*' || c == '#') {
                        bad(&format!("{k}.digits"), format!("{d:?}"), "must be 1 to 16 of 0-9 * #");
                    }
                }
                let d = routing_defaults(
                    &mut bad,
                    &k,
                    m.queue.as_deref(),
                    &m.skills,
                    m.priority,
                    m.language.as_deref(),
                );
                menu.push(MenuChoice {
                    digits: m.digits.clone(),
                    keywords: m.keywords.clone(),
                    queue: d.queue,
                    skills: d.skills,
                    language: d.language,
                    priority: d.priority,
                });
            }
            if let (Some(kind), true) = (kind, a.enabled) {
                specs.push(AdapterSpec {
                    name: name.clone(),
                    kind,
                    path,
                    secret: secret.unwrap_or_default(),
                    verify_token: verify,
                    format,
                    public_url: a.public_url.clone(),
                    reply: a.reply.clone(),
                    max_body_bytes: usize::try_from(max_body).unwrap_or(usize::MAX),
                    defaults: Defaults {
                        tier: a.tier.clone(),
                        ..defaults
                    },
                    menu,
                    imap: imap.flatten(),
                });
            }
        }
        if p.is_empty() {
            Ok(specs)
        } else {
            Err(p)
        }
    }

    /// [`Config::adapter_specs_with`] on the process environment.
    pub fn adapter_specs(&self) -> Result<Vec<AdapterSpec>, Vec<Problem>> {
        self.adapter_specs_with(&|k| std::env::var(k).ok())
    }
}

const WEBHOOKS: &[AdapterKind] = &[
    AdapterKind::Chat,
    AdapterKind::Social,
    AdapterKind::Ivr,
    AdapterKind::Email,
];

/// The keys only some adapter types read: each with its value as a problem
/// shows it (`None`: not set; secrets are never shown) and the types it
/// applies to. Set on another type it would be ignored, so `validate`
/// reports it. (`format` and `menu` have their own checks.)
fn keys_of_one_type(a: &AdapterConfig) -> Vec<(&'static str, Option<String>, &'static [AdapterKind])> {
    fn shown<T: std::fmt::Debug>(v: &Option<T>) -> Option<String> {
        v.as_ref().map(|v| format!("{v:?}"))
    }
    fn hidden<T>(v: &Option<T>) -> Option<String> {
        v.as_ref().map(|_| "…".to_string())
    }
    let social = &[AdapterKind::Social][..];
    let ivr = &[AdapterKind::Ivr][..];
    let imap = &[AdapterKind::Imap][..];
    let mailboxes = (!a.mailboxes.is_empty()).then(|| format!("{:?}", a.mailboxes));
    vec![
        ("path", shown(&a.path), WEBHOOKS),
        ("secret", hidden(&a.secret), WEBHOOKS),
        ("secret_env", shown(&a.secret_env), WEBHOOKS),
        ("secret_file", shown(&a.secret_file), WEBHOOKS),
        ("verify_token", hidden(&a.verify_token), social),
        ("verify_token_env", shown(&a.verify_token_env), social),
        ("verify_token_file", shown(&a.verify_token_file), social),
        ("public_url", shown(&a.public_url), ivr),
        ("reply", hidden(&a.reply), ivr),
        ("host", shown(&a.host), imap),
        ("port", shown(&a.port), imap),
        ("tls", shown(&a.tls), imap),
        ("ca_file", shown(&a.ca_file), imap),
        ("username", hidden(&a.username), imap),
        ("password", hidden(&a.password), imap),
        ("password_env", shown(&a.password_env), imap),
        ("password_file", shown(&a.password_file), imap),
        ("mailboxes", mailboxes, imap),
        ("processed_folder", shown(&a.processed_folder), imap),
        ("poll_secs", shown(&a.poll_secs), imap),
        ("idle", shown(&a.idle), imap),
    ]
}

/// The `email-imap` keys, checked; `None` after a problem was reported.
fn imap_spec(
    bad: &mut dyn FnMut(&str, String, &str),
    env: &dyn Fn(&str) -> Option<String>,
    a: &AdapterConfig,
) -> Option<ImapSpec> {
    let before = std::cell::Cell::new(0usize);
    let mut n = |k: &str, v: String, m: &str| {
        before.set(before.get() + 1);
        bad(k, v, m)
    };
    // What a disabled adapter lacks is not a problem yet; what it gives
    // must still be right.
    let host = a.host.clone().unwrap_or_default();
    if host.is_empty() && a.enabled {
        n(".host", "none".into(), "the IMAP server's host name is required");
    }
    let tls = match a.tls.as_deref().unwrap_or("tls") {
        "tls" => ImapTls::Tls,
        "starttls" => ImapTls::StartTls,
        "none" => {
            let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                n(
                    ".tls",
                    "\"none\"".into(),
                    "plain IMAP is allowed only to a loopback address; use tls or starttls",
                );
            }
            ImapTls::None
        }
        other => {
            n(".tls", format!("{other:?}"), "must be tls, starttls or none");
            ImapTls::Tls
        }
    };
    let port = a.port.unwrap_or(if tls == ImapTls::Tls { 993 } else { 143 });
    let username = a.username.clone().unwrap_or_default();
    if username.is_empty() && a.enabled {
        n(".username", "none".into(), "the IMAP user name is required");
    }
    let password_forms = (&a.password, &a.password_env, &a.password_file);
    let password = resolve(&mut n, env, "password", password_forms, a.enabled);
    if !given(password_forms) && a.enabled {
        n(
            ".password",
            "none".into(),
            "the IMAP password is required (password, password_env or password_file)",
        );
    }
    let mailboxes = if a.mailboxes.is_empty() {
        vec!["INBOX".to_string()]
    } else {
        a.mailboxes.clone()
    };
    for (i, m) in mailboxes.iter().chain(a.processed_folder.iter()).enumerate() {
        if m.is_empty() || m.len() > 200 || m.chars().any(|c| c.is_control() || c == '"' || c == '\\') {
            n(
                &format!(".mailboxes[{i}]"),
                format!("{m:?}"),
                "a mailbox name of 1 to 200 characters without quotes, backslashes or control characters",
            );
        }
    }
    if let Some(f) = &a.processed_folder {
        if mailboxes.contains(f) {
            n(
                ".processed_folder",
                format!("{f:?}"),
                "must differ from the mailboxes read",
            );
        }
    }
    let poll = a.poll_secs.unwrap_or(30.0);
    if !(poll.is_finite() && (1.0..=3600.0).contains(&poll)) {
        n(".poll_secs", poll.to_string(), "must be 1 to 3600 seconds");
    }
    if let Some(f) = &a.ca_file {
        if !f.exists() {
            n(".ca_file", format!("{:?}", f.display().to_string()), "no such file");
        }
    }
    (before.get() == 0).then(|| ImapSpec {
        host,
        port,
        tls,
        ca_file: a.ca_file.clone(),
        username,
        password: password.unwrap_or_default(),
        mailboxes,
        processed_folder: a.processed_folder.clone(),
        poll: std::time::Duration::from_secs_f64(poll),
        idle: a.idle.unwrap_or(true),
    })
}

/// Whether any of `<key>`, `<key>_env`, `<key>_file` is given.
pub(super) fn given((inline, var, file): (&Option<Secret>, &Option<String>, &Option<PathBuf>)) -> bool {
    inline.is_some() || var.is_some() || file.is_some()
}

/// One of `<key>`, `<key>_env`, `<key>_file`, resolved. Only when
/// `look_up` (the adapter or sink is enabled): a disabled one may name a
/// variable or a file that is not provisioned yet; that more than one is
/// given is reported either way. `None` when nothing is given, when it is
/// not looked up, or after a problem was reported.
pub(super) fn resolve(
    bad: &mut dyn FnMut(&str, String, &str),
    env: &dyn Fn(&str) -> Option<String>,
    key: &str,
    (inline, var, file): (&Option<Secret>, &Option<String>, &Option<PathBuf>),
    look_up: bool,
) -> Option<String> {
    let given = [inline.is_some(), var.is_some(), file.is_some()];
    if given.iter().filter(|g| **g).count() > 1 {
        bad(
            &format!(".{key}"),
            "***".into(),
            &format!("give one of {key}, {key}_env, {key}_file"),
        );
        return None;
    }
    if !look_up {
        return None;
    }
    let value = if let Some(s) = inline {
        Some(s.0.clone())
    } else if let Some(v) = var {
        let got = env(v);
        if got.is_none() {
            bad(
                &format!(".{key}_env"),
                format!("{v:?}"),
                "this environment variable is not set",
            );
        }
        got
    } else if let Some(f) = file {
        match std::fs::read_to_string(f) {
            Ok(s) => Some(s.trim_end_matches(['\n', '\r']).to_string()),
            Err(e) => {
                bad(
                    &format!(".{key}_file"),
                    format!("{:?}", f.display().to_string()),
                    &format!("cannot read it: {e}"),
                );
                None
            }
        }
    } else {
        None
    };
    match value {
        Some(v) if v.is_empty() => {
            bad(&format!(".{key}"), "***".into(), "is empty");
            None
        }
        v => v,
    }
}

fn routing_defaults(
    bad: &mut dyn FnMut(&str, String, &str),
    prefix: &str,
    queue: Option<&str>,
    skills: &[String],
    priority: Option<i64>,
    language: Option<&str>,
) -> Defaults {
    if let Some(q) = queue {
        if let Err(e) = QueueName::try_from(q) {
            bad(&format!("{prefix}.queue"), format!("{q:?}"), &e);
        }
    }
    for (i, s) in skills.iter().enumerate() {
        if let Err(e) = SkillName::try_from(s.as_str()) {
            bad(&format!("{prefix}.skills[{i}]"), format!("{s:?}"), &e);
        }
    }
    let priority = priority.and_then(|p| match u8::try_from(p) {
        Ok(p @ 0..=9) => Some(p),
        _ => {
            bad(&format!("{prefix}.priority"), p.to_string(), "must be 0 to 9");
            None
        }
    });
    Defaults {
        queue: queue.map(str::to_string),
        skills: skills.to_vec(),
        priority,
        tier: None,
        language: language.map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Config, ConfigError};

    fn load(toml: &str) -> Config {
        Config::from_toml_with_env(toml, "t", Vec::new()).expect("well-typed")
    }

    /// The adapter problems of a well-typed file, no variable set.
    fn problems(toml: &str) -> Vec<super::super::Problem> {
        load(toml).adapter_specs_with(&|_| None).expect_err("invalid")
    }

    #[test]
    fn every_adapter_problem_is_listed_and_secrets_never_print() {
        let problems = problems(
            r#"
[adapters.chat]
type = "chat-webhook"
secret = "s1"
secret_env = "X"
priority = 12
[adapters.fax]
type = "fax-webhook"
[adapters.social]
type = "social-webhook"
secret_env = "MISSING_VAR"
path = "/webhooks/chat"
[adapters.phone]
type = "ivr-webhook"
secret_file = "/nonexistent/secret"
[[adapters.phone.menu]]
digits = "1x"
queue = "bad queue"
"#,
        );
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        for want in [
            "adapters.chat.secret = ***: give one of secret, secret_env, secret_file",
            "adapters.chat.priority = 12",
            "adapters.fax.type = \"fax-webhook\"",
            "adapters.social.secret_env = \"MISSING_VAR\"",
            "adapters.social.verify_token = none",
            "adapters.phone.secret_file = \"/nonexistent/secret\"",
            "adapters.phone.menu[0].digits = \"1x\"",
            "adapters.phone.menu[0].queue = \"bad queue\"",
        ] {
            assert!(
                text.iter().any(|t| t.starts_with(want)),
                "missing {want:?} in\n{}",
                text.join("\n")
            );
        }
        assert!(!text.join("\n").contains("s1"), "a secret was printed");
    }

    /// A disabled adapter may name a secret that is not provisioned yet and
    /// leave out what only running needs; giving two forms of one secret is
    /// still wrong. An enabled adapter's missing variable is one problem,
    /// not two.
    #[test]
    fn a_disabled_adapter_needs_no_provisioned_secret_and_a_missing_one_is_reported_once() {
        let problems = problems(
            r#"
[adapters.both]
type = "chat-webhook"
enabled = false
secret = "s1"
secret_file = "/nonexistent/secret"
[adapters.chat]
type = "chat-webhook"
secret_env = "MISSING_VAR"
[adapters.later]
type = "email-imap"
enabled = false
password_env = "NOT_YET"
"#,
        );
        super::super::assert_problems_are(
            &problems,
            &[
                "adapters.both.secret = ***: give one of secret, secret_env, secret_file",
                "adapters.chat.secret_env = \"MISSING_VAR\"",
            ],
        );
    }

    #[test]
    fn secrets_come_from_the_file_the_environment_or_a_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("s");
        std::fs::write(&f, "from-file\n").expect("write");
        let cfg = load(&format!(
            "[adapters.a]\ntype = \"chat-webhook\"\nsecret_env = \"CHAT\"\n[adapters.b]\ntype = \"email-webhook\"\nsecret_file = {:?}\n[adapters.c]\ntype = \"chat-webhook\"\nenabled = false\n",
            f.display().to_string()
        ));
        let specs = cfg
            .adapter_specs_with(&|k| (k == "CHAT").then(|| "from-env".to_string()))
            .expect("valid");
        let got: Vec<(&str, &str, &str)> = specs
            .iter()
            .map(|s| (s.name.as_str(), s.secret.as_str(), s.path.as_str()))
            .collect();
        assert_eq!(
            got,
            [("a", "from-env", "/webhooks/a"), ("b", "from-file", "/webhooks/b")]
        );
    }

    /// A key another type reads would be ignored: each is reported with
    /// the type it was given to (secrets and addresses not shown), and a
    /// secret the type does not read is not looked up.
    #[test]
    fn a_key_of_another_adapter_type_is_reported() {
        let problems = problems(
            r#"
[adapters.chat]
type = "chat-webhook"
secret = "s1"
host = "imap.example.com"
username = "ops@example.com"
public_url = "https://example.com/voice"
verify_token_env = "UNSET_TOKEN"
[adapters.mail]
type = "email-imap"
host = "imap.example.com"
username = "ops@example.com"
password = "p1"
secret_env = "UNSET_SECRET"
path = "/webhooks/mail"
"#,
        );
        super::super::assert_problems_are(
            &problems,
            &[
                "adapters.chat.verify_token_env = \"UNSET_TOKEN\": does not apply to chat-webhook",
                "adapters.chat.public_url = \"https://example.com/voice\": does not apply to chat-webhook",
                "adapters.chat.host = \"imap.example.com\": does not apply to chat-webhook",
                "adapters.chat.username = …: does not apply to chat-webhook",
                "adapters.mail.path = \"/webhooks/mail\": does not apply to email-imap",
                "adapters.mail.secret_env = \"UNSET_SECRET\": does not apply to email-imap",
            ],
        );
    }

    #[test]
    fn the_webhook_listener_is_checked_only_when_a_webhook_adapter_runs() {
        let imap = "[adapters.mail]\ntype = \"email-imap\"\nhost = \"127.0.0.1\"\ntls = \"none\"\nusername = \"u\"\npassword = \"p\"\n";
        let listen = "[webhooks]\nlisten = \"nowhere\"\n";
        let alone = load(&format!("{listen}{imap}"));
        assert_eq!(alone.adapter_specs_with(&|_| None).map(|s| s.len()), Ok(1));
        let chat = "[adapters.chat]\ntype = \"chat-webhook\"\nsecret = \"s\"\n";
        let problems = problems(&format!("{listen}{imap}{chat}"));
        super::super::assert_problems_are(
            &problems,
            &["webhooks.listen = \"nowhere\": must be an address such as 0.0.0.0:8081"],
        );
    }

    #[test]
    fn an_unknown_adapter_key_is_reported() {
        let r = Config::from_toml_with_env(
            "[adapters.a]\ntype = \"chat-webhook\"\nsecrte = \"x\"\n",
            "t",
            Vec::new(),
        );
        let Err(ConfigError::Invalid(p)) = r else {
            panic!("expected problems")
        };
        assert!(p.iter().any(|p| p.key == "adapters.a.secrte"), "{p:?}");
    }
}

//! The checked, resolved form of an `[adapters.<name>]` table
//! (`config/adapters.rs` builds it).

use super::ivr::MenuChoice;
use super::Defaults;
use crate::domain::Channel;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterKind {
    Chat,
    Social,
    Ivr,
    Email,
    Imap,
}

impl AdapterKind {
    /// The `type` as configured, also the metric label `kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            AdapterKind::Chat => "chat-webhook",
            AdapterKind::Social => "social-webhook",
            AdapterKind::Ivr => "ivr-webhook",
            AdapterKind::Email => "email-webhook",
            AdapterKind::Imap => "email-imap",
        }
    }

    pub fn channel(self) -> Channel {
        match self {
            AdapterKind::Chat => Channel::Chat,
            AdapterKind::Social => Channel::Social,
            AdapterKind::Ivr => Channel::Voice,
            AdapterKind::Email | AdapterKind::Imap => Channel::Email,
        }
    }

    /// Served on the webhook listener.
    pub fn is_webhook(self) -> bool {
        self != AdapterKind::Imap
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocialFormat {
    Meta,
    Generic,
}

/// One enabled adapter. `Debug` hides the secrets.
#[derive(Clone)]
pub struct AdapterSpec {
    pub name: String,
    pub kind: AdapterKind,
    pub path: String,
    pub secret: String,
    pub verify_token: Option<String>,
    pub format: SocialFormat,
    pub public_url: Option<String>,
    pub reply: Option<String>,
    pub max_body_bytes: usize,
    pub defaults: Defaults,
    pub menu: Vec<MenuChoice>,
    /// `email-imap` only.
    pub imap: Option<ImapSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImapTls {
    Tls,
    StartTls,
    None,
}

/// An `email-imap` adapter's server and mailboxes. `Debug` hides the password.
#[derive(Clone)]
pub struct ImapSpec {
    pub host: String,
    pub port: u16,
    pub tls: ImapTls,
    pub ca_file: Option<std::path::PathBuf>,
    pub username: String,
    pub password: String,
    pub mailboxes: Vec<String>,
    pub processed_folder: Option<String>,
    pub poll: std::time::Duration,
    pub idle: bool,
}

impl std::fmt::Debug for ImapSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapSpec")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("mailboxes", &self.mailboxes)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for AdapterSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdapterSpec")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("path", &self.path)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish_non_exhaustive()
    }
}

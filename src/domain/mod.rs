//! Types of the wire contract (`docs/contract.md`) and the validated
//! newtypes the rest of the daemon relies on.
//!
//! Everything that crosses the NATS boundary is parsed here, once, into types
//! that cannot hold an invalid value: the routing core never re-checks a
//! string. Decoding errors are one-line, content-free messages suitable for a
//! dead-letter `error` field and an info-level log line.

mod jsonw;
pub mod outbound;
pub mod timefmt;
pub mod wire;

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// One of the four channels of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Email,
    Chat,
    Social,
    Voice,
}

impl Channel {
    pub const ALL: [Channel; 4] = [Channel::Email, Channel::Chat, Channel::Social, Channel::Voice];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Chat => "chat",
            Channel::Social => "social",
            Channel::Voice => "voice",
        }
    }

    /// Index for per-channel arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Channels where taking the contact is itself the first response: the
    /// customer is live on the line or in the chat window.
    pub fn accept_is_response(self) -> bool {
        matches!(self, Channel::Chat | Channel::Voice)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Channel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "email" => Ok(Channel::Email),
            "chat" => Ok(Channel::Chat),
            "social" => Ok(Channel::Social),
            "voice" => Ok(Channel::Voice),
            other => Err(format!(
                "channel {:?} is not one of email, chat, social, voice",
                truncate(other, 64)
            )),
        }
    }
}

/// Whether a customer's tier is one a rule or filter names: case does not
/// matter (`Gold` is `gold`), wherever tiers are matched (routing rules,
/// SLA rules, alert sinks), since adapters and CRMs spell them as they
/// please.
pub fn same_tier(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        a.eq_ignore_ascii_case(b)
    } else {
        a.to_lowercase() == b.to_lowercase()
    }
}

/// Whether `tier` is one of `tiers` ([`same_tier`]); no tier is none of them.
pub fn same_tier_in(tiers: &[String], tier: Option<&str>) -> bool {
    tier.is_some_and(|t| tiers.iter().any(|x| same_tier(x, t)))
}

/// Checks the contract's identifier grammar: 1 to 64 of `A-Z a-z 0-9 _ -`.
/// These names become subject tokens, key-value keys and metric labels.
pub fn check_token(s: &str) -> Result<(), String> {
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(format!("character {c:?} is not one of A-Z a-z 0-9 _ -"));
    }
    // Only ASCII is left, so bytes are characters.
    if s.is_empty() || s.len() > 64 {
        return Err(format!("must be 1 to 64 characters, got {}", s.len()));
    }
    Ok(())
}

macro_rules! token_newtype {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        ///
        /// Shared, not copied, when cloned: every contact, offer and output
        /// names its queue and agent, and a clone is a reference count.
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
        #[serde(try_from = "String")]
        pub struct $name(std::sync::Arc<str>);

        // Written as the plain string it holds, borrowed: these appear in
        // every payload and record, and `into = "String"` would clone each.
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                check_token(&s).map_err(|e| format!("{} {:?} {}", $what, truncate(&s, 64), e))?;
                Ok($name(s.into()))
            }
        }

        impl TryFrom<&str> for $name {
            type Error = String;
            fn try_from(s: &str) -> Result<Self, String> {
                check_token(s).map_err(|e| format!("{} {:?} {}", $what, truncate(s, 64), e))?;
                Ok($name(s.into()))
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0.to_string()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

token_newtype!(
    /// An agent id: a subject token (`omni.offer.<agent_id>`).
    AgentId,
    "agent id"
);
token_newtype!(
    /// A queue name: a metric label and a configuration key.
    QueueName,
    "queue"
);
token_newtype!(
    /// A skill name.
    SkillName,
    "skill"
);

/// A skill level, 1 (novice) to 10 (expert).
pub type SkillLevel = u8;

pub fn check_skill_level(level: i64) -> Result<SkillLevel, String> {
    if (1..=10).contains(&level) {
        Ok(level as SkillLevel)
    } else {
        Err(format!("skill level {level} is not in 1..10"))
    }
}

/// Agent presence as the contract defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Presence {
    Available,
    Away,
    Offline,
}

impl Presence {
    pub fn as_str(self) -> &'static str {
        match self {
            Presence::Available => "available",
            Presence::Away => "away",
            Presence::Offline => "offline",
        }
    }
}

impl FromStr for Presence {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "available" => Ok(Presence::Available),
            "away" => Ok(Presence::Away),
            "offline" => Ok(Presence::Offline),
            other => Err(format!(
                "status {:?} is not one of available, away, offline",
                truncate(other, 64)
            )),
        }
    }
}

/// Cuts a string for an error message, on a character boundary.
pub fn truncate(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max_chars).collect();
        t.push('…');
        t
    }
}

/// `h` as 32 lowercase hex digits (`format!("{h:032x}")` without the
/// formatting machinery): contact ids and the history entries holding them.
pub fn hex32(h: u128) -> [u8; 32] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 32];
    for (i, d) in digits.iter_mut().enumerate() {
        *d = HEX[((h >> ((31 - i) * 4)) & 0xf) as usize];
    }
    digits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_follow_the_contract_grammar() {
        assert!(AgentId::try_from("a-017").is_ok());
        assert!(AgentId::try_from("A_b-9").is_ok());
        assert!(AgentId::try_from("").is_err());
        assert!(AgentId::try_from("a.b").is_err());
        assert!(AgentId::try_from("a b").is_err());
        assert!(AgentId::try_from("x".repeat(65)).is_err());
        assert!(AgentId::try_from("x".repeat(64)).is_ok());
    }

    #[test]
    fn channel_error_names_the_choices() {
        let e = "fax".parse::<Channel>().unwrap_err();
        assert_eq!(e, r#"channel "fax" is not one of email, chat, social, voice"#);
    }

    #[test]
    fn skill_levels_are_one_to_ten() {
        assert!(check_skill_level(0).is_err());
        assert_eq!(check_skill_level(1), Ok(1));
        assert_eq!(check_skill_level(10), Ok(10));
        assert!(check_skill_level(11).is_err());
    }
}

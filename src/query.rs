//! Questions the operator API asks the routing loop, which owns the
//! engine: sent over a channel, answered on a oneshot. Only the active
//! router answers (it holds the receiver while it routes); a standby's
//! API times out and says so.

use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Mutex};

/// `GET /api/contacts/{id}/explain`.
#[derive(Debug)]
pub struct Explain {
    pub contact_id: String,
    pub agent: Option<String>,
    pub limit: usize,
    /// `None`: no such open contact.
    pub reply: oneshot::Sender<Option<serde_json::Value>>,
}

/// The receiving end, held by whichever routing loop is running.
pub type Queries = Arc<Mutex<mpsc::Receiver<Explain>>>;

/// A bounded channel: queries beyond it are refused, not queued.
pub fn channel() -> (mpsc::Sender<Explain>, Queries) {
    let (tx, rx) = mpsc::channel(16);
    (tx, Arc::new(Mutex::new(rx)))
}

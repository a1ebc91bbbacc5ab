//! systemd's notify protocol from the receiving end. A server a test starts
//! (the router, dovecot, the SMTP server) is given `NOTIFY_SOCKET`, a
//! datagram socket the test holds, and says `READY=1` there once it
//! serves: the test waits on that message with a deadline instead of
//! polling the server's port.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Whether a notification says ready: systemd's messages are lines of
/// `KEY=value` (dovecot sends `READY=1` with `STATUS=` and `MAINPID=`).
pub fn says_ready(message: &[u8]) -> bool {
    message.split(|b| *b == b'\n').any(|l| l == b"READY=1")
}

pub struct NotifySocket {
    sock: UnixDatagram,
    pub path: PathBuf,
}

impl NotifySocket {
    /// Bound at `dir/name`, writable by every user (dovecot runs as
    /// `nobody`).
    pub fn bind(dir: &Path, name: &str) -> NotifySocket {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        let sock = UnixDatagram::bind(&path).expect("bind the notify socket");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).expect("chmod the notify socket");
        NotifySocket { sock, path }
    }

    /// Waits for `READY=1`; past `within`, panics with `failure()` (the
    /// server's log, say).
    pub fn wait_ready(&self, within: Duration, failure: impl FnOnce() -> String) {
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 512];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let got = if left.is_zero() {
                None
            } else {
                self.sock.set_read_timeout(Some(left)).expect("set the read timeout");
                // A timeout reads as an error (WouldBlock or TimedOut).
                self.sock.recv(&mut buf).ok()
            };
            match got {
                Some(n) if says_ready(&buf[..n]) => return,
                Some(_) => {}
                None => panic!("no READY=1 within {within:?}: {}", failure()),
            }
        }
    }
}

//! A real SMTP server for tests: `aiosmtpd` (PyPI; `.ci/run` installs it)
//! on a free loopback port, requiring STARTTLS with a certificate signed by
//! a test CA, storing what it receives in a Maildir the test reads.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Serves SMTP on 127.0.0.1:PORT with STARTTLS required (CERT, KEY),
/// storing mail in the Maildir DIR, and says READY=1 to the datagram
/// socket NOTIFY once it answers. Arguments: PORT CERT KEY DIR NOTIFY.
const SERVE: &str = r#"
import socket, ssl, sys, threading
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
port, cert, key, maildir, notify = sys.argv[1:]
tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
tls.check_hostname = False
tls.load_cert_chain(cert, key)
server = Controller(Mailbox(maildir), hostname="127.0.0.1", port=int(port), tls_context=tls, require_starttls=True, ready_timeout=20.0)
server.start()
socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"READY=1", notify)
threading.Event().wait()
"#;

pub struct Smtp {
    child: Child,
    pub port: u16,
    pub ca_file: PathBuf,
    dir: tempfile::TempDir,
}

impl Smtp {
    pub fn start() -> Smtp {
        let dir = tempfile::tempdir().expect("temp dir");
        let (ca, cert, key) = super::dovecot::pki(dir.path());
        let maildir = dir.path().join("mail");
        let port = super::binary::free_port();
        // aiosmtpd as its command line runs it (`python3 -m aiosmtpd -n -l
        // HOST:PORT --tlscert C --tlskey K -c aiosmtpd.handlers.Mailbox DIR`:
        // STARTTLS required), started through its `Controller`, which
        // returns once the server answers; then READY=1 on the test's
        // notify socket, as a systemd service would say it.
        let ready = super::notify::NotifySocket::bind(dir.path(), "notify.sock");
        let child = Command::new("python3")
            .args(["-c", SERVE])
            .arg(port.to_string())
            .arg(&cert)
            .arg(&key)
            .arg(&maildir)
            .arg(&ready.path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("smtp.log")).expect("log"),
            ))
            .spawn()
            .expect("start aiosmtpd (pip install aiosmtpd; bash .ci/run does)");
        ready.wait_ready(Duration::from_secs(20), || {
            format!(
                "aiosmtpd did not start; its log:\n{}",
                std::fs::read_to_string(dir.path().join("smtp.log")).unwrap_or_default()
            )
        });
        Smtp {
            child,
            port,
            ca_file: ca,
            dir,
        }
    }

    /// Every message received so far, raw.
    pub fn received(&self) -> Vec<String> {
        let new = self.dir.path().join("mail").join("new");
        let mut out: Vec<String> = std::fs::read_dir(new)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

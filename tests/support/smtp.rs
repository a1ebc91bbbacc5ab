//! A real SMTP server for tests: `aiosmtpd` (PyPI; `.ci/run` installs it)
//! on a free loopback port, requiring STARTTLS with a certificate signed by
//! a test CA, storing what it receives in a Maildir the test reads.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
        let child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--tlscert")
            .arg(&cert)
            .arg("--tlskey")
            .arg(&key)
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("smtp.log")).expect("log"),
            ))
            .spawn()
            .expect("start aiosmtpd (pip install aiosmtpd; bash .ci/run does)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "aiosmtpd did not listen; its log:\n{}",
                std::fs::read_to_string(dir.path().join("smtp.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
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

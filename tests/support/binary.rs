//! The compiled `omniroute` binary as a child process: started on a free
//! HTTP port, waited on until it tells systemd's notify socket (one the test
//! holds) `READY=1`, killed or stopped by the test.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Proc {
    pub child: Child,
    pub http: SocketAddr,
    pub log: std::path::PathBuf,
    /// The process's `NOTIFY_SOCKET`: what it tells systemd after `READY=1`.
    pub notify: tokio::net::UnixDatagram,
    /// What it told systemd before `READY=1`.
    pub before_ready: Vec<String>,
    /// The role it last told systemd (`STATUS=active: …`), as far as the
    /// test has read the socket; empty before any.
    role: std::sync::Mutex<String>,
}

/// A router still running when its test ends (the test failed before
/// stopping it) is killed, so it cannot outlive the test and hold its
/// output pipe or its server.
impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Starts the compiled binary with `config` (written into `dir`), logging
/// JSON to `dir/omniroute-<tag>.log`, and waits for its `READY=1`, then
/// checks that `/ready` says 200.
pub async fn spawn(dir: &std::path::Path, config: &str, nats_url: &str, tag: &str, env: &[(&str, String)]) -> Proc {
    ready(start(&["run"], dir, config, nats_url, tag, env)).await
}

/// Starts the compiled binary (`args`: `["run"]`, `["adapter", "chat"]`)
/// with `config`, without waiting for anything: [`ready`] waits, and a
/// process meant to stop before it is ready (a crash point at start-up)
/// is left alone.
pub fn start(
    args: &[&str],
    dir: &std::path::Path,
    config: &str,
    nats_url: &str,
    tag: &str,
    env: &[(&str, String)],
) -> Proc {
    let cfg = dir.join("omniroute.toml");
    std::fs::write(&cfg, config).expect("write config");
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let log = dir.join(format!("omniroute-{tag}.log"));
    let sock = dir.join(format!("notify-{tag}.sock"));
    let _ = std::fs::remove_file(&sock);
    let notify = tokio::net::UnixDatagram::bind(&sock).expect("bind the notify socket");
    let child = Command::new(env!("CARGO_BIN_EXE_omniroute"))
        .args(args)
        .arg("--config")
        .arg(&cfg)
        .env("OMNIROUTE_NATS__URL", nats_url)
        .env("OMNIROUTE_HTTP__LISTEN", http.to_string())
        .env("OMNIROUTE_LOG__FORMAT", "json")
        .env("NOTIFY_SOCKET", &sock)
        .env_remove("RUST_LOG")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::from(std::fs::File::create(&log).expect("log")))
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn omniroute");
    Proc {
        child,
        http,
        log,
        notify,
        before_ready: Vec::new(),
        role: std::sync::Mutex::new(String::new()),
    }
}

/// Waits for a started binary's `READY=1`, then checks that `/ready` says
/// 200.
pub async fn ready(mut p: Proc) -> Proc {
    // Generous: a deadline, not a timing claim. With the whole suite
    // running on two cores, set-up on a three-replica cluster (its
    // retries back off up to seconds apart) can take well over 20 s.
    let not_ready = |p: &Proc| {
        format!(
            "binary not ready; log:\n{}",
            std::fs::read_to_string(&p.log).unwrap_or_default()
        )
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut buf = [0u8; 256];
        let Ok(got) = tokio::time::timeout_at(deadline, p.notify.recv(&mut buf)).await else {
            panic!("{}", not_ready(&p));
        };
        let n = got.expect("read the notify socket");
        p.note_roles(&buf[..n]);
        if super::notify::says_ready(&buf[..n]) {
            break;
        }
        p.before_ready.push(String::from_utf8_lossy(&buf[..n]).to_string());
    }
    // READY=1 means serving: no wait here. The one later 503 allowed is a
    // router that has since taken the lease and is loading its state.
    let answer = super::http_get(p.http, "/ready").await;
    let loading = |body: &str| body.contains("routing state not loaded yet");
    assert!(
        matches!(&answer, Ok((200, _))) || matches!(&answer, Ok((503, body)) if loading(body)),
        "/ready after READY=1: {answer:?}; {}",
        not_ready(&p)
    );
    p
}

/// The child's exit, waited on (a thread blocks in `wait`, this one on its
/// answer with the deadline); past the deadline the child is killed, so the
/// waiting thread ends, and the test fails.
#[track_caller]
pub fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let pid = child.id();
    let exited = std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::channel();
        s.spawn(move || {
            let _ = tx.send(child.wait());
        });
        let answer = rx.recv_timeout(within).ok();
        if answer.is_none() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        answer
    });
    match exited {
        Some(status) => status.expect("wait for the child"),
        None => panic!("process did not exit within {within:?}"),
    }
}

/// The role `/ready` reports (`active`, `standby`), empty when unreachable.
pub async fn role(p: &Proc) -> String {
    match super::http_get(p.http, "/ready").await {
        Ok((_, body)) => serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["role"].as_str().map(str::to_string))
            .unwrap_or_default(),
        Err(_) => String::new(),
    }
}

impl Proc {
    /// Stops it with SIGTERM, as systemd would, and asserts that it
    /// drained and exited 0 within 30 s.
    pub fn terminate(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        let status = wait_exit(&mut self.child, Duration::from_secs(30));
        assert!(status.success(), "exit status {status:?}");
    }

    /// Records the roles a notification tells (`STATUS=<role>: …`), in
    /// order, and returns them.
    fn note_roles(&self, msg: &[u8]) -> Vec<String> {
        let told: Vec<String> = String::from_utf8_lossy(msg)
            .lines()
            .filter_map(|l| l.strip_prefix("STATUS="))
            .filter_map(|s| s.split(':').next())
            .map(str::to_string)
            .collect();
        if let (Some(last), Ok(mut role)) = (told.last(), self.role.lock()) {
            *role = last.clone();
        }
        told
    }

    /// Reads, without waiting, what the process told systemd since the
    /// last look: the roles it told, in order.
    pub fn told(&self) -> Vec<String> {
        let mut buf = [0u8; 512];
        let mut told = Vec::new();
        loop {
            match self.notify.try_recv(&mut buf) {
                Ok(n) => told.extend(self.note_roles(&buf[..n])),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return told,
                Err(e) => panic!("read the notify socket: {e}"),
            }
        }
    }

    /// The role it last told, after reading what it told since.
    pub fn told_role(&self) -> String {
        self.told();
        self.role.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Reads the notifications as they come until `done` holds; past
    /// `within`, fails naming `what` and showing the end of the log.
    async fn until(
        &self,
        caller: &std::panic::Location<'_>,
        what: &str,
        within: Duration,
        mut done: impl FnMut(&Proc) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + within;
        while !done(self) {
            if tokio::time::timeout_at(deadline, self.notify.readable()).await.is_err() {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                panic!(
                    "{caller}: {what} not within {within:?}; end of {}:\n{}",
                    self.log.display(),
                    tail.join("\n")
                );
            }
        }
    }
}

/// Waits until the role the process last told systemd is `want` (each
/// change is a `STATUS=` notification, read as it comes); returns how long
/// that took. On failure the panic shows the end of the process's log.
#[track_caller]
pub fn wait_role<'a>(p: &'a Proc, want: &'a str, within: Duration) -> impl std::future::Future<Output = Duration> + 'a {
    let caller = std::panic::Location::caller();
    async move {
        let t = Instant::now();
        p.until(caller, &format!("role {want:?}"), within, |p| p.told_role() == want)
            .await;
        t.elapsed()
    }
}

/// Waits until the process tells systemd the role `want`, counting only
/// what it tells after the last look ([`Proc::told`]): a role held for a
/// moment (a router stepping down that takes the lease again) is seen.
#[track_caller]
pub fn wait_told<'a>(p: &'a Proc, want: &'a str, within: Duration) -> impl std::future::Future<Output = ()> + 'a {
    let caller = std::panic::Location::caller();
    async move {
        let what = format!("a change to {want:?}");
        p.until(caller, &what, within, |p| p.told().iter().any(|r| r == want))
            .await
    }
}

/// Waits until one of two routers tells systemd it is active; `true` when
/// it is `b`.
pub async fn wait_either_active(a: &Proc, b: &Proc, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match (a.told_role().as_str(), b.told_role().as_str()) {
            ("active", _) => return false,
            (_, "active") => return true,
            _ => {}
        }
        let either = async {
            tokio::select! {
                r = a.notify.readable() => r,
                r = b.notify.readable() => r,
            }
        };
        if tokio::time::timeout_at(deadline, either).await.is_err() {
            panic!("neither router active within {within:?}");
        }
    }
}

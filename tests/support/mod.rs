//! Test harness: a real `nats-server -js` per test (free loopback port, its
//! own temp store, killed on drop), the daemon in-process through
//! `omniroute::run`, and helpers that wait on events with deadlines.
#![allow(dead_code)]

pub mod binary;
pub mod cluster;
pub mod dovecot;
pub mod notify;
pub mod smtp;

use async_nats::jetstream;
use futures::StreamExt;
use omniroute::config::Config;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// The pinned server: `$OMNIROUTE_NATS_SERVER`, else the project-local one
/// `scripts/ensure-nats.sh --pinned` installs. Never whatever is on PATH:
/// Debian's 2.9 lacks what async-nats key-value calls need.
pub fn nats_server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("OMNIROUTE_NATS_SERVER") {
        return PathBuf::from(p);
    }
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/nats/bin/nats-server");
    assert!(
        local.is_file(),
        "no pinned nats-server: run scripts/ensure-nats.sh --pinned or set OMNIROUTE_NATS_SERVER"
    );
    local
}

pub struct NatsServer {
    child: Child,
    pub url: String,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl NatsServer {
    pub fn start() -> NatsServer {
        Self::start_with(&[])
    }

    /// A server with extra command-line options (authentication, TLS).
    pub fn start_with(extra: &[&std::ffi::OsStr]) -> NatsServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let (child, port) = spawn_server(dir.path(), "-1", extra);
        NatsServer {
            child,
            url: format!("nats://127.0.0.1:{port}"),
            port,
            _dir: dir,
        }
    }

    /// Kills the server and starts it again on the same port and store, as
    /// an operator restarting it would (JetStream recovers its streams).
    pub fn restart(&mut self) {
        self.kill();
        let (child, _) = spawn_server(self._dir.path(), &self.port.to_string(), &[]);
        self.child = child;
    }
}

/// Starts nats-server with its store in `dir`; returns it and its port
/// once the server says it is ready. Its log is copied to `nats.log` by a
/// thread that reads it as it comes: the port is the one the server says
/// it listens on, and "Server is ready" is the event waited for (with a
/// deadline), where the test polled for the ports file before.
fn spawn_server(dir: &std::path::Path, port: &str, extra: &[&std::ffi::OsStr]) -> (Child, u16) {
    use std::io::{BufRead, Write};
    let store = dir.join("js");
    let mut child = Command::new(nats_server_bin())
        .args(["-a", "127.0.0.1", "-p", port, "-js", "-sd"])
        .arg(&store)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start nats-server");
    let stderr = child.stderr.take().expect("piped stderr");
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("nats.log"))
        .expect("log file");
    let (tx, rx) = std::sync::mpsc::channel();
    // Reads to the end (the server would block on a full pipe), so it
    // outlives this function; it ends when the server does.
    std::thread::spawn(move || {
        let (mut tx, mut listening) = (Some(tx), None);
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = writeln!(log, "{line}");
            if let Some(at) = line.split("Listening for client connections on ").nth(1) {
                listening = at.rsplit(':').next().and_then(|p| p.trim().parse::<u16>().ok());
            }
            if line.contains("Server is ready") {
                if let (Some(tx), Some(port)) = (tx.take(), listening) {
                    let _ = tx.send(port);
                }
            }
        }
    });
    let port = rx.recv_timeout(Duration::from_secs(15)).unwrap_or_else(|e| {
        panic!(
            "nats-server did not say it was ready ({e}); see {}",
            dir.join("nats.log").display()
        )
    });
    (child, port)
}

impl NatsServer {
    /// Stops the server now (the daemon sees NATS go away).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The server's process id (benchmarks read its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// CPU seconds (user + system) a process has used so far, from
/// `/proc/<pid>/stat` (`self` for this one); 0 where that cannot be read.
/// Its unit is USER_HZ, which Linux fixes at 100 for this file.
pub fn cpu_secs(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The command name (field 2) may hold spaces: count from after it.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the name.
    (tick(11) + tick(12)) / 100.0
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A configuration for tests: the given TOML with the server's URL.
pub fn config(nats_url: &str, toml: &str) -> Config {
    let env = vec![("OMNIROUTE_NATS__URL".to_string(), nats_url.to_string())];
    Config::from_toml_with_env(toml, "test", env).unwrap_or_else(|e| panic!("test config: {e}"))
}

pub struct Daemon {
    pub token: CancellationToken,
    pub handle: tokio::task::JoinHandle<Result<(), omniroute::RunError>>,
    pub http: SocketAddr,
    /// The webhook listener (bound for every daemon; served when adapters
    /// are enabled).
    pub webhooks: SocketAddr,
    /// Whether `/ready` answers 200, as the daemon keeps it.
    serving: tokio::sync::watch::Receiver<bool>,
}

impl Daemon {
    pub async fn start(cfg: Config) -> Daemon {
        let d = Self::spawn(cfg).await;
        d.wait_ready().await;
        d
    }

    /// Starts the daemon on `clock` (a manual one the test moves with
    /// `Clock::set`, keeping a clone) and waits for it to become ready.
    #[allow(dead_code)]
    pub async fn start_on(cfg: Config, clock: omniroute::clock::Clock) -> Daemon {
        let d = Self::spawn_with(cfg, clock).await;
        d.wait_ready().await;
        d
    }

    /// Starts the daemon without waiting for it to become ready.
    pub async fn spawn(cfg: Config) -> Daemon {
        Self::spawn_with(cfg, omniroute::clock::Clock::system()).await
    }

    async fn spawn_with(cfg: Config, clock: omniroute::clock::Clock) -> Daemon {
        // `RUST_LOG=omniroute=debug cargo test -- --nocapture` shows the daemon's logs.
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .try_init();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let http = listener.local_addr().expect("addr");
        let hooks = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let webhooks = hooks.local_addr().expect("addr");
        let token = CancellationToken::new();
        let (ready, serving) = tokio::sync::watch::channel(false);
        let listeners = omniroute::Listeners {
            ops: listener,
            webhooks: Some(hooks),
            ready: Some(ready),
        };
        let handle = tokio::spawn(omniroute::run_with_clock(cfg, listeners, token.clone(), clock));
        Daemon {
            token,
            handle,
            http,
            webhooks,
            serving,
        }
    }

    /// Waits until the daemon routes: its word that `/ready` answers 200,
    /// then `/ready` read once to see the role. `/ready` also answers 200
    /// for the moment it stands by before taking the lease, and the state
    /// loads after (503 meanwhile): then the next change is waited for.
    pub async fn wait_ready(&self) {
        self.wait_ready_within(Duration::from_secs(20)).await
    }

    /// [`Daemon::wait_ready`] with a deadline of the test's choosing (a
    /// router started together with a cluster waits for its election).
    pub async fn wait_ready_within(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        let mut serving = self.serving.clone();
        loop {
            match tokio::time::timeout_at(deadline, serving.wait_for(|s| *s)).await {
                Ok(Ok(_)) => {}
                Ok(Err(_)) => panic!("the daemon ended before it was ready"),
                Err(_) => panic!("daemon not ready within {within:?}: {:?}", self.readiness().await),
            }
            let (status, body) = http_get(self.http, "/ready").await.unwrap_or((0, String::new()));
            let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            if status == 200 && v["role"] == "active" {
                return;
            }
            let waiting = (status == 200 && v["role"] == "standby") || v["reason"] == "routing state not loaded yet";
            assert!(waiting, "/ready after the daemon said it serves: {status} {body}");
            match tokio::time::timeout_at(deadline, serving.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => panic!("the daemon ended before it was ready"),
                Err(_) => panic!("daemon not routing within {within:?}: {status} {body}"),
            }
        }
    }

    /// Waits for the daemon's word that `/ready` no longer answers 200,
    /// then returns what `/ready` says.
    #[allow(dead_code)]
    pub async fn wait_unready(&self, within: Duration) -> (u16, String) {
        match tokio::time::timeout(within, self.serving.clone().wait_for(|s| !*s)).await {
            Ok(Ok(_)) => self.readiness().await,
            Ok(Err(_)) => panic!("the daemon ended while it was ready"),
            Err(_) => panic!("still ready after {within:?}"),
        }
    }

    /// `/ready` as (status, reason); (0, "") while the listener is not up.
    pub async fn readiness(&self) -> (u16, String) {
        let (status, body) = http_get(self.http, "/ready").await.unwrap_or((0, String::new()));
        let reason = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["reason"].as_str().map(str::to_string))
            .unwrap_or_default();
        (status, reason)
    }

    /// Cancels and waits for a clean exit.
    pub async fn stop(self) {
        self.token.cancel();
        let r = tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .expect("daemon stops in time");
        r.expect("daemon task").expect("daemon exits cleanly");
    }
}

/// Polls `probe` until it yields a value; fails naming `what` after `within`.
/// For state only visible by asking (an HTTP endpoint), not for messages,
/// which `Client::expect` waits on directly.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_or(within, probe, || format!("not within {within:?}: {what}")).await
}

/// [`eventually`], failing with the message `failure` writes then (for
/// example with the end of a process's log).
pub async fn eventually_or<T, F, Fut>(within: Duration, mut probe: F, failure: impl FnOnce() -> String) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("{}", failure());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A minimal HTTP/1.1 GET over a real socket.
pub async fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    http_request(addr, "GET", path).await
}

/// Any method, no body.
pub async fn http_request(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// An HTTP/1.1 POST (or any method) with headers and a body, over a real
/// socket: (status, response headers lower-cased, body).
pub async fn http_send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await?;
    // A server may answer (413) before reading the whole body and close.
    let _ = s.write_all(body).await;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Ok((status, head.to_ascii_lowercase(), body.to_string()))
}

/// A NATS client for the test: publishes like an adapter or desktop, and
/// watches everything the router publishes.
pub struct Client {
    pub nc: async_nats::Client,
    pub js: jetstream::Context,
    sub: async_nats::Subscriber,
    seen: Vec<(String, Value)>,
    n: u64,
}

impl Client {
    pub async fn connect(url: &str) -> Client {
        Self::connect_with(url, async_nats::ConnectOptions::new()).await
    }

    pub async fn connect_with(url: &str, options: async_nats::ConnectOptions) -> Client {
        let nc = options.connect(url).await.expect("connect");
        let sub = nc.subscribe("omni.>").await.expect("subscribe");
        nc.flush().await.expect("flush");
        let js = jetstream::new(nc.clone());
        Client {
            nc,
            js,
            sub,
            seen: Vec::new(),
            n: 0,
        }
    }

    pub fn next_id(&mut self, what: &str) -> String {
        self.n += 1;
        format!("{what}-{}-{}", self.n, std::process::id())
    }

    /// Publishes raw bytes through JetStream and waits for the stream ack.
    pub async fn publish_raw(&self, subject: &str, payload: Vec<u8>) {
        let ack = self
            .js
            .publish(subject.to_string(), payload.into())
            .await
            .expect("publish");
        ack.await.expect("stream ack");
    }

    pub async fn publish(&self, subject: &str, id: &str, v: &Value) {
        let mut h = async_nats::HeaderMap::new();
        h.insert("Nats-Msg-Id", id);
        let ack = self
            .js
            .publish_with_headers(subject.to_string(), h, serde_json::to_vec(v).expect("json").into())
            .await
            .expect("publish");
        ack.await.expect("stream ack");
    }

    /// Publishes a customer message; returns the event id.
    pub async fn contact(&mut self, channel: &str, conversation: &str, extra: Value) -> String {
        let id = self.next_id("in");
        let mut v = json!({
            "v": 1, "id": id, "type": "message", "channel": channel,
            "conversation_id": conversation,
            "customer": {"id": format!("cust-{conversation}"), "name": "Test Customer", "address": "secret@example.com"},
            "subject": "Hello", "text": "Some text",
        });
        merge(&mut v, extra);
        self.publish(&format!("omni.inbound.{channel}"), &id, &v).await;
        id
    }

    pub async fn end(&mut self, channel: &str, conversation: &str) {
        let id = self.next_id("in");
        let v = json!({"v": 1, "id": id, "type": "end", "channel": channel, "conversation_id": conversation, "customer": {"id": "c"}});
        self.publish(&format!("omni.inbound.{channel}"), &id, &v).await;
    }

    /// Publishes an agent event of `ty` with extra fields.
    pub async fn agent(&mut self, agent: &str, ty: &str, extra: Value) {
        let id = self.next_id("ag");
        let mut v = json!({"v": 1, "id": id, "type": ty, "agent_id": agent});
        merge(&mut v, extra);
        self.publish(&format!("omni.agent.{agent}.{ty}"), &id, &v).await;
    }

    /// Waits for a router message on a subject matching `subject` (exact, or
    /// prefix when it ends in `>`) that satisfies `pred`. Messages seen while
    /// waiting are kept for later `expect`s and `all`.
    pub async fn expect(&mut self, subject: &str, within: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let matches = |s: &str| match subject.strip_suffix('>') {
            Some(p) => s.starts_with(p),
            None => s == subject,
        };
        if let Some(pos) = self.seen.iter().position(|(s, v)| matches(s) && pred(v)) {
            return self.seen.remove(pos).1;
        }
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.sub.next())
                .await
                .unwrap_or_else(|_| panic!("no message on {subject} within {within:?}; seen: {:#?}", self.summary()))
                .expect("subscription open");
            let s = msg.subject.to_string();
            if is_input_or_internal(&s) {
                continue;
            }
            let v: Value = serde_json::from_slice(&msg.payload).unwrap_or(Value::Null);
            if matches(&s) && pred(&v) {
                return v;
            }
            self.seen.push((s, v));
        }
    }

    /// Offer of a contact (by conversation) to an agent.
    pub async fn offer(&mut self, agent: &str, conversation: &str) -> Value {
        let conv = conversation.to_string();
        self.expect(&format!("omni.offer.{agent}"), Duration::from_secs(10), move |v| {
            v["kind"] == "offer" && v["conversation_id"] == conv.as_str()
        })
        .await
    }

    /// Any offer to an agent.
    pub async fn any_offer(&mut self, agent: &str) -> Value {
        self.expect(&format!("omni.offer.{agent}"), Duration::from_secs(10), |v| {
            v["kind"] == "offer"
        })
        .await
    }

    /// Takes every message received so far (after a barrier) off the buffer.
    pub async fn drain_received(&mut self) -> Vec<(String, Value)> {
        while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(1), self.sub.next()).await {
            let s = msg.subject.to_string();
            if is_input_or_internal(&s) {
                continue;
            }
            self.seen
                .push((s, serde_json::from_slice(&msg.payload).unwrap_or(Value::Null)));
        }
        std::mem::take(&mut self.seen)
    }

    fn summary(&self) -> Vec<String> {
        self.seen
            .iter()
            .map(|(s, v)| format!("{s} {}", v.get("kind").or(v.get("contact_id")).unwrap_or(&Value::Null)))
            .collect()
    }
}

/// Subjects the router reads or keeps for itself, not its outputs.
fn is_input_or_internal(s: &str) -> bool {
    ["omni.inbound.", "omni.agent.", "omni.state.", "$"]
        .iter()
        .any(|p| s.starts_with(p))
}

pub fn merge(base: &mut Value, extra: Value) {
    if let (Value::Object(b), Value::Object(e)) = (base, extra) {
        for (k, v) in e {
            b.insert(k, v);
        }
    }
}

pub const WAIT: Duration = Duration::from_secs(10);

/// For the benches: installs the TLS provider, reads `--bench` (a full run;
/// `cargo test --all-targets` runs them without it, small) and an optional
/// size N from the arguments, and builds the runtime.
pub fn bench_start(full_n: usize, quick_n: usize) -> (bool, usize, tokio::runtime::Runtime) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let full = std::env::args().any(|a| a == "--bench");
    // The first bare number; `--flag value` pairs are the bench's own.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n = args
        .iter()
        .enumerate()
        .filter(|(i, _)| *i == 0 || !args[i - 1].starts_with("--") || args[i - 1] == "--bench")
        .find_map(|(_, a)| a.parse().ok())
        .unwrap_or(if full { full_n } else { quick_n });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    (full, n, rt)
}

/// Every message `stream` holds up to its last sequence at the call, in
/// order, as (subject, payload as JSON; null if it is not JSON), read with
/// an ordered consumer. `None` if the stream cannot be read, or if no
/// message comes for `quiet` before the last one.
#[allow(dead_code)]
pub async fn read_stream(js: &jetstream::Context, stream: &str, quiet: Duration) -> Option<Vec<(String, Value)>> {
    use async_nats::jetstream::consumer;
    let mut s = js.get_stream(stream).await.ok()?;
    let last = s.info().await.ok()?.state.last_sequence;
    let mut out = Vec::new();
    if last == 0 {
        return Some(out);
    }
    let c = s
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .ok()?;
    let mut msgs = c.messages().await.ok()?;
    while let Ok(Some(Ok(m))) = tokio::time::timeout(quiet, msgs.next()).await {
        let seq = m.info().ok()?.stream_sequence;
        out.push((
            m.subject.to_string(),
            serde_json::from_slice(&m.payload).unwrap_or(Value::Null),
        ));
        if seq >= last {
            return Some(out);
        }
    }
    None
}

/// Publishes through JetStream until the server takes it: while a server
/// restarts or a cluster elects leaders the publish is retried under the
/// same `Nats-Msg-Id` (stored once). Panics after 60 s.
#[allow(dead_code)]
pub async fn publish_until_stored(js: &jetstream::Context, subject: String, id: &str, payload: Vec<u8>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut h = async_nats::HeaderMap::new();
        h.insert("Nats-Msg-Id", id);
        if let Ok(ack) = js
            .publish_with_headers(subject.clone(), h, payload.clone().into())
            .await
        {
            if ack.await.is_ok() {
                return;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "JetStream did not take {subject} for 60 s"
        );
        // Back off while the server is away (a retry pace, not a wait on an event).
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

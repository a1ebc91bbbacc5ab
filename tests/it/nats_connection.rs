//! The NATS connection as an operator configures and meets it, against a
//! real nats-server: token, user and password, and mutual TLS with a
//! private CA. Wrong credentials leave the daemon unready with the cause in
//! `/ready`, and it still shuts down cleanly; a daemon started before NATS
//! waits for it instead of exiting.

use crate::support;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use serde_json::json;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::{Client, Daemon, NatsServer};

const ROUTING: &str = r#"
[http]
listen = "127.0.0.1:0"
[[queues]]
name = "general"
channels = ["email", "chat", "social", "voice"]
[[agents]]
id = "a-1"
capacity = { chat = 1 }
initial_status = "available"
"#;

/// A contact published by the test reaches the daemon's only agent.
async fn routes_a_contact(client: &mut Client) {
    client.contact("chat", "conv-secure", json!({})).await;
    let offer = client.offer("a-1", "conv-secure").await;
    assert_eq!(offer["queue"], "general");
}

#[tokio::test]
async fn token_authentication_connects_and_routes() {
    let nats = NatsServer::start_with(&[OsStr::new("--auth"), OsStr::new("s3cret-token")]);
    let cfg = support::config(&nats.url, &format!("[nats]\ntoken = \"s3cret-token\"\n{ROUTING}"));
    let daemon = Daemon::start(cfg).await;
    let mut client =
        Client::connect_with(&nats.url, async_nats::ConnectOptions::with_token("s3cret-token".into())).await;
    routes_a_contact(&mut client).await;
    daemon.stop().await;
}

#[tokio::test]
async fn user_and_password_authentication_connects_and_routes() {
    let args = ["--user", "router", "--pass", "pa55:word"].map(OsStr::new);
    let nats = NatsServer::start_with(&args);
    let cfg = support::config(
        &nats.url,
        &format!("[nats]\nuser = \"router\"\npassword = \"pa55:word\"\n{ROUTING}"),
    );
    let daemon = Daemon::start(cfg).await;
    let options = async_nats::ConnectOptions::with_user_and_password("router".into(), "pa55:word".into());
    let mut client = Client::connect_with(&nats.url, options).await;
    routes_a_contact(&mut client).await;
    daemon.stop().await;
}

/// Waits until `/ready` gives `cause` as its reason; never ready meanwhile.
async fn unready_because(daemon: &Daemon, cause: &str) -> String {
    support::eventually(Duration::from_secs(20), cause, || async {
        let (status, reason) = daemon.readiness().await;
        assert_ne!(status, 200, "ready while it should not be");
        reason.contains(cause).then(|| {
            assert_eq!(status, 503, "{reason}");
            reason
        })
    })
    .await
}

#[tokio::test]
async fn wrong_credentials_leave_the_daemon_unready_with_the_cause() {
    let nats = NatsServer::start_with(&[OsStr::new("--auth"), OsStr::new("right-token")]);
    let cfg = support::config(&nats.url, &format!("[nats]\ntoken = \"wrong-token\"\n{ROUTING}"));
    let daemon = Daemon::spawn(cfg).await;
    let reason = unready_because(&daemon, "authorization violation").await;
    assert_eq!(reason, "not connected to NATS: authorization violation");
    daemon.stop().await;
}

struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

/// A private CA with a server certificate for 127.0.0.1 and a client
/// certificate, written as PEM files.
fn pki() -> Pki {
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |name: &str, pem: String| -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).expect("write pem");
        path
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "omniroute test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("ca key")).expect("ca cert");
    let leaf = |names: Vec<String>, cn: &str| {
        let mut params = CertificateParams::new(names).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &ca).expect("leaf cert");
        (cert.pem(), key.serialize_pem())
    };
    let (server_pem, server_key) = leaf(vec!["127.0.0.1".into(), "localhost".into()], "nats-server");
    let (client_pem, client_key) = leaf(vec!["omniroute.test".into()], "omniroute");
    Pki {
        ca: write("ca.pem", ca.pem()),
        server_cert: write("server.pem", server_pem),
        server_key: write("server-key.pem", server_key),
        client_cert: write("client.pem", client_pem),
        client_key: write("client-key.pem", client_key),
        _dir: dir,
    }
}

/// A path as a TOML string (a JSON string is a valid TOML basic string).
fn toml_path(p: &Path) -> String {
    serde_json::to_string(&p.display().to_string()).expect("string")
}

/// A server that requires TLS and a client certificate from the private CA.
fn tls_server(pki: &Pki) -> NatsServer {
    NatsServer::start_with(&[
        OsStr::new("--tlsverify"),
        OsStr::new("--tlscert"),
        pki.server_cert.as_os_str(),
        OsStr::new("--tlskey"),
        pki.server_key.as_os_str(),
        OsStr::new("--tlscacert"),
        pki.ca.as_os_str(),
    ])
}

#[tokio::test]
async fn mutual_tls_with_a_private_ca_connects_and_routes() {
    let pki = pki();
    let nats = tls_server(&pki);
    let cfg = support::config(
        &nats.url,
        &format!(
            "[nats.tls]\nrequired = true\nca_file = {}\ncert_file = {}\nkey_file = {}\n{ROUTING}",
            toml_path(&pki.ca),
            toml_path(&pki.client_cert),
            toml_path(&pki.client_key),
        ),
    );
    let daemon = Daemon::start(cfg).await;
    let options = async_nats::ConnectOptions::new()
        .require_tls(true)
        .add_root_certificates(pki.ca.clone())
        .add_client_certificate(pki.client_cert.clone(), pki.client_key.clone());
    let mut client = Client::connect_with(&nats.url, options).await;
    routes_a_contact(&mut client).await;
    daemon.stop().await;
}

#[tokio::test]
async fn a_server_demanding_a_client_certificate_refuses_a_daemon_without_one() {
    let pki = pki();
    let nats = tls_server(&pki);
    let cfg = support::config(
        &nats.url,
        &format!(
            "[nats.tls]\nrequired = true\nca_file = {}\n{ROUTING}",
            toml_path(&pki.ca)
        ),
    );
    let daemon = Daemon::spawn(cfg).await;
    unready_because(&daemon, "not connected to NATS: ").await;
    daemon.stop().await;
}

#[tokio::test]
async fn a_daemon_started_before_nats_waits_for_it_then_routes() {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        probe.local_addr().expect("addr").port()
    };
    let url = format!("nats://127.0.0.1:{port}");
    let daemon = Daemon::spawn(support::config(&url, ROUTING)).await;
    unready_because(&daemon, "not connected to NATS").await;
    // The later `-p` wins over the harness's `-p -1`.
    let port_arg = port.to_string();
    let nats = NatsServer::start_with(&[OsStr::new("-p"), OsStr::new(&port_arg)]);
    assert_eq!(nats.port, port);
    daemon.wait_ready().await;
    let mut client = Client::connect(&nats.url).await;
    routes_a_contact(&mut client).await;
    daemon.stop().await;
}

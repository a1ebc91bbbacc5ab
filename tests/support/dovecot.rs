//! A real IMAP server for tests: Debian's dovecot (`dovecot-imapd`, which
//! `.ci/run` installs), with a generated configuration whose paths all sit
//! in a temp dir, a plain-text password file and Maildirs, on a free
//! loopback port, run as `nobody` (dovecot refuses to run its login process
//! as root). `Dovecot::append` delivers a message as a mail client would.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const USER: &str = "support";
pub const PASSWORD: &str = "imap-test-password";

pub struct Dovecot {
    child: Child,
    /// IMAP (plain; STARTTLS offered when started with TLS).
    pub port: u16,
    /// IMAPS, when started with TLS.
    pub tls_port: Option<u16>,
    /// The CA that signed the server's certificate (for 127.0.0.1 and
    /// localhost), when started with TLS.
    pub ca_file: Option<PathBuf>,
    dir: tempfile::TempDir,
}

fn dovecot_bin() -> PathBuf {
    for p in ["/usr/sbin/dovecot", "/usr/local/sbin/dovecot"] {
        if Path::new(p).exists() {
            return p.into();
        }
    }
    panic!("dovecot not found: install Debian's dovecot-imapd (bash .ci/run does)");
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn open_to_all(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).expect("chmod");
}

/// A CA and a server certificate it signed for 127.0.0.1 and localhost,
/// written into `dir` readable by the server's user: (ca, cert, key).
pub fn pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "omniroute imap test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("ca key")).expect("ca cert");
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).expect("params");
    params.distinguished_name.push(DnType::CommonName, "dovecot");
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &ca).expect("cert");
    let write = |name: &str, pem: String| {
        let p = dir.join(name);
        std::fs::write(&p, pem).expect("write pem");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        p
    };
    (
        write("ca.pem", ca.pem()),
        write("server.pem", cert.pem()),
        write("server-key.pem", key.serialize_pem()),
    )
}

impl Dovecot {
    pub fn start() -> Dovecot {
        Self::start_with(false)
    }

    /// With TLS: IMAPS on `tls_port`, STARTTLS on `port`.
    pub fn start_tls() -> Dovecot {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> Dovecot {
        let bin = dovecot_bin();
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        open_to_all(d);
        for sub in ["run", "state", "mail"] {
            std::fs::create_dir(d.join(sub)).expect("mkdir");
            open_to_all(&d.join(sub));
        }
        let port = free_port();
        let tls_port = tls.then(free_port);
        let certs = tls.then(|| pki(d));
        let ssl = match &certs {
            Some((_, cert, key)) => format!(
                "ssl = yes\nssl_cert = <{}\nssl_key = <{}\n",
                cert.display(),
                key.display()
            ),
            None => "ssl = no\n".to_string(),
        };
        let imaps = tls_port.unwrap_or(0);
        let p = d.display();
        let conf = format!(
            r#"base_dir = {p}/run
state_dir = {p}/state
log_path = {p}/dovecot.log
protocols = imap
listen = 127.0.0.1
{ssl}disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{p}/mail/%u
default_login_user = nobody
default_internal_user = nobody
default_internal_group = nogroup
first_valid_uid = 0
first_valid_gid = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {p}/users
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={p}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps}
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
namespace inbox {{
  inbox = yes
  mailbox Processed {{
    auto = create
  }}
}}
"#
        );
        std::fs::write(d.join("dovecot.conf"), conf).expect("write conf");
        std::fs::write(d.join("users"), format!("{USER}:{{PLAIN}}{PASSWORD}::::::\n")).expect("write users");
        // Dovecot speaks systemd's notify protocol: READY=1 once it listens.
        let ready = super::notify::NotifySocket::bind(d, "notify.sock");
        let child = Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .arg(bin)
            .arg("-c")
            .arg(d.join("dovecot.conf"))
            .arg("-F")
            .env("NOTIFY_SOCKET", &ready.path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dovecot through setpriv");
        ready.wait_ready(Duration::from_secs(20), || {
            format!(
                "dovecot did not start; its log:\n{}",
                std::fs::read_to_string(d.join("dovecot.log")).unwrap_or_default()
            )
        });
        Dovecot {
            child,
            port,
            tls_port,
            ca_file: certs.map(|c| c.0),
            dir,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    async fn session(&self) -> async_imap::Session<tokio::net::TcpStream> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("connect imap");
        let mut client = async_imap::Client::new(tcp);
        client.read_response().await.expect("greeting");
        client.login(USER, PASSWORD).await.map_err(|(e, _)| e).expect("login")
    }

    /// Appends a message to `mailbox`, as a mail client saving it would.
    pub async fn append(&self, mailbox: &str, raw: &[u8]) {
        let mut s = self.session().await;
        s.append(mailbox, None, None, raw).await.expect("append");
        s.logout().await.expect("logout");
    }

    /// Appends every message in one session.
    pub async fn append_all(&self, mailbox: &str, raws: &[Vec<u8>]) {
        let mut s = self.session().await;
        for raw in raws {
            s.append(mailbox, None, None, raw).await.expect("append");
        }
        s.logout().await.expect("logout");
    }

    /// UIDs matching an IMAP search in `mailbox` (e.g. `UNSEEN`, `ALL`).
    pub async fn search(&self, mailbox: &str, query: &str) -> Vec<u32> {
        let mut s = self.session().await;
        s.select(mailbox).await.expect("select");
        let mut v: Vec<u32> = s.uid_search(query).await.expect("search").into_iter().collect();
        v.sort_unstable();
        s.logout().await.expect("logout");
        v
    }

    /// Clears `\Seen` on every message of `mailbox`: the state a crash
    /// between publishing and marking leaves behind.
    pub async fn mark_all_unseen(&self, mailbox: &str) {
        use futures::TryStreamExt;
        let mut s = self.session().await;
        s.select(mailbox).await.expect("select");
        let _: Vec<_> = s
            .store("1:*", "-FLAGS.SILENT (\\Seen)")
            .await
            .expect("store")
            .try_collect()
            .await
            .expect("store responses");
        s.logout().await.expect("logout");
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        // SIGTERM, so the master stops its login and auth processes too.
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

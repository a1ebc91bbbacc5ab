//! Three clustered nats-servers on loopback (JetStream on each, one
//! cluster), for tests on a cluster: nodes can be killed and brought back
//! with their stores; all are killed on drop.

use super::binary::free_port;
use super::nats_server_bin;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Node {
    child: Option<Child>,
    port: u16,
    cluster_port: u16,
    dir: tempfile::TempDir,
    /// Port clashes in its log already answered with a new start.
    clashes_handled: usize,
}

pub struct Cluster {
    nodes: Vec<Node>,
    /// Its own: two clusters of parallel tests never join each other when
    /// one's node is given a port the other's routes point to (a node
    /// refuses a route from another cluster name).
    name: String,
}

/// Clusters started by this process so far, for their names.
static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Cluster {
    pub fn start(n: usize) -> Cluster {
        let nodes: Vec<Node> = (0..n)
            .map(|_| Node {
                child: None,
                port: free_port(),
                cluster_port: free_port(),
                dir: tempfile::tempdir().expect("tmp"),
                clashes_handled: 0,
            })
            .collect();
        let started = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("omni-{}-{started}", std::process::id());
        let mut c = Cluster { nodes, name };
        for i in 0..n {
            c.spawn(i);
        }
        c
    }

    pub fn spawn(&mut self, i: usize) {
        let routes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.cluster_port))
            .collect();
        let n = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(n.dir.path().join("nats.log"))
            .expect("log");
        let child = Command::new(nats_server_bin())
            .args(["-a", "127.0.0.1", "-p", &n.port.to_string(), "-js", "-sd"])
            .arg(n.dir.path().join("js"))
            .args(["-n", &format!("node{i}"), "--cluster_name", &self.name])
            .args(["--cluster", &format!("nats://127.0.0.1:{}", n.cluster_port)])
            .args(["--routes", &routes.join(",")])
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start nats-server");
        n.child = Some(child);
    }

    /// Waits until every node answers a JetStream request (the cluster has
    /// formed and elected its meta leader). A fresh cluster on a loaded
    /// machine can take many seconds; a test that is about disruptions,
    /// not start-up, waits here rather than spend its router's start-up
    /// deadline on it. Fails with each node's state and the end of its log.
    ///
    /// A node that could not bind its ports (they are picked free, then
    /// released, and a parallel test can take one in between) is started
    /// again on new ones: read [`Cluster::urls`] after this.
    pub async fn wait_jetstream(&mut self, within: Duration) {
        let cluster = std::cell::RefCell::new(self);
        let n = cluster.borrow().nodes.len();
        for i in 0..n {
            super::eventually_or(
                within,
                || {
                    let url = {
                        let mut c = cluster.borrow_mut();
                        c.respawn_after_port_clash();
                        format!("nats://127.0.0.1:{}", c.nodes[i].port)
                    };
                    async move {
                        let nc = async_nats::connect(&url).await.ok()?;
                        async_nats::jetstream::new(nc).query_account().await.ok().map(|_| ())
                    }
                },
                || cluster.borrow_mut().report(),
            )
            .await;
        }
    }

    /// Starts again, on new ports, each node that exited because a port it
    /// was given was taken meanwhile.
    fn respawn_after_port_clash(&mut self) {
        for i in 0..self.nodes.len() {
            let n = &mut self.nodes[i];
            let exited = n.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
            if !exited {
                continue;
            }
            let log = std::fs::read_to_string(n.dir.path().join("nats.log")).unwrap_or_default();
            let clashes = log.lines().filter(|l| l.contains("address already in use")).count();
            // Each start that clashed logged one such line: act on a new one.
            if clashes == 0 || clashes <= n.clashes_handled {
                continue;
            }
            n.clashes_handled = clashes;
            n.port = free_port();
            n.cluster_port = free_port();
            self.spawn(i);
        }
    }

    /// Each node's process state and the end of its log.
    fn report(&mut self) -> String {
        let mut out = String::from("the cluster did not answer JetStream requests\n");
        for (i, n) in self.nodes.iter_mut().enumerate() {
            let state = match n.child.as_mut().map(|c| c.try_wait()) {
                Some(Ok(None)) => "running".to_string(),
                Some(Ok(Some(status))) => format!("exited: {status}"),
                Some(Err(e)) => format!("unknown: {e}"),
                None => "killed by the test".to_string(),
            };
            let log = std::fs::read_to_string(n.dir.path().join("nats.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            out.push_str(&format!("node{i} (port {}): {state}\n", n.port));
            for line in tail.into_iter().rev() {
                out.push_str(&format!("  {line}\n"));
            }
        }
        out
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

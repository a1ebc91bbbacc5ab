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
}

pub struct Cluster {
    nodes: Vec<Node>,
}

impl Cluster {
    pub fn start(n: usize) -> Cluster {
        let nodes: Vec<Node> = (0..n)
            .map(|_| Node {
                child: None,
                port: free_port(),
                cluster_port: free_port(),
                dir: tempfile::tempdir().expect("tmp"),
            })
            .collect();
        let mut c = Cluster { nodes };
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
            .args(["-n", &format!("node{i}"), "--cluster_name", "omni"])
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
    pub async fn wait_jetstream(&mut self, within: Duration) {
        for url in self.urls() {
            super::eventually_or(
                within,
                || async {
                    let nc = async_nats::connect(&url).await.ok()?;
                    async_nats::jetstream::new(nc).query_account().await.ok().map(|_| ())
                },
                || self.report(),
            )
            .await;
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

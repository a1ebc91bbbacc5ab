//! Three clustered nats-servers on loopback (JetStream on each, one
//! cluster), for tests on a cluster: nodes can be killed and brought back
//! with their stores; all are killed on drop.

use super::binary::free_port;
use super::nats_server_bin;
use std::process::{Child, Command, Stdio};

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

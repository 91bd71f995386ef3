//! What the platform's two-node tests share: a node's configuration on a private bus
//! directory, and driving a node until a condition holds. (Each test uses what it needs.)
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use interstate_platform::node::Transport;
use interstate_platform::{Node, NodeConfig, Role};

/// Bus `bus` in `dir` (the test's own), as `role`, over `transport`.
pub fn config(bus: &str, dir: &Path, role: Role, transport: Transport) -> NodeConfig {
    let mut c = NodeConfig::new(bus);
    c.dir = dir.to_path_buf();
    c.role = role;
    c.transport = transport;
    c
}

/// Drives `node` until `done` or 20 s (a limit for a broken build, not a timing goal).
pub fn drive(node: &mut Node, mut done: impl FnMut(&mut Node) -> bool) -> bool {
    node.run_until(Duration::from_secs(20), |n| done(n))
        .unwrap()
}

//! The probe's command line: positional arguments, `--name value` options and flags, and
//! the node every node-running mode builds from them (`--bus`, the node options).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use interstate::bus::{Node, NodeConfig, Role};

/// Parsed command line: positional arguments and `--name value` options.
pub(crate) struct Args {
    pub(crate) positional: Vec<String>,
    pub(crate) options: HashMap<String, String>,
    pub(crate) flags: HashSet<String>,
}

impl Args {
    pub(crate) fn parse() -> Result<Args, String> {
        const FLAGS: &[&str] = &[
            "--hub",
            "--auto",
            "--after-hello",
            "--hold",
            "--exit",
            "--announce-done",
        ];
        let mut positional = Vec::new();
        let mut options = HashMap::new();
        let mut flags = HashSet::new();
        let mut it = std::env::args().skip(1);
        while let Some(a) = it.next() {
            if FLAGS.contains(&a.as_str()) {
                flags.insert(a);
            } else if let Some(name) = a.strip_prefix("--") {
                let v = it
                    .next()
                    .ok_or_else(|| format!("option --{name} needs a value"))?;
                options.insert(name.to_string(), v);
            } else {
                positional.push(a);
            }
        }
        Ok(Args {
            positional,
            options,
            flags,
        })
    }

    pub(crate) fn pos(&self, i: usize, what: &str) -> Result<&str, String> {
        self.positional
            .get(i)
            .map(String::as_str)
            .ok_or_else(|| format!("missing argument: {what}"))
    }

    pub(crate) fn num(&self, name: &str) -> Result<Option<u64>, String> {
        self.options
            .get(name)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| format!("--{name} takes a whole number, not '{v}'"))
            })
            .transpose()
    }

    pub(crate) fn bus(&self) -> Result<String, String> {
        self.options
            .get("bus")
            .cloned()
            .ok_or_else(|| "--bus NAME is required".to_string())
    }

    pub(crate) fn timeout(&self, default_ms: u64) -> Result<Duration, String> {
        Ok(Duration::from_millis(
            self.num("timeout-ms")?.unwrap_or(default_ms),
        ))
    }

    pub(crate) fn node(&self) -> Result<Node, String> {
        let role = if self.flags.contains("--hub") {
            Role::Hub
        } else if self.flags.contains("--auto") {
            Role::Auto
        } else {
            Role::Client
        };
        self.node_as(role)
    }

    /// A node in `role`, with the settings the options give: `--idle-timeout-ms`,
    /// `--link-queue BYTES`, `--reconnect-buffer BYTES`, `--max-frame BYTES`, `--keepalive-ms`,
    /// `--machines-per-link N`, `--backoff-ms` (the shortest reconnect backoff).
    pub(crate) fn node_as(&self, role: Role) -> Result<Node, String> {
        let mut config = NodeConfig::new(&self.bus()?);
        config.role = role;
        if let Some(ms) = self.num("idle-timeout-ms")? {
            config.idle_timeout = interstate::Duration::from_millis(ms);
        }
        if let Some(b) = self.num("link-queue")? {
            config.link_queue = b as usize;
        }
        if let Some(b) = self.num("reconnect-buffer")? {
            config.reconnect_buffer = b as usize;
        }
        if let Some(b) = self.num("max-frame")? {
            config.max_frame = b as u32;
        }
        if let Some(n) = self.num("machines-per-link")? {
            config.machines_per_link = n as usize;
        }
        if let Some(ms) = self.num("keepalive-ms")? {
            config.keepalive = interstate::Duration::from_millis(ms);
        }
        if let Some(ms) = self.num("backoff-ms")? {
            // The first reconnect attempt after losing the hub comes this long after.
            config.backoff.0 = interstate::Duration::from_millis(ms);
            config.backoff.1 = config.backoff.1.max(config.backoff.0);
        }
        Node::new(config).map_err(|e| e.to_string())
    }
}

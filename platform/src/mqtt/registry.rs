//! The registry side of the bridge: publishing this bus's machines, following the other
//! nodes' records and statuses, and the conflict rule that decides which node's machine a
//! port stands for.

use std::collections::HashSet;

use interstate_core::mqtt::bridge::{self, BridgeTopic, RegistryRecord};

use super::{transport_name, MqttBridge, Tx};
use crate::error::PlatformError;

impl MqttBridge {
    pub(super) fn message(&mut self, topic: &str, payload: &[u8]) {
        let Some(t) = bridge::parse_topic(&self.config.prefix, topic) else {
            return;
        };
        match t {
            BridgeTopic::Status { node } if node != self.config.node_name => {
                let node = node.to_string();
                self.node_status(&node, payload);
            }
            BridgeTopic::Status { .. } => {}
            BridgeTopic::Registry { node, machine } if node == self.config.node_name => {
                // A record of ours from an earlier run for a machine no longer here: clear it.
                if !payload.is_empty() && !self.published.contains_key(machine) {
                    let topic = topic.to_string();
                    let now = self.node.now();
                    let _ =
                        self.session
                            .publish(now, &topic, &[], true, true, &mut Tx(&mut self.tx));
                }
            }
            BridgeTopic::Registry { node, machine } => {
                let (node, machine) = (node.to_string(), machine.to_string());
                if payload.is_empty() {
                    if let Some(nodes) = self.claims.get_mut(&machine) {
                        nodes.remove(&node);
                        if nodes.is_empty() {
                            self.claims.remove(&machine);
                        }
                    }
                } else if let Some(record) = bridge::decode::<RegistryRecord<'_>>(payload) {
                    self.remote_hosts
                        .insert((node.clone(), machine.clone()), record.host.to_string());
                    self.hosts_dirty = true;
                    self.claims
                        .entry(machine.clone())
                        .or_default()
                        .insert(node.clone());
                } else {
                    self.log(&format!("ignored a malformed registry record on {topic}"));
                    return;
                }
                self.settle_owner(&machine);
                self.settle_alias(&node, &machine);
            }
            BridgeTopic::Inbox { node } if node == self.config.node_name => self.inbox(payload),
            BridgeTopic::Inbox { .. } => {}
        }
    }

    /// Opens or closes the port `NODE/ID` by which local senders address machine `ID` of
    /// node `NODE` explicitly, whichever node keeps the plain `ID` here (the conflict rule):
    /// it is on the bus while `NODE` is up and claims `ID`. An alias longer than a machine
    /// id may be, or taken by a local machine, is not opened.
    pub(super) fn settle_alias(&mut self, node: &str, id: &str) {
        let alias = format!("{node}/{id}");
        let wanted = !self.down.contains(node)
            && self.claims.get(id).is_some_and(|n| n.contains(node))
            && bridge::bridgeable_id(&alias);
        let open = self.aliases.contains_key(&alias);
        if wanted && !open {
            match self.node.open_port(&alias) {
                Ok(()) => {
                    self.aliases
                        .insert(alias, (node.to_string(), id.to_string()));
                    self.hosts_dirty = true;
                }
                Err(e) => {
                    if self
                        .conflicts_told
                        .insert((alias.clone(), node.to_string()))
                    {
                        self.log(&format!(
                            "cannot register '{alias}' for machine '{id}' of node '{node}': {e}"
                        ));
                    }
                }
            }
        } else if !wanted && open {
            self.forget_port(&alias);
            self.node.close_port(&alias);
            self.aliases.remove(&alias);
            self.hosts_dirty = true;
        }
    }

    /// Gives remote machine `id` to the node that keeps it by the conflict rule (the first
    /// name among the nodes that are up and claim it), or takes it off the bus.
    pub(super) fn settle_owner(&mut self, id: &str) {
        let claimants: Vec<&String> = self
            .claims
            .get(id)
            .map(|nodes| nodes.iter().filter(|n| !self.down.contains(*n)).collect())
            .unwrap_or_default();
        let owner = claimants
            .iter()
            .copied()
            .fold(None::<&String>, |kept, n| {
                Some(kept.map_or(n, |k| {
                    if bridge::claim_kept_by(k, n) == n {
                        n
                    } else {
                        k
                    }
                }))
            })
            .cloned();
        if claimants.len() > 1 {
            let losers: Vec<String> = claimants
                .iter()
                .filter(|n| Some(**n) != owner.as_ref())
                .map(|n| n.to_string())
                .collect();
            for loser in losers {
                if self.conflicts_told.insert((id.to_string(), loser.clone())) {
                    let what = format!(
                        "conflict: machine id '{id}' is claimed by nodes '{}' and '{loser}'; '{}' keeps it (the first node name wins), messages never go to '{loser}'",
                        owner.as_deref().unwrap_or(""),
                        owner.as_deref().unwrap_or("")
                    );
                    self.log(&what);
                }
            }
        }
        let current = self.ports.get(id).cloned();
        if current == owner {
            return;
        }
        if let Some(was) = current {
            self.forget_port(id);
            self.node.close_port(id);
            self.ports.remove(id);
            self.hosts_dirty = true;
            self.log(&format!("machine '{id}' of node '{was}' left this bus"));
        }
        let Some(owner) = owner else {
            return;
        };
        match self.node.open_port(id) {
            Ok(()) => {
                self.log(&format!("machine '{id}' of node '{owner}' is on this bus"));
                self.ports.insert(id.to_string(), owner);
                self.hosts_dirty = true;
            }
            Err(PlatformError::MachineIdTaken { .. }) => {
                if self.conflicts_told.insert((id.to_string(), owner.clone())) {
                    let what = format!(
                        "conflict: machine id '{id}' of node '{owner}' is also a machine of this bus; the local one keeps it here"
                    );
                    self.log(&what);
                }
            }
            Err(e) => {
                let what = format!("cannot register remote machine '{id}' of node '{owner}': {e}");
                self.log(&what);
            }
        }
    }

    /// Publishes what changed in the local registry since the last call: new and changed
    /// machines, and (with `removals`) the records of machines that left.
    pub(super) fn publish_registry(&mut self, removals: bool) {
        let registry = self.node.registry();
        let changes = registry.changes();
        let entries = registry.entries();
        let mut complete = true;
        let mut seen = HashSet::new();
        for e in entries {
            // This node's ports for remote machines are the other nodes' machines; the
            // machines and ports hosted beside them in the bridge's process are this bus's.
            if self.owner_of(&e.machine).is_some() || !bridge::bridgeable_id(&e.machine) {
                continue;
            }
            let record = RegistryRecord {
                host: &self.host,
                pid: e.pid,
                executable: &e.executable,
                transport: transport_name(e.transport),
            };
            let Some(bytes) = bridge::encode(&record, &mut self.scratch).map(|b| b.to_vec()) else {
                continue;
            };
            seen.insert(e.machine.clone());
            if self.published.get(&e.machine) == Some(&bytes) {
                continue;
            }
            let topic = self.topic(BridgeTopic::Registry {
                node: &self.config.node_name,
                machine: &e.machine,
            });
            let now = self.node.now();
            match self
                .session
                .publish(now, &topic, &bytes, true, true, &mut Tx(&mut self.tx))
            {
                Ok(_) => {
                    self.stats.records_published += 1;
                    self.published.insert(e.machine, bytes);
                }
                // Tried again at the next scan.
                Err(_) => return,
            }
        }
        if !removals {
            return;
        }
        let gone: Vec<String> = self
            .published
            .keys()
            .filter(|id| !seen.contains(*id))
            .cloned()
            .collect();
        if !gone.is_empty() {
            // A machine that leaves has its answers published before its record's removal:
            // the acknowledgements of what it took (its bus may send them just before it
            // goes, or with its departure) would otherwise wait for a message to ride on,
            // up to `inbox::ANSWER_DELAY`, while the removal reached the sending node at
            // once, and that node's bus reported the messages failed as `target-gone`
            // although delivered.
            self.answer_acks();
            self.flush_outgoing(true);
            if !self.delivery.unsent.is_empty() {
                // Answers wait for room in the session's store: the removals wait behind
                // them (the next scan publishes them).
                return;
            }
        }
        for id in gone {
            let topic = self.topic(BridgeTopic::Registry {
                node: &self.config.node_name,
                machine: &id,
            });
            let now = self.node.now();
            if self
                .session
                .publish(now, &topic, &[], true, true, &mut Tx(&mut self.tx))
                .is_ok()
            {
                self.stats.records_published += 1;
                self.published.remove(&id);
            } else {
                complete = false;
            }
        }
        // Everything is on the broker: the next scans skip this registry until it changes.
        if complete {
            self.registry_published_at = Some(changes);
        }
    }
}

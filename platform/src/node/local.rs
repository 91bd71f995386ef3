//! What the node hosts and receives: its machines (with their last errors), ports, registry
//! copy, watches and counters; delivering to them, and the follow-up work (`Deferred`) calls
//! leave behind.

use std::collections::VecDeque;

use rustc_hash::FxHashMap as HashMap;

use interstate_core::bus::Accepted;
use interstate_core::hub::LinkId;
use interstate_core::machine::Status;
use interstate_core::wire::{Deliver, FailReason, RegistryEntry};
use interstate_core::{Behavior, Event, Instant};

use crate::registry::{MachineInfo, Registry};

use super::machines::RunningMachine;
use super::payload::json_string;
use super::status::LastEvents;
use super::{NodeStats, PortMessage, MACHINE_DOWN_EVENT, MACHINE_UP_EVENT};

pub(super) struct Hosted {
    pub(super) id: String,
    pub(super) machine: Box<dyn RunningMachine>,
    pub(super) behavior: Box<dyn Behavior>,
    pub(super) seq: u64,
    /// Its id is routed to this node; until then its outbox waits (the hub would refuse a
    /// sender id it does not know this node owns).
    pub(super) registered: bool,
    /// The last errors of its steps, oldest first (at most [`KEPT_ERRORS`]).
    pub(super) errors: VecDeque<String>,
    /// Stopped by an error: it left the bus and takes no more events.
    pub(super) stopped: bool,
    /// Someone watches its state: the node reports it after each step.
    pub(super) watched: bool,
    /// The next report carries the chart's outline (the hub asked for reports: a new
    /// watcher, who may need to draw the chart).
    pub(super) outline_due: bool,
    /// Its last event names.
    pub(super) events: LastEvents,
}

/// How many of a machine's last errors a node keeps (for `status`).
pub(super) const KEPT_ERRORS: usize = 4;

impl Hosted {
    /// A step of this machine failed with `e` (`what`: on what): keeps the error, logs it, and
    /// when it stopped the machine, has the node take it off the bus.
    pub(super) fn failed(
        &mut self,
        what: &str,
        e: interstate_core::Error,
        deferred: &mut Deferred,
    ) {
        let line = format!("machine '{}' failed {what}: {e}", self.id);
        if self.errors.len() == KEPT_ERRORS {
            self.errors.pop_front();
        }
        self.errors.push_back(e.to_string());
        if self.machine.status() == Status::Failed && !self.stopped {
            self.stopped = true;
            deferred.stopped.push(self.id.clone());
        }
        deferred.logs.push(line);
    }
}

/// Everything of the node that receives: its machines, ports, registry copy and counters.
/// (Both ends of end-to-end delivery, the outstanding buffer and the duplicate filter, are
/// the core's: the hub side's own, or the client's.)
pub(super) struct Local {
    pub(super) machines: Vec<Hosted>,
    pub(super) by_id: HashMap<String, usize>,
    pub(super) ports: HashMap<String, VecDeque<PortMessage>>,
    /// Sequence numbers of the ports' sends.
    pub(super) port_seq: HashMap<String, u64>,
    pub(super) registry: Registry,
    pub(super) stats: NodeStats,
    /// Watched machine ids: whether each was last seen up, and who watches it.
    pub(super) watches: HashMap<String, Watch>,
}

/// Who watches a machine id, and whether it was last seen registered.
pub(super) struct Watch {
    pub(super) up: bool,
    pub(super) watchers: Vec<String>,
}

/// Things the node does when the current call into the hub or a machine returns.
#[derive(Default)]
pub(super) struct Deferred {
    /// Links to close, with the reason.
    pub(super) close: Vec<(LinkId, String)>,
    /// (sending machine, target, event, seq, reason) failures to report to local machines.
    pub(super) failures: Vec<(String, String, String, u64, FailReason)>,
    /// Machine ids that left the registry: their outstanding messages fail.
    pub(super) removed: Vec<String>,
    /// Failures found here (not reported by the hub), reported as they are.
    pub(super) direct: Vec<(String, String, String, u64, FailReason)>,
    /// Deliveries to local machines that arrived from the hub.
    pub(super) logs: Vec<String>,
    /// Machines stopped by an error: they leave the bus.
    pub(super) stopped: Vec<String>,
    /// Machines (or ports) whose state report is due (someone watches them).
    pub(super) reports: Vec<String>,
}

impl Deferred {
    pub(super) fn is_empty(&self) -> bool {
        self.logs.is_empty()
            && self.stopped.is_empty()
            && self.reports.is_empty()
            && self.direct.is_empty()
            && self.failures.is_empty()
            && self.removed.is_empty()
            && self.close.is_empty()
    }
}

/// A message that will not be delivered, as reported to its sender.
pub(super) struct Failed<'a> {
    pub(super) from: &'a str,
    pub(super) to: &'a str,
    pub(super) event: &'a str,
    pub(super) seq: u64,
    pub(super) reason: FailReason,
}

impl Local {
    pub(super) fn deliver(
        &mut self,
        now: Instant,
        from: &str,
        to: &str,
        event: &str,
        payload: &[u8],
        deferred: &mut Deferred,
    ) -> bool {
        if let Some(&i) = self.by_id.get(to) {
            if self.machines[i].stopped {
                return false;
            }
            self.step(i, now, event, payload, deferred);
            return true;
        }
        if let Some(q) = self.ports.get_mut(to) {
            q.push_back(PortMessage {
                port: to.to_string(),
                from: from.to_string(),
                event: event.to_string(),
                payload: payload.to_vec(),
                seq: 0,
            });
            return true;
        }
        false
    }

    /// Machine `i` takes its step on an event.
    pub(super) fn step(
        &mut self,
        i: usize,
        now: Instant,
        event: &str,
        payload: &[u8],
        deferred: &mut Deferred,
    ) {
        let h = &mut self.machines[i];
        h.events.push(event);
        if let Err(e) = h.machine.send(
            now,
            Event::new(event).with_payload(payload),
            &mut *h.behavior,
        ) {
            h.failed(&format!("on event '{event}'"), e, deferred);
        }
        if h.watched {
            deferred.reports.push(h.id.clone());
        }
    }

    /// A message from another process: delivered once (a duplicate, sent again after a lost
    /// connection, is dropped and acknowledged again), and acknowledged once the application
    /// has it: a machine once its step ran, a port once `recv_port` returned it. `accept` is
    /// the duplicate filter's verdict (`handed`: whether the application has it on delivery).
    pub(super) fn receive(
        &mut self,
        now: Instant,
        d: &Deliver<'_>,
        deferred: &mut Deferred,
        accept: &mut dyn FnMut(&Deliver<'_>, bool) -> Accepted,
    ) {
        let machine = self
            .by_id
            .get(d.to)
            .copied()
            .filter(|&i| !self.machines[i].stopped);
        if machine.is_none() && !self.ports.contains_key(d.to) {
            // Not acknowledged: the hub routes only ids this node registered, so this is a
            // bug, and its sender must not take the message for delivered.
            deferred.logs.push(format!(
                "a message from '{}' for '{}', which this process does not host, was dropped",
                d.from, d.to
            ));
            return;
        }
        match accept(d, machine.is_some()) {
            Accepted::New => {}
            Accepted::Duplicate => return,
            Accepted::NoRoom => {
                // Neither delivered nor acknowledged: its sender keeps it.
                self.stats.duplicate_filter_full += 1;
                deferred.logs.push(format!(
                    "a message from '{}' for '{}' was refused: the duplicate filter is full \
                     (NodeConfig::duplicate_filter_pairs)",
                    d.from, d.to
                ));
                return;
            }
        }
        self.stats.received += 1;
        if let Some(i) = machine {
            self.step(i, now, d.event, d.payload, deferred);
        } else if let Some(q) = self.ports.get_mut(d.to) {
            q.push_back(PortMessage {
                port: d.to.to_string(),
                from: d.from.to_string(),
                event: d.event.to_string(),
                payload: d.payload.to_vec(),
                seq: d.seq,
            });
        }
    }

    /// A registry entry arrived (a machine joined, or the snapshot after a reconnect).
    pub(super) fn registry_entry(
        &mut self,
        now: Instant,
        e: &RegistryEntry<'_>,
        deferred: &mut Deferred,
    ) {
        self.registry.insert(MachineInfo::from_entry(e));
        self.watched(now, e.machine, true, deferred);
    }

    /// A machine left the registry.
    pub(super) fn registry_removed(
        &mut self,
        now: Instant,
        machine: &str,
        deferred: &mut Deferred,
    ) {
        self.registry.remove(machine);
        // What this process's machines sent it and never had acknowledged will not arrive:
        // their senders are told.
        deferred.removed.push(machine.to_string());
        self.watched(now, machine, false, deferred);
    }

    /// A registry change for `machine`: tells its watchers on a real change (up after down,
    /// down after up), never twice for the same state.
    pub(super) fn watched(
        &mut self,
        now: Instant,
        machine: &str,
        up: bool,
        deferred: &mut Deferred,
    ) {
        let Some(w) = self.watches.get_mut(machine) else {
            return;
        };
        if w.up == up {
            return;
        }
        w.up = up;
        let watchers = w.watchers.clone();
        let payload = format!("{{\"machine\":{}}}", json_string(machine)).into_bytes();
        let event = if up {
            MACHINE_UP_EVENT
        } else {
            MACHINE_DOWN_EVENT
        };
        for watcher in watchers {
            self.deliver(now, machine, &watcher, event, &payload, deferred);
        }
    }
}

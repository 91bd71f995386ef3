//! A node's copy of the bus registry: which process hosts which machine id.
//!
//! Kept current by the hub's registry frames (a snapshot on connect, then updates), so
//! `process_info(target)` is answered locally, without a round trip.

use rustc_hash::FxHashMap as HashMap;
use std::cell::RefCell;
use std::rc::Rc;

use interstate_core::wire::RegistryEntry;
use interstate_core::{Instant, ProcessInfo, TransportKind};

/// One registry entry, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MachineInfo {
    /// The machine id.
    pub machine: String,
    /// Its process id.
    pub pid: u32,
    /// Its user id.
    pub uid: u32,
    /// Its executable name.
    pub executable: String,
    /// How the hub reaches it.
    pub transport: TransportKind,
    /// When it registered (ms since the Unix epoch).
    pub since_ms: u64,
    /// Registered as durable (its state is journalled; it comes back after a crash).
    pub durable: bool,
}

impl MachineInfo {
    pub(crate) fn from_entry(e: &RegistryEntry<'_>) -> Self {
        MachineInfo {
            machine: e.machine.to_string(),
            pid: e.pid,
            uid: e.uid,
            executable: e.executable.to_string(),
            transport: e.transport,
            since_ms: e.since_ms,
            durable: e.durable,
        }
    }

    /// As the core's [`ProcessInfo`], for actions.
    pub fn to_process_info(&self, local_pid: u32) -> ProcessInfo {
        fn trunc<const N: usize>(s: &str) -> heapless::String<N> {
            let mut out = heapless::String::new();
            for c in s.chars() {
                if out.push(c).is_err() {
                    break;
                }
            }
            out
        }
        ProcessInfo {
            machine_id: trunc(&self.machine),
            pid: self.pid,
            uid: self.uid,
            executable: trunc(&self.executable),
            transport: if self.pid == local_pid {
                TransportKind::InProcess
            } else {
                self.transport
            },
            registered_at: Instant::from_millis(self.since_ms),
            local: self.pid == local_pid,
        }
    }
}

/// A shared, read-mostly view of the registry. Cloning it is cheap; every clone sees updates.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    inner: Rc<RefCell<HashMap<String, MachineInfo>>>,
    /// Bumped by every change, so that a reader can skip an unchanged registry.
    changes: Rc<std::cell::Cell<u64>>,
}

impl Registry {
    /// What is known about `machine`.
    pub fn get(&self, machine: &str) -> Option<MachineInfo> {
        self.inner.borrow().get(machine).cloned()
    }
    /// The process hosting `machine`, if it is registered.
    pub fn pid_of(&self, machine: &str) -> Option<u32> {
        self.inner.borrow().get(machine).map(|m| m.pid)
    }
    /// The process hosting `machine` and whether it is durable, if it is registered.
    pub fn owner_of(&self, machine: &str) -> Option<(u32, bool)> {
        self.inner.borrow().get(machine).map(|m| (m.pid, m.durable))
    }
    /// Whether `machine` is registered.
    pub fn contains(&self, machine: &str) -> bool {
        self.inner.borrow().contains_key(machine)
    }
    /// Every entry, sorted by machine id.
    pub fn entries(&self) -> Vec<MachineInfo> {
        let mut v: Vec<_> = self.inner.borrow().values().cloned().collect();
        v.sort_by(|a, b| a.machine.cmp(&b.machine));
        v
    }
    /// Number of machines.
    pub fn len(&self) -> usize {
        self.inner.borrow().len()
    }
    /// Whether the registry is empty.
    pub fn is_empty(&self) -> bool {
        self.inner.borrow().is_empty()
    }
    /// The registry entry as the core's [`ProcessInfo`].
    pub fn process_info(&self, machine: &str) -> Option<ProcessInfo> {
        self.inner
            .borrow()
            .get(machine)
            .map(|m| m.to_process_info(std::process::id()))
    }
    /// How many times the registry changed (a machine joined, left or re-registered): a
    /// reader that remembers it can tell, with one load, that nothing changed since.
    pub fn changes(&self) -> u64 {
        self.changes.get()
    }
    pub(crate) fn insert(&self, info: MachineInfo) {
        self.inner.borrow_mut().insert(info.machine.clone(), info);
        self.changes.set(self.changes.get() + 1);
    }
    pub(crate) fn remove(&self, machine: &str) {
        if self.inner.borrow_mut().remove(machine).is_some() {
            self.changes.set(self.changes.get() + 1);
        }
    }
    pub(crate) fn clear(&self) {
        self.inner.borrow_mut().clear();
    }
}

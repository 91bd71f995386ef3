//! The hub's registry: registering and unregistering machine ids, and telling registry
//! subscribers.

use crate::topic::SubscriptionSlots;
use heapless::Vec;

use super::{
    truncated, valid_machine_id, Handled, Hub, HubIo, LinkFull, LinkId, LinkState, Route, RouteKey,
    LOCAL_LINK,
};
use crate::context::TransportKind;
use crate::time::Instant;
use crate::wire::{cut_at_char, Frame, RegisterStatus, RegistryEntry, MAX_STOP_ERROR};

impl<const L: usize, const M: usize, const W: usize, T: SubscriptionSlots> Hub<L, M, W, T> {
    pub(super) fn entry<'a>(&'a self, machine: &'a str, r: Route) -> RegistryEntry<'a> {
        let l = &self.links[r.link as usize];
        RegistryEntry {
            machine,
            pid: l.peer.pid,
            uid: l.peer.uid,
            executable: l.executable.as_str(),
            transport: if r.link == LOCAL_LINK {
                TransportKind::InProcess
            } else {
                l.transport
            },
            since_ms: r.since_ms,
            durable: r.durable,
        }
    }

    pub(super) fn broadcast_removed(&mut self, machine: &str, io: &mut dyn HubIo) {
        // Its topic subscriptions end with it.
        self.drop_subscriptions(machine, io);
        for i in 0..L {
            let subscribed = self.links[i].registry && self.links[i].state == LinkState::Ready;
            if subscribed
                && io
                    .send(i as LinkId, &Frame::RegistryRemoved { machine })
                    .is_err()
            {
                // A registry view that missed an update is wrong: make it reconnect.
                self.links[i].registry = false;
                io.log(
                    i as LinkId,
                    "registry subscriber too slow; closing it so it resynchronizes",
                );
                io.close(i as LinkId, "registry subscriber too slow");
            }
        }
    }

    pub(super) fn register(
        &mut self,
        now: Instant,
        link: LinkId,
        machine: &str,
        durable: bool,
        io: &mut dyn HubIo,
    ) -> Handled {
        let status = if !valid_machine_id(machine) {
            RegisterStatus::BadId
        } else if let Some(r) = self.routes.get_mut(machine) {
            if r.link == link {
                r.durable = durable;
                RegisterStatus::Ok
            } else {
                RegisterStatus::Taken
            }
        } else if link != LOCAL_LINK
            && self.links[link as usize].machines >= self.config.machines_per_link
        {
            RegisterStatus::TooMany
        } else {
            let route = Route {
                link,
                since_ms: self.config.epoch_unix_ms + now.as_millis(),
                durable,
            };
            match self.routes.insert(RouteKey(truncated(machine)), route) {
                Ok(_) => {
                    self.links[link as usize].machines += 1;
                    // Registered again: no longer a stopped machine.
                    self.stopped.retain(|s| s.0 .0.as_str() != machine);
                    let entry = self.entry(machine, route);
                    let mut slow: Vec<LinkId, L> = Vec::new();
                    for i in 0..L {
                        if self.links[i].registry
                            && self.links[i].state == LinkState::Ready
                            && io.send(i as LinkId, &Frame::RegistryEntry(entry)).is_err()
                        {
                            let _ = slow.push(i as LinkId);
                        }
                    }
                    for s in slow {
                        self.links[s as usize].registry = false;
                        io.log(
                            s,
                            "registry subscriber too slow; closing it so it resynchronizes",
                        );
                        io.close(s, "registry subscriber too slow");
                    }
                    if self.unhold(machine) {
                        self.ask_to_resend(now, link, machine, io);
                    }
                    if self.watches.watched(machine) {
                        // Watched before it (re)joined: its new owner reports. (Best effort:
                        // a watcher asks again if no report comes.)
                        let _ = io.send(link, &Frame::Report { machine, on: true });
                    }
                    RegisterStatus::Ok
                }
                Err(_) => RegisterStatus::HubFull,
            }
        };
        // Every refusal is logged once, so that a client filling its quota is visible.
        let refusal = match status {
            RegisterStatus::Ok => None,
            RegisterStatus::Taken => Some("refused to register a machine id a live peer owns"),
            RegisterStatus::TooMany => {
                Some("refused a registration: the link has as many machine ids as it may")
            }
            RegisterStatus::HubFull => {
                Some("refused a registration: the hub's routing table is full")
            }
            RegisterStatus::BadId => {
                Some("refused a registration: the id is empty, too long or has control characters")
            }
        };
        if let Some(why) = refusal {
            io.log(link, why);
        }
        if link == LOCAL_LINK {
            return if status == RegisterStatus::Ok {
                Handled::Done
            } else {
                Handled::Closed
            };
        }
        match io.send(link, &Frame::RegisterResult { machine, status }) {
            Ok(()) => Handled::Done,
            Err(LinkFull) => Handled::Stalled(link),
        }
    }

    /// Registers a machine of the hub's own process. Returns the status.
    pub fn register_local(
        &mut self,
        now: Instant,
        machine: &str,
        io: &mut dyn HubIo,
    ) -> RegisterStatus {
        let before = self.lookup(machine).map(|r| r.link);
        match self.register(now, LOCAL_LINK, machine, false, io) {
            Handled::Done => RegisterStatus::Ok,
            _ if !valid_machine_id(machine) => RegisterStatus::BadId,
            _ if before.is_some() => RegisterStatus::Taken,
            _ => RegisterStatus::HubFull,
        }
    }

    pub(super) fn unregister(&mut self, link: LinkId, machine: &str, io: &mut dyn HubIo) {
        if self.lookup(machine).is_some_and(|r| r.link == link) {
            self.routes.remove(machine);
            self.links[link as usize].machines =
                self.links[link as usize].machines.saturating_sub(1);
            self.broadcast_removed(machine, io);
        }
    }

    /// `machine`, owned by `link`, stopped on `error`: it leaves the registry, and messages
    /// to it fail as `TargetStopped`, with the error's first [`MAX_STOP_ERROR`] bytes as the
    /// reports' detail, until it is registered again.
    pub(super) fn stopped(&mut self, link: LinkId, machine: &str, error: &str, io: &mut dyn HubIo) {
        if self.lookup(machine).is_none_or(|r| r.link != link) {
            return;
        }
        self.unregister(link, machine, io);
        if self.stopped.is_full() {
            self.stopped.remove(0);
        }
        let error = truncated::<MAX_STOP_ERROR>(cut_at_char(error, MAX_STOP_ERROR));
        let _ = self.stopped.push((RouteKey(truncated(machine)), error));
    }

    /// A machine of the hub's own process stopped on `error` (as if link 0 had sent
    /// `Stopped`).
    pub fn stopped_local(&mut self, machine: &str, error: &str, io: &mut dyn HubIo) {
        self.stopped(LOCAL_LINK, machine, error, io);
    }

    /// The error a stopped machine stopped on, while the hub remembers it as stopped.
    pub fn stop_error(&self, machine: &str) -> Option<&str> {
        self.stopped
            .iter()
            .find(|s| s.0 .0.as_str() == machine)
            .map(|s| s.1.as_str())
    }

    /// Unregisters a machine of the hub's own process (as if link 0 had sent `Unregister`).
    pub fn unregister_local(&mut self, machine: &str, io: &mut dyn HubIo) {
        self.unregister(LOCAL_LINK, machine, io);
    }
}

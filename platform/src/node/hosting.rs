//! Hosting: the machines and ports of this node, their steps and deliveries, routing of
//! their outboxes, timers, and the follow-up work (`Deferred`) calls leave behind.

use std::collections::VecDeque;
use std::time::Duration as StdDuration;

use rustc_hash::FxHashMap as HashMap;

use interstate_core::endpoint::Todo;
use interstate_core::hub::{Handled, LinkId};
use interstate_core::machine::Status;
use interstate_core::wire::{
    Deliver, FailReason, Frame, RegisterStatus, RegistryEntry, LEN_PREFIX,
};
use interstate_core::{Behavior, Chart, Duration, Event, Instant, Target};

use crate::error::PlatformError;
use crate::outstanding::{Outstanding, Received};
use crate::registry::{MachineInfo, Registry};

use super::hub_side::HubIoImpl;
use super::payload::{delivery_error_payload, json_string, local_info};
use super::{
    HostedMachine, Node, NodeStats, PortMessage, Side, DELIVERY_ERROR_EVENT, MACHINE_DOWN_EVENT,
    MACHINE_UP_EVENT,
};

/// A sender gone from the registry this long is forgotten by the duplicate filter: far longer
/// than a reconnect takes (after which it sends again what was not acknowledged, and its
/// duplicates must still be recognised), short enough that short-lived senders (each
/// `interstate send`) do not accumulate.
const FORGET_DEPARTED_MS: u64 = 60_000;

pub(super) struct Hosted {
    pub(super) id: String,
    pub(super) machine: Box<HostedMachine>,
    pub(super) behavior: Box<dyn Behavior>,
    pub(super) seq: u64,
    /// Its id is routed to this node; until then its outbox waits (the hub would refuse a
    /// sender id it does not know this node owns).
    pub(super) registered: bool,
}

/// Everything of the node that receives: its machines, ports, registry copy, counters, and
/// both ends of end-to-end delivery.
pub(super) struct Local {
    pub(super) machines: Vec<Hosted>,
    pub(super) by_id: HashMap<String, usize>,
    pub(super) ports: HashMap<String, VecDeque<PortMessage>>,
    /// Sequence numbers of the ports' sends.
    pub(super) port_seq: HashMap<String, u64>,
    pub(super) registry: Registry,
    pub(super) stats: NodeStats,
    pub(super) outstanding: Outstanding,
    pub(super) received: Received,
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
}

impl Deferred {
    pub(super) fn is_empty(&self) -> bool {
        self.logs.is_empty()
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Routed {
    Sent,
    Full,
}

impl Local {
    fn deliver(
        &mut self,
        now: Instant,
        from: &str,
        to: &str,
        event: &str,
        payload: &[u8],
        deferred: &mut Deferred,
    ) -> bool {
        if let Some(&i) = self.by_id.get(to) {
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
    fn step(
        &mut self,
        i: usize,
        now: Instant,
        event: &str,
        payload: &[u8],
        deferred: &mut Deferred,
    ) {
        let h = &mut self.machines[i];
        if let Err(e) = h.machine.send(
            now,
            Event::new(event).with_payload(payload),
            &mut *h.behavior,
        ) {
            deferred
                .logs
                .push(format!("machine '{}' failed on event '{event}': {e}", h.id));
        }
    }

    /// A message from another process: delivered once (a duplicate, sent again after a lost
    /// connection, is dropped and acknowledged again), and acknowledged once the application
    /// has it: a machine once its step ran, a port once `recv_port` returned it.
    pub(super) fn receive(&mut self, now: Instant, d: &Deliver<'_>, deferred: &mut Deferred) {
        if let Some(&i) = self.by_id.get(d.to) {
            if self.received.accept(d.to, d.from, d.seq, true) {
                self.stats.received += 1;
                self.step(i, now, d.event, d.payload, deferred);
            }
        } else if let Some(q) = self.ports.get_mut(d.to) {
            if self.received.accept(d.to, d.from, d.seq, false) {
                self.stats.received += 1;
                q.push_back(PortMessage {
                    port: d.to.to_string(),
                    from: d.from.to_string(),
                    event: d.event.to_string(),
                    payload: d.payload.to_vec(),
                    seq: d.seq,
                });
            }
        } else {
            // Not acknowledged: the hub routes only ids this node registered, so this is a
            // bug, and its sender must not take the message for delivered.
            deferred.logs.push(format!(
                "a message from '{}' for '{}', which this process does not host, was dropped",
                d.from, d.to
            ));
        }
    }

    /// A registry entry arrived (a machine joined, or the snapshot after a reconnect).
    pub(super) fn registry_entry(
        &mut self,
        now: Instant,
        e: &RegistryEntry<'_>,
        deferred: &mut Deferred,
    ) {
        self.received
            .sender_registered(e.machine, e.pid, now.as_millis());
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
        self.received.sender_departed(machine, now.as_millis());
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

/// A starting sequence number above any a previous incarnation of this process can have used
/// (nanoseconds since the epoch), so receivers never take a restarted sender's messages for
/// duplicates.
fn sequence_base() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}

impl Node {
    /// Makes the hosted machine or port `watcher` receive [`MACHINE_DOWN_EVENT`] when the
    /// machine `target` leaves the bus and [`MACHINE_UP_EVENT`] when it (re)joins it, as the
    /// registry says: a crashed worker's supervisor-restarted successor shows as down, then up.
    /// Returns whether `target` is on the bus now.
    pub fn watch(&mut self, watcher: &str, target: &str) -> Result<bool, PlatformError> {
        if !self.local.by_id.contains_key(watcher) && !self.local.ports.contains_key(watcher) {
            return Err(PlatformError::BadMachineId { id: watcher.into() });
        }
        let up = self.local.registry.contains(target);
        let w = self
            .local
            .watches
            .entry(target.to_string())
            .or_insert(Watch {
                up,
                watchers: Vec::new(),
            });
        if !w.watchers.iter().any(|x| x == watcher) {
            w.watchers.push(watcher.to_string());
        }
        Ok(up)
    }

    fn check_new_id(&self, id: &str) -> Result<(), PlatformError> {
        if !interstate_core::hub::valid_machine_id(id) {
            return Err(PlatformError::BadMachineId { id: id.into() });
        }
        if self.local.by_id.contains_key(id) || self.local.ports.contains_key(id) {
            return Err(PlatformError::MachineIdTaken { id: id.into() });
        }
        Ok(())
    }

    /// Adds a machine running `chart` with `behavior`, starts it, and registers `id` on the
    /// bus. Fails if the id is in use in this node or owned by a live peer.
    ///
    /// The chart must live as long as the node: compile it once and leak it (a node's
    /// machines live as long as the process).
    pub fn add_machine(
        &mut self,
        id: &str,
        chart: Chart<'static>,
        behavior: Box<dyn Behavior>,
    ) -> Result<(), PlatformError> {
        self.check_new_id(id)?;
        let machine = Box::new(HostedMachine::new(chart, id)?);
        // The machine is in the table and started before its id is announced, so that a
        // message sent the moment the registry shows it finds it.
        let idx = self.local.machines.len();
        self.local.machines.push(Hosted {
            id: id.to_string(),
            machine,
            behavior,
            seq: sequence_base(),
            registered: false,
        });
        self.local.by_id.insert(id.to_string(), idx);
        let now = self.now();
        let h = &mut self.local.machines[idx];
        if let Err(e) = h.machine.start(now, &mut *h.behavior) {
            self.local.machines.pop();
            self.local.by_id.remove(id);
            return Err(e.into());
        }
        if let Err(e) = self.register_on_bus(id) {
            self.local.machines.pop();
            self.local.by_id.remove(id);
            return Err(e);
        }
        self.local.machines[idx].registered = true;
        self.local.registry.insert(local_info(id));
        self.pump()?;
        Ok(())
    }

    /// Opens a port: a machine id with no statechart behind it, whose messages are queued for
    /// the caller ([`Node::recv_port`]) and which can send ([`Node::send_from_port`]). Tools
    /// (`interstate send`) and foreign code use ports.
    pub fn open_port(&mut self, id: &str) -> Result<(), PlatformError> {
        self.check_new_id(id)?;
        self.local.ports.insert(id.to_string(), VecDeque::new());
        if let Err(e) = self.register_on_bus(id) {
            self.local.ports.remove(id);
            return Err(e);
        }
        Ok(())
    }

    /// The next message for any port.
    ///
    /// A message from another process is acknowledged to its sender only once this returned
    /// it: one still queued when the process dies is reported to its sender as failed. (Or
    /// once [`Node::send_from_port`] has had to wait for room: see there.)
    pub fn recv_port(&mut self) -> Option<PortMessage> {
        let m = self.local.ports.values_mut().find_map(|q| q.pop_front())?;
        if m.seq != 0 {
            self.local.received.handed(&m.port, &m.from, m.seq);
        }
        Some(m)
    }

    /// Sends from a port; returns the message's sequence number. Delivery failures come back
    /// to the port as `xstate.error.delivery` messages, whose payload names the sequence
    /// number of the message that failed.
    ///
    /// When the bus is full (the receivers have not acknowledged enough), this drives the
    /// loop until there is room, for up to 5 s, then fails. While it waits, the messages
    /// queued unread in this process's ports are acknowledged (the application cannot read
    /// them meanwhile): otherwise two processes each blocked sending to the other would
    /// each hold back the acknowledgements the other waits for.
    pub fn send_from_port(
        &mut self,
        port: &str,
        to: &str,
        event: &str,
        payload: &[u8],
    ) -> Result<u64, PlatformError> {
        let seq = self.next_port_seq(port)?;
        // Read the clock for the deadline only once the bus turns out to be full.
        let mut deadline = None;
        loop {
            let mut deferred = Deferred::default();
            let routed = self.route(
                None,
                Deliver {
                    from: port,
                    to,
                    event,
                    payload,
                    seq,
                },
                &mut deferred,
            );
            self.settle(deferred);
            if routed == Routed::Sent {
                return Ok(seq);
            }
            let deadline = *deadline
                .get_or_insert_with(|| std::time::Instant::now() + StdDuration::from_secs(5));
            if std::time::Instant::now() > deadline {
                return Err(PlatformError::io(
                    "sending",
                    None,
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the bus stayed full for 5 s",
                    ),
                ));
            }
            // Backpressure: drive the loop until there is room. Meanwhile what waits unread
            // in this process's ports is acknowledged: the application cannot read while it
            // is blocked here, and two processes each blocked sending to the other, each
            // holding the other's acknowledgements back, would wait for ever.
            self.acknowledge_queued();
            self.run_once(Some(StdDuration::from_millis(5)))?;
        }
    }

    /// Acknowledges every message waiting in a port's queue (see `send_from_port`).
    fn acknowledge_queued(&mut self) {
        let Local {
            ports, received, ..
        } = &mut self.local;
        for q in ports.values() {
            for m in q.iter().filter(|m| m.seq != 0) {
                received.handed(&m.port, &m.from, m.seq);
            }
        }
    }

    /// The next sequence number of a port's sends (one lookup once the port has sent).
    fn next_port_seq(&mut self, port: &str) -> Result<u64, PlatformError> {
        let seq = match self.local.port_seq.get_mut(port) {
            Some(s) => s,
            None if self.local.ports.contains_key(port) => self
                .local
                .port_seq
                .entry(port.to_string())
                .or_insert_with(sequence_base),
            None => return Err(PlatformError::BadMachineId { id: port.into() }),
        };
        *seq += 1;
        Ok(*seq)
    }

    /// Injects an event into a hosted machine as if it came from outside.
    pub fn send_local(
        &mut self,
        to: &str,
        event: &str,
        payload: &[u8],
    ) -> Result<(), PlatformError> {
        let now = self.now();
        let Some(&i) = self.local.by_id.get(to) else {
            return Err(PlatformError::BadMachineId { id: to.into() });
        };
        let h = &mut self.local.machines[i];
        h.machine.send(
            now,
            Event::new(event).with_payload(payload),
            &mut *h.behavior,
        )?;
        self.pump()
    }

    /// Does what calls into the hub and the machines left for later: log lines, failures to
    /// report, registry removals, links to close (which may leave more of the same).
    pub(super) fn settle(&mut self, mut deferred: Deferred) {
        if deferred.is_empty() {
            // The common case, once per routed message: no clock read, no work.
            return;
        }
        let now = self.now();
        loop {
            for line in deferred.logs.drain(..) {
                (self.log)(&line);
            }
            // Failures found here are reported as they are; the hub's reports each settle one
            // outstanding message, once (and are reported only then, unless the sender is not
            // this process's).
            let direct = deferred.direct.drain(..).map(|f| (f, false));
            let from_hub = deferred.failures.drain(..).map(|f| (f, true));
            let all: Vec<_> = direct.chain(from_hub).collect();
            for ((from, to, event, seq, reason), settle) in all {
                if settle
                    && self.local.outstanding.fail_one(&from, &to, seq).is_none()
                    && (self.local.by_id.contains_key(&from)
                        || self.local.ports.contains_key(&from))
                {
                    continue;
                }
                let failed = Failed {
                    from: &from,
                    to: &to,
                    event: &event,
                    seq,
                    reason,
                };
                self.report_failure(now, failed, &mut deferred);
            }
            // A machine left the bus: what it never acknowledged will not arrive.
            let removed: Vec<_> = deferred.removed.drain(..).collect();
            for machine in removed {
                for u in self.local.outstanding.fail_where(&|_, t, _| t == machine) {
                    let failed = Failed {
                        from: &u.from,
                        to: &u.to,
                        event: &u.event,
                        seq: u.seq,
                        reason: FailReason::TargetGone,
                    };
                    self.report_failure(now, failed, &mut deferred);
                }
            }
            let closes: Vec<_> = deferred.close.drain(..).collect();
            for (link, _reason) in closes {
                let Side::Hub(h) = &mut self.side else { break };
                let Some(mut lc) = h.links.get_mut(link as usize).and_then(Option::take) else {
                    continue;
                };
                lc.conn.flush();
                let _ = lc.conn.stream.deregister(self.poll.registry());
                let unwritten = lc.conn.unwritten_frames();
                let mut io = HubIoImpl::new(&mut h.links, &mut self.local, now, &mut deferred);
                h.hub.link_closed(link, &mut io);
                // Messages queued for the dead link go back to their senders as failures.
                for body in unwritten {
                    h.hub.undeliverable(&body, &mut io);
                }
            }
            if deferred.is_empty() {
                return;
            }
        }
    }

    fn report_failure(&mut self, now: Instant, failed: Failed<'_>, deferred: &mut Deferred) {
        let Failed {
            from,
            to,
            event,
            seq,
            reason,
        } = failed;
        self.local.stats.delivery_failures += 1;
        let payload = delivery_error_payload(to, event, seq, reason);
        if !self
            .local
            .deliver(now, to, from, DELIVERY_ERROR_EVENT, &payload, deferred)
        {
            deferred.logs.push(format!(
                "undeliverable message from '{from}' to '{to}' ({event}): {}",
                reason.as_str()
            ));
        }
    }

    pub(super) fn fire_timers(&mut self) -> Result<(), PlatformError> {
        let now = self.turn_now;
        if now >= self.next_sweep {
            self.next_sweep = now + Duration::from_millis(1000);
            // Only with a current registry: a sender missing from a stale one may be alive.
            if self.registry_synced() {
                self.local
                    .received
                    .forget_departed(now.as_millis(), FORGET_DEPARTED_MS);
            }
        }
        for i in 0..self.local.machines.len() {
            let mut guard = 0;
            while self.local.machines[i]
                .machine
                .poll_timeout()
                .is_some_and(|t| t <= now)
                && guard < 1024
            {
                guard += 1;
                let h = &mut self.local.machines[i];
                match h.machine.handle_timeout(now, &mut *h.behavior) {
                    Ok(_) => {}
                    // A delayed send came due with the outbox or its byte space full (its
                    // messages wait for acknowledgements): it stays due, the machine stays
                    // active, and the send goes out once there is room.
                    Err(_) if h.machine.status() == Status::Active => {
                        self.pump()?;
                        break;
                    }
                    Err(e) => {
                        (self.log)(&format!("machine '{}' failed on a timer: {e}", h.id));
                        break;
                    }
                }
                if h.machine.outbox_len() > 0 {
                    self.pump()?;
                }
            }
        }
        let mut connect = false;
        let mut lost = None;
        match &mut self.side {
            Side::Hub(h) => {
                if h.hub.poll_timeout().is_some_and(|t| t <= now) {
                    let mut deferred = Deferred::default();
                    let mut io = HubIoImpl::new(&mut h.links, &mut self.local, now, &mut deferred);
                    h.hub.handle_timeout(now, &mut io);
                    self.settle(deferred);
                }
            }
            Side::Client(c) => {
                if let Some((at, backoff)) = c.retry_register.filter(|&(at, _)| at <= now) {
                    let _ = at;
                    c.retry_register = None;
                    if let Some(conn) = c.conn.as_mut().filter(|_| c.endpoint.is_ready()) {
                        let mut again = false;
                        for (id, status) in c.pending_register.iter_mut() {
                            if *status == Some(RegisterStatus::Taken) && c.owned.contains(id) {
                                *status = None;
                                again = true;
                                let _ = conn.queue(&Frame::Register { machine: id });
                            }
                        }
                        if again {
                            let next = (backoff * 2).min(1000);
                            c.retry_register = Some((now + Duration::from_millis(next), next));
                        }
                    }
                }
                // Blocked by backpressure, the hub does not read our pings either: it is
                // taken for alive until the stall outlasts the idle timeout (within which the
                // hub closes a receiver that reads nothing, ending the stall).
                if c.blocked_since
                    .is_some_and(|b| now < b + self.config.idle_timeout)
                    && c.conn.as_ref().is_some_and(|cn| cn.pending() > 0)
                {
                    c.endpoint.hub_busy(now);
                }
                if c.endpoint.poll_timeout().is_some_and(|t| t <= now) {
                    match c.endpoint.handle_timeout(now) {
                        Todo::Connect => connect = true,
                        Todo::Send(f) => {
                            if let Some(conn) = c.conn.as_mut() {
                                let _ = conn.queue(&f);
                            }
                        }
                        Todo::Close => lost = Some("the hub stopped answering"),
                        _ => {}
                    }
                }
            }
        }
        if let Some(why) = lost {
            self.client_lost(why);
        }
        if connect {
            self.client_connect()?;
        }
        Ok(())
    }

    /// Routes every machine's outbox, sends acknowledgements owed, moves outstanding messages
    /// onto the hub link, and flushes every link. Runs until nothing moves.
    pub(super) fn pump(&mut self) -> Result<(), PlatformError> {
        // One reused buffer holds a message's strings while it is routed: no allocation.
        let mut buf = std::mem::take(&mut self.msg_buf);
        let now = self.turn_now;
        let mut rounds = 0;
        loop {
            rounds += 1;
            let mut moved = false;
            let mut deferred = Deferred::default();
            for i in 0..self.local.machines.len() {
                let n = self.local.machines[i].machine.outbox_len();
                if n == 0 || !self.local.machines[i].registered {
                    continue;
                }
                let mut done = 0;
                while done < n {
                    buf.clear();
                    let (from_end, to_end, event_end);
                    {
                        let h = &self.local.machines[i];
                        let Some(m) = h.machine.outbox().nth(done) else {
                            break;
                        };
                        buf.extend_from_slice(h.id.as_bytes());
                        from_end = buf.len();
                        match m.target {
                            Target::ThisMachine => buf.extend_from_slice(h.id.as_bytes()),
                            Target::Machine(t) => buf.extend_from_slice(t.as_bytes()),
                        }
                        to_end = buf.len();
                        buf.extend_from_slice(m.event.as_bytes());
                        event_end = buf.len();
                        buf.extend_from_slice(m.payload);
                    }
                    let text =
                        |r: std::ops::Range<usize>| std::str::from_utf8(&buf[r]).unwrap_or("");
                    let seq = self.local.machines[i].seq;
                    match self.route(
                        Some(now),
                        Deliver {
                            from: text(0..from_end),
                            to: text(from_end..to_end),
                            event: text(to_end..event_end),
                            payload: &buf[event_end..],
                            seq,
                        },
                        &mut deferred,
                    ) {
                        Routed::Sent => {
                            self.local.machines[i].seq += 1;
                            done += 1;
                            moved = true;
                        }
                        Routed::Full => break,
                    }
                }
                self.local.machines[i].machine.consume_outbox(done);
            }
            self.settle(deferred);
            self.transmit();
            self.emit_acks();
            self.flush_all();
            if !moved || rounds > 64 {
                self.msg_buf = buf;
                return Ok(());
            }
        }
    }

    /// `now`: the time, or `None` to read the clock only if a local machine takes a step
    /// (a message to another process needs none fresh: the loop turn's will do).
    fn route(&mut self, now: Option<Instant>, d: Deliver<'_>, deferred: &mut Deferred) -> Routed {
        let Deliver {
            from,
            to,
            event,
            payload,
            ..
        } = d;
        if self.local.by_id.contains_key(to) || self.local.ports.contains_key(to) {
            self.local.stats.sent_local += 1;
            let now = now.unwrap_or_else(|| self.now());
            self.local.deliver(now, from, to, event, payload, deferred);
            return Routed::Sent;
        }
        let frame = Frame::Deliver(d);
        let Some(n) = frame
            .encode(&mut self.scratch)
            .ok()
            .filter(|&n| n <= self.config.max_frame as usize + LEN_PREFIX)
        else {
            deferred.direct.push((
                from.into(),
                to.into(),
                event.into(),
                d.seq,
                FailReason::TooLarge,
            ));
            return Routed::Sent;
        };
        let body = &self.scratch[LEN_PREFIX..n];
        // Every message to another process is kept until its receiver acknowledges it.
        if !self.local.outstanding.has_room(body.len()) {
            if self.is_connected() {
                // Backpressure: the message stays in the machine's outbox until acks free room.
                return Routed::Full;
            }
            deferred.direct.push((
                from.into(),
                to.into(),
                event.into(),
                d.seq,
                FailReason::Disconnected,
            ));
            return Routed::Sent;
        }
        let now = now.unwrap_or(self.turn_now);
        match &mut self.side {
            Side::Hub(h) => {
                let mut io = HubIoImpl::new(&mut h.links, &mut self.local, now, deferred);
                if let Handled::Stalled(_) = h.hub.deliver_local(now, d, body, &mut io) {
                    return Routed::Full;
                }
                let _ = self.local.outstanding.push(body, true);
            }
            Side::Client(_) => {
                let _ = self.local.outstanding.push(body, false);
            }
        }
        self.local.stats.sent_remote += 1;
        Routed::Sent
    }
}

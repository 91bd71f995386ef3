//! The client side: connecting to the hub, losing it and reconnecting, registering ids,
//! reading the hub link, and moving outstanding messages and acknowledgements onto it.

use std::path::{Path, PathBuf};
use std::time::Duration as StdDuration;

use interstate_core::bus::client::{CloseReason, Incoming, RegistrationChange};
use interstate_core::bus::policy::Registration;
use interstate_core::bus::FrameSink;
use interstate_core::endpoint::EndpointConfig;
use interstate_core::hub::Handled;
use interstate_core::wire::{is_unknown_kind, FailReason, Frame, RegisterStatus, LEN_PREFIX};
use interstate_core::{Duration, Instant};
use mio::net::UnixStream;
use mio::Interest;

use crate::conn::Conn;
use crate::error::PlatformError;
use crate::transport::shm::ShmLink;
use crate::transport::LinkIo;

use super::hub_serve::shm_socket_path;
use super::hub_side::HubIoImpl;
use super::local::{Deferred, Failure};
use super::payload::{local_info, ThisProcess};
use super::{
    duplicate_slots, BusClient, LinkConnIo, Node, NodeConfig, Side, Transport, CLIENT, NODE_IDS,
};

pub(super) struct ClientSide {
    /// The protocol: handshake, keepalive, registration, the outstanding buffer, the
    /// duplicate filter and the acknowledgement policy.
    pub(super) client: Box<BusClient>,
    pub(super) conn: Option<LinkConnIo>,
    pub(super) readable: bool,
    pub(super) path: PathBuf,
    /// Since when output to the hub has waited with none of it written (the hub is not
    /// reading this link: backpressure, or a hung hub).
    pub(super) blocked_since: Option<Instant>,
    /// The process of the hub this client was last welcomed by (for a takeover's log line).
    pub(super) hub_pid: Option<u32>,
    /// The bus's topic subscriptions (to fan publications out from) and this process's own.
    pub(super) topics: Box<super::topics::Mirror>,
    /// Direct peer rings, by the client's pair slots (see [`super::direct`]).
    pub(super) direct: super::direct::DirectRings,
}

/// The link to the hub as the core client writes to it (frames are dropped while there is
/// no link: everything they carry is asked for again when it comes back).
pub(super) struct Sink<'a> {
    conn: Option<&'a mut LinkConnIo>,
    copies: &'a mut u64,
}

impl<'a> Sink<'a> {
    pub(super) fn new(conn: Option<&'a mut LinkConnIo>, copies: &'a mut u64) -> Self {
        Sink { conn, copies }
    }
}

impl FrameSink for Sink<'_> {
    fn send_frame(&mut self, frame: &Frame<'_>) -> bool {
        self.conn.as_mut().is_some_and(|c| c.queue(frame).is_ok())
    }
    fn send_body(&mut self, body: &[u8]) -> bool {
        let sent = self
            .conn
            .as_mut()
            .is_some_and(|c| c.queue_body(body).is_ok());
        if sent {
            *self.copies += 1;
        }
        sent
    }
    fn has_pending(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| c.pending() > 0)
    }
}

impl Node {
    pub(super) fn client_side(config: &NodeConfig, path: &Path) -> ClientSide {
        let me = ThisProcess::current();
        let mut ec = EndpointConfig::new(me.pid, &me.executable);
        ec.keepalive = config.keepalive;
        ec.dead_after = Duration::from_millis(config.keepalive.as_millis() * 2);
        ec.backoff_min = config.backoff.0;
        ec.backoff_max = config.backoff.1;
        ec.max_frame = config.max_frame;
        let (pairs, owners) = duplicate_slots(config);
        let outstanding = vec![0; config.reconnect_buffer].into_boxed_slice();
        let mut client = Box::new(BusClient::new(
            ec,
            Instant::ZERO,
            outstanding,
            pairs,
            owners,
        ));
        // Direct peer rings only between processes in shared memory.
        if let Transport::SharedMemory { .. } = config.transport {
            client.set_direct_pairs(config.direct_pairs);
        }
        ClientSide {
            client,
            conn: None,
            readable: false,
            path: path.into(),
            blocked_since: None,
            hub_pid: None,
            topics: super::topics::mirror(),
            direct: Default::default(),
        }
    }

    /// Registers `id` on the bus; waits for the hub's answer when connected. `durable`: a
    /// journalled machine, which the hub keeps for this node's next process should this one
    /// die (see `docs/persistence.md`).
    pub(super) fn register_on_bus(&mut self, id: &str, durable: bool) -> Result<(), PlatformError> {
        self.register_on_bus_as(id, durable, true)
    }

    /// Registers `id` without waiting for a client's answer (an invoked child, started in
    /// the middle of its parent's step): its messages to other processes wait until the hub
    /// accepts it.
    pub(super) fn register_on_bus_now(&mut self, id: &str) -> Result<(), PlatformError> {
        self.register_on_bus_as(id, false, false)
    }

    fn register_on_bus_as(
        &mut self,
        id: &str,
        durable: bool,
        wait: bool,
    ) -> Result<(), PlatformError> {
        let now = self.now();
        match &mut self.side {
            Side::Hub(h) => {
                let mut deferred = Deferred::default();
                let mut io = HubIoImpl::new(
                    &mut h.links,
                    &mut self.local,
                    Some(&mut h.delivery),
                    now,
                    &mut deferred,
                );
                let status = h.hub.register_local(now, id, &mut io);
                self.settle(deferred);
                match status {
                    RegisterStatus::Ok => Ok(()),
                    RegisterStatus::Taken => Err(PlatformError::MachineIdTaken { id: id.into() }),
                    _ => Err(PlatformError::BadMachineId { id: id.into() }),
                }
            }
            Side::Client(c) => {
                let mut sink = Sink::new(c.conn.as_mut(), &mut self.local.stats.payload_copies);
                let registered = if durable {
                    c.client.register_durable(id, &mut sink)
                } else {
                    c.client.register(id, &mut sink)
                };
                if registered.is_err() {
                    return Err(PlatformError::TooManyIds {
                        id: id.into(),
                        limit: NODE_IDS,
                    });
                }
                if !c.client.is_ready() || !wait {
                    return Ok(());
                }
                let deadline = std::time::Instant::now() + StdDuration::from_secs(5);
                loop {
                    let Side::Client(c) = &mut self.side else {
                        return Ok(());
                    };
                    let refused = match c.client.registration(id) {
                        Some(Registration::Registered) => return Ok(()),
                        Some(Registration::Refused | Registration::HeldElsewhere) => {
                            match c.client.last_answer(id) {
                                Some(RegisterStatus::Taken) => {
                                    PlatformError::MachineIdTaken { id: id.into() }
                                }
                                _ => PlatformError::BadMachineId { id: id.into() },
                            }
                        }
                        _ => {
                            if !c.client.is_ready() || std::time::Instant::now() > deadline {
                                // Registered when the link comes (back).
                                return Ok(());
                            }
                            self.run_once(Some(StdDuration::from_millis(10)))?;
                            continue;
                        }
                    };
                    // Not this node's id after all: forget it.
                    c.client.forget(id);
                    return Err(refused);
                }
            }
        }
    }

    pub(super) fn client_connect(&mut self) -> Result<(), PlatformError> {
        let now = self.now();
        let Side::Client(c) = &mut self.side else {
            return Ok(());
        };
        let connected: std::io::Result<Box<dyn LinkIo>> = match self.config.transport {
            Transport::UnixSocket => {
                UnixStream::connect(&c.path).map(|s| Box::new(s) as Box<dyn LinkIo>)
            }
            Transport::Fifo => crate::transport::fifo::FifoLink::connect(
                &self.config.dir,
                &self.config.bus,
                StdDuration::from_secs(5),
            )
            .map(|l| Box::new(l) as Box<dyn LinkIo>),
            Transport::SharedMemory { .. } => {
                ShmLink::connect(&shm_socket_path(&c.path), StdDuration::from_secs(5))
                    .map(|l| Box::new(l) as Box<dyn LinkIo>)
            }
        };
        match connected {
            Ok(mut stream) => {
                stream
                    .register(self.poll.registry(), CLIENT, Interest::READABLE)
                    .map_err(|e| {
                        PlatformError::io("watching the hub connection", Some(&c.path), e)
                    })?;
                let mut conn = Conn::new(stream, self.config.max_frame, self.config.link_queue);
                let mut copies = 0;
                c.client
                    .connected(now, &mut Sink::new(Some(&mut conn), &mut copies));
                conn.flush();
                c.conn = Some(conn);
                c.readable = true;
                self.local.stats.connects += 1;
            }
            Err(_) => {
                c.client.connect_failed(now);
                // The auto role fails over when its hub is gone for good.
                return self.hub_gone();
            }
        }
        Ok(())
    }

    pub(super) fn client_lost(&mut self, why: &str) {
        let now = self.now();
        let Side::Client(c) = &mut self.side else {
            return;
        };
        c.blocked_since = None;
        // Every direct pair goes with the hub link (what they held unacknowledged is sent
        // again after the reconnect, with everything else).
        for slot in 0..c.direct.len() {
            Self::drop_direct(c, self.poll.registry(), slot);
        }
        if let Some(mut conn) = c.conn.take() {
            let _ = conn.stream.deregister(self.poll.registry());
            (self.log)(&format!("lost the hub ({why}); reconnecting"));
        }
        // Whatever was sent and not acknowledged is sent again after the reconnect.
        c.client.disconnected(now);
        self.local.registry.clear();
        for h in self.local.machines.iter().filter(|h| !h.stopped) {
            self.local.registry.insert(local_info(&h.id));
        }
        // Until the hub asks again: it does when these ids are registered again and someone
        // watches them (a restarted hub, once the watchers have asked it again).
        for h in &mut self.local.machines {
            h.watched = false;
        }
    }

    pub(super) fn read_client(&mut self) -> Result<(), PlatformError> {
        let now = self.turn_now;
        let mut deferred = Deferred::default();
        let mut lost: Option<String> = None;
        let mut ready = false;
        {
            let Side::Client(c) = &mut self.side else {
                return Ok(());
            };
            let Some(conn) = c.conn.as_mut() else {
                return Ok(());
            };
            if c.readable {
                conn.fill();
                c.readable = false;
            }
            let mut budget = 8192;
            while lost.is_none() && budget > 0 {
                budget -= 1;
                let Some(conn) = c.conn.as_mut() else { break };
                // Decoded where it was read: the read buffer is lent out while the frame is
                // handled (the handling writes to this link).
                let lent = match conn.lend_frame() {
                    Ok(Some(lent)) => lent,
                    Ok(None) => {
                        if !conn.dead && conn.more {
                            conn.fill();
                        }
                        if matches!(conn.peek_frame(), Ok(Some(_))) {
                            continue;
                        }
                        break;
                    }
                    Err(e) => {
                        lost = Some(format!("bad frame from the hub: {e}"));
                        break;
                    }
                };
                let body_len = lent.body().len();
                let frame = match Frame::decode(lent.body()) {
                    Ok(f) => f,
                    // A later protocol's frame: skipped, as the protocol asks of clients.
                    Err(_) if is_unknown_kind(lent.body()) => {
                        conn.give_back(lent, true);
                        continue;
                    }
                    Err(e) => {
                        lost = Some(format!("bad frame from the hub: {e}"));
                        conn.give_back(lent, false);
                        break;
                    }
                };
                if let Frame::DirectClose { pair } = frame {
                    // What the other side wrote to the ring before the close (its last
                    // acknowledgements and messages) is read first: dropped unread, its
                    // acknowledgements would be lost, and messages it has would go again
                    // through the hub and be reported failed there although delivered. The
                    // close waits, unread, for `read_direct` (called next) to drain the ring.
                    let direct = c.client.direct();
                    if let Some(r) = direct
                        .slot_of(pair)
                        .filter(|&k| direct.readable(k))
                        .and_then(|k| c.direct.get_mut(k).and_then(Option::as_mut))
                    {
                        r.conn.fill();
                        if matches!(r.conn.peek_frame(), Ok(Some(_))) {
                            r.readable = true;
                            if let Some(conn) = c.conn.as_mut() {
                                conn.give_back(lent, false);
                            }
                            break;
                        }
                    }
                }
                if let Frame::Welcome(w) = &frame {
                    c.hub_pid = Some(w.hub_pid);
                }
                let monitored_at = match frame {
                    Frame::Monitored { at_ms, .. } => at_ms,
                    _ => 0,
                };
                if let Frame::Ack { from, to, seq } = frame {
                    // `to` sent the messages `from` acknowledges.
                    self.local.metrics.acked(to, from, seq);
                    self.local.port_acked(to, from, seq);
                }
                let mut offer = None;
                let mut sink = Sink::new(c.conn.as_mut(), &mut self.local.stats.payload_copies);
                match c.client.handle_frame(now, frame, &mut sink) {
                    Incoming::Nothing => {}
                    Incoming::DirectOffer { pair, peer_pid } => offer = Some((pair, peer_pid)),
                    Incoming::DirectReadable { slot } => {
                        // What the other side wrote before its switch-over reached us is
                        // waiting, with no wake-up to come for it.
                        if let Some(r) = c.direct.get_mut(slot).and_then(Option::as_mut) {
                            r.readable = true;
                        }
                    }
                    Incoming::DirectClosed { slot, .. } => {
                        Self::drop_direct(c, self.poll.registry(), slot);
                    }
                    Incoming::Ready { max_frame } => {
                        ready = true;
                        c.topics.on_ready(&mut sink);
                        if let Some(conn) = c.conn.as_mut() {
                            conn.set_max_frame(max_frame);
                        }
                        // Back after a long absence: what was written to the lost link is
                        // not sent again (its receiver may have forgotten this process) but
                        // reported failed, not confirmed.
                        c.client.fail_after_long_absence(&mut |u| {
                            deferred.direct.push(
                                Failure::found(
                                    u.from,
                                    u.to,
                                    u.event,
                                    u.seq,
                                    FailReason::Disconnected,
                                )
                                .correlated(u.correlation),
                            )
                        });
                    }
                    Incoming::Close(why) => {
                        lost = Some(match why {
                            CloseReason::Rejected(m) => {
                                format!("the hub refused this process: {m}")
                            }
                            CloseReason::Goodbye(r) => format!("the hub said goodbye: {r}"),
                            CloseReason::Silent => "the hub stopped answering".into(),
                        });
                    }
                    Incoming::Deliver(d) => {
                        let local = &mut self.local;
                        local.receive(now, &d, &mut deferred, &mut |d, handed| {
                            c.client.accept_read(d, body_len, handed)
                        });
                    }
                    Incoming::Failed {
                        failed: f,
                        settled,
                        correlation,
                    } => {
                        // Reported once: when it settled an outstanding message here, or when
                        // its sender is not this process's.
                        let ours = self.local.by_id.contains_key(f.from)
                            || self.local.ports.contains_key(f.from);
                        if settled || !ours {
                            deferred
                                .direct
                                .push(Failure::reported(&f).correlated(correlation));
                        }
                    }
                    Incoming::Registered {
                        machine,
                        status,
                        change,
                    } => match change {
                        _ if status == RegisterStatus::Ok
                            && !matches!(change, RegistrationChange::HeldElsewhere) =>
                        {
                            // Its subscriptions are asked for (again) with its registration.
                            c.topics.registered(machine, &mut sink);
                            if let RegistrationChange::Regained = change {
                                deferred.logs.push(format!("registered '{machine}' again"))
                            }
                        }
                        RegistrationChange::None => {}
                        RegistrationChange::Regained => {
                            deferred.logs.push(format!("registered '{machine}' again"))
                        }
                        RegistrationChange::HeldElsewhere => deferred.logs.push(format!(
                            "the hub still holds '{machine}' for another connection; asking \
                             again until it is free"
                        )),
                        RegistrationChange::Refused => deferred.logs.push(format!(
                            "the hub refused to register '{machine}': {status:?}"
                        )),
                    },
                    Incoming::RegistryEntry(e) => self.local.registry_entry(now, &e, &mut deferred),
                    Incoming::RegistryRemoved(machine) => {
                        if !self.local.by_id.contains_key(machine) {
                            self.local.registry_removed(now, machine, &mut deferred)
                        }
                    }
                    Incoming::SnapshotEnd => {
                        // Watched machines that did not come back with the new snapshot (after
                        // a hub restart) are down.
                        let gone: Vec<String> = self
                            .local
                            .watches
                            .keys()
                            .filter(|m| !self.local.registry.contains(m))
                            .cloned()
                            .collect();
                        for m in gone {
                            self.local.watched(now, &m, false, &mut deferred);
                        }
                        let registry = &self.local.registry;
                        c.client
                            .received_mut()
                            .departed_unless(&|m| registry.contains(m), now.as_millis());
                    }
                    Incoming::Report { machine, on } => {
                        self.local.report_requested(machine, on, &mut deferred)
                    }
                    Incoming::Topic(f) => super::topics::news(c.topics.handle(&f), &mut deferred),
                    Incoming::Stats(Frame::StatsRequest { link }) => {
                        deferred.stats_asked.push((link, 0))
                    }
                    Incoming::Stats(Frame::Stats {
                        link,
                        expect,
                        report,
                    }) => {
                        if self.stats_answers.len() < 4096 {
                            self.stats_answers.push_back(super::StatsAnswer {
                                link,
                                expect,
                                report: report.to_vec(),
                            });
                        }
                    }
                    Incoming::Stats(_) => {}
                    Incoming::State { machine, report } => {
                        if self.state_reports.len() < 4096 {
                            self.state_reports.push_back((
                                machine.to_string(),
                                String::from_utf8_lossy(report).into_owned(),
                            ));
                        }
                    }
                    Incoming::Monitored(frame) => {
                        if self.monitor_frames.len() < 65536 {
                            self.monitor_frames.push(monitored_at, frame);
                        } else {
                            self.monitor_dropped += 1;
                        }
                    }
                }
                // (`frame` borrowed the lent buffer: it ends here.)
                match c.conn.as_mut() {
                    Some(conn) => conn.give_back(lent, true),
                    None => drop(lent),
                }
                if let Some((pair, peer_pid)) = offer {
                    let log = &mut self.log;
                    Self::take_direct_offer(
                        c,
                        self.poll.registry(),
                        &self.config,
                        &mut self.local.stats.payload_copies,
                        pair,
                        peer_pid,
                        &mut |line| log(line),
                    );
                }
            }
            if budget == 0 {
                c.readable = true;
            }
            // The hub is gone once its whole frames are handled.
            if let Some(conn) = c.conn.as_ref() {
                if lost.is_none() && conn.dead && !matches!(conn.peek_frame(), Ok(Some(_))) {
                    lost = Some(
                        if conn.has_partial() {
                            "the hub closed the connection mid-frame"
                        } else {
                            "the hub closed the connection"
                        }
                        .into(),
                    );
                }
            }
        }
        if let Some(why) = lost {
            self.client_lost(&why);
        }
        if ready {
            self.on_ready();
        }
        self.settle(deferred);
        Ok(())
    }

    /// The link to the hub is (again) ready (the client has asked for every id and
    /// subscribed): send what is outstanding.
    fn on_ready(&mut self) {
        self.transmit();
        self.rewatch();
    }

    /// Ends the grace that follows a connection: messages to machines the registry copy does
    /// not show go out now instead of waiting (up to 3 s) for them to appear, and so fail at
    /// once (`unknown-target`, or `target-stopped` with the error for a machine that stopped).
    /// For a one-shot sender whose registry copy is current (`interstate send`); the grace
    /// starts again at the next connection. Nothing to do for the hub's own process.
    pub fn end_connect_grace(&mut self) {
        if let Side::Client(c) = &mut self.side {
            c.client.end_grace();
        }
    }

    /// Client: moves unsent messages from the outstanding buffer onto the hub link, in order,
    /// holding back (during the grace after a reconnect) those for machines not back yet.
    pub(super) fn transmit(&mut self) {
        let Side::Client(c) = &mut self.side else {
            return self.transmit_handed_over();
        };
        let registry = &self.local.registry;
        let copies = &mut self.local.stats.payload_copies;
        if c.client.direct().any() {
            let mut ring_copies = 0;
            let mut rings = super::direct::RingSink {
                rings: &mut c.direct,
                copies: &mut ring_copies,
            };
            let mut sink = Sink::new(c.conn.as_mut(), copies);
            c.client.transmit_direct(
                self.turn_now,
                &|to| registry.contains(to),
                &|id| registry.owner_of(id).map(|o| o.0),
                &mut sink,
                &mut rings,
            );
            *copies += ring_copies;
        } else {
            let mut sink = Sink::new(c.conn.as_mut(), copies);
            c.client
                .transmit(self.turn_now, &|to| registry.contains(to), &mut sink);
        }
    }

    /// Sends the acknowledgements owed for messages delivered here, when the policy says
    /// they are due (they ride on a write that happens anyway, or go out in batches, or after
    /// a short delay: never one write per message).
    pub(super) fn emit_acks(&mut self) {
        self.emit_acks_when(false);
    }

    /// As [`emit_acks`](Self::emit_acks); `now_anyway`: every acknowledgement owed goes now,
    /// whatever the policy (before one of this process's ids leaves the bus, or the process
    /// shuts down).
    pub(super) fn emit_acks_when(&mut self, now_anyway: bool) {
        // Durable machines' events are acknowledged only once their steps are on disk.
        let journalled = if now_anyway {
            self.journal_sync_all().map(|()| false)
        } else {
            self.journal_steps().and_then(|()| self.journal_holds())
        };
        match journalled {
            Ok(false) => {}
            Ok(true) => return,
            Err(e) => {
                // Nothing is acknowledged that is not on disk; `pump` returns the error.
                (self.log)(&format!("the journal failed: {e}"));
                return;
            }
        }
        let now = self.turn_now;
        match &mut self.side {
            Side::Client(c) => {
                let copies = &mut self.local.stats.payload_copies;
                if now_anyway {
                    // On the hub's link, ahead of the departure that follows there.
                    let mut sink = Sink::new(c.conn.as_mut(), copies);
                    c.client.emit_acks_now(now, &mut sink);
                } else if c.client.direct().any() {
                    // Acknowledgements to the other side of a pair ride on its ring.
                    let registry = &self.local.registry;
                    let mut ring_copies = 0;
                    let mut rings = super::direct::RingSink {
                        rings: &mut c.direct,
                        copies: &mut ring_copies,
                    };
                    let mut sink = Sink::new(c.conn.as_mut(), copies);
                    c.client.emit_acks_direct(
                        now,
                        &|id| registry.owner_of(id).map(|o| o.0),
                        &mut sink,
                        &mut rings,
                    );
                } else {
                    let mut sink = Sink::new(c.conn.as_mut(), copies);
                    c.client.emit_acks(now, &mut sink);
                }
            }
            Side::Hub(h) => {
                let super::hub_side::HubSide {
                    links,
                    high,
                    hub,
                    delivery,
                    ..
                } = &mut **h;
                let received = &mut delivery.received;
                let piggyback = links[..*high]
                    .iter()
                    .flatten()
                    .any(|l| l.conn.pending() > 0);
                if !now_anyway
                    && !delivery.acks.should_emit(
                        now,
                        received.is_dirty(),
                        received.owed(),
                        piggyback,
                    )
                {
                    return;
                }
                let mut deferred = Deferred::default();
                let scratch = &mut self.scratch;
                let local = &mut self.local;
                received.emit(&mut |receiver, sender, seq| {
                    let Ok(n) = (Frame::Ack {
                        from: receiver,
                        to: sender,
                        seq,
                    })
                    .encode(scratch) else {
                        return true;
                    };
                    // (The acknowledged messages came from other processes: routing their
                    // acks needs neither end of this node's own delivery state.)
                    let mut io = HubIoImpl::new(links, local, None, now, &mut deferred);
                    // A full link delays the ack; the sender keeps the message until it comes.
                    !matches!(
                        hub.ack_local(receiver, sender, &scratch[LEN_PREFIX..n], &mut io),
                        Handled::Stalled(_)
                    )
                });
                self.settle(deferred);
            }
        }
    }
}

//! The client side: connecting to the hub, losing it and reconnecting, registering ids,
//! reading the hub link, and moving outstanding messages and acknowledgements onto it.

use std::path::{Path, PathBuf};
use std::time::Duration as StdDuration;

use rustc_hash::FxHashMap as HashMap;

use interstate_core::endpoint::{Endpoint, EndpointConfig, Todo};
use interstate_core::hub::Handled;
use interstate_core::wire::{Frame, RegisterStatus, LEN_PREFIX};
use interstate_core::{Duration, Instant};
use mio::net::UnixStream;
use mio::Interest;

use crate::conn::Conn;
use crate::error::PlatformError;
use crate::transport::shm::ShmLink;
use crate::transport::LinkIo;

use super::hosting::Deferred;
use super::hub_side::{shm_socket_path, HubIoImpl};
use super::payload::{local_info, ThisProcess};
use super::{LinkConnIo, Node, NodeConfig, Side, Transport, CLIENT};

/// How long, after a reconnect, messages wait for their target to re-register.
const RECONNECT_GRACE: Duration = Duration::from_millis(3_000);

/// Acknowledgements wait at most this long for a write to ride on.
const ACK_DELAY: Duration = Duration::from_millis(2);

/// ... or until this many deliveries are owed one.
const ACK_BATCH: usize = 256;

pub(super) struct ClientSide {
    pub(super) endpoint: Endpoint,
    pub(super) conn: Option<LinkConnIo>,
    pub(super) readable: bool,
    pub(super) path: PathBuf,

    /// Ids registered (or to register) on the hub, and the answers received.
    pub(super) pending_register: HashMap<String, Option<RegisterStatus>>,
    /// Every id in `pending_register` is registered: messages need no per-sender check.
    pub(super) all_registered: bool,
    /// Ids the hub accepted from this node at least once. Refused again after a reconnect
    /// (the hub still holds them for this node's previous, broken connection), they are
    /// asked for again, after `retry_register` (time, backoff in ms).
    pub(super) owned: std::collections::HashSet<String>,
    pub(super) retry_register: Option<(Instant, u64)>,
    /// Owned ids the hub currently refuses (logged once when refused, once when back).
    pub(super) held_elsewhere: std::collections::HashSet<String>,
    /// Since when output to the hub has waited with none of it written (the hub is not
    /// reading this link: backpressure, or a hung hub).
    pub(super) blocked_since: Option<Instant>,
    pub(super) monitor: bool,
    pub(super) snapshot_done: bool,
}

impl ClientSide {
    fn refresh_registered(&mut self) {
        self.all_registered = self
            .pending_register
            .values()
            .all(|s| *s == Some(RegisterStatus::Ok));
    }
}

/// Whether messages from `id` go out now: the hub has accepted the id on the current
/// connection, or refused it for good (then they fail visibly, as `not-owner`). They wait
/// while its registration is pending, or being asked for again (`held_elsewhere`).
fn may_send_as(
    all_registered: bool,
    pending: &HashMap<String, Option<RegisterStatus>>,
    held_elsewhere: &std::collections::HashSet<String>,
    id: &str,
) -> bool {
    all_registered
        || match pending.get(id) {
            None | Some(Some(RegisterStatus::Ok)) => true,
            Some(None) => false,
            Some(Some(_)) => !held_elsewhere.contains(id),
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
        ClientSide {
            endpoint: Endpoint::new(ec, Instant::ZERO),
            conn: None,
            readable: false,
            path: path.into(),

            pending_register: HashMap::default(),
            all_registered: true,
            owned: Default::default(),
            retry_register: None,
            held_elsewhere: Default::default(),
            blocked_since: None,
            monitor: false,
            snapshot_done: false,
        }
    }

    /// Registers `id` on the bus; waits for the hub's answer when connected.
    pub(super) fn register_on_bus(&mut self, id: &str) -> Result<(), PlatformError> {
        let now = self.now();
        match &mut self.side {
            Side::Hub(h) => {
                let mut deferred = Deferred::default();
                let mut io = HubIoImpl::new(&mut h.links, &mut self.local, now, &mut deferred);
                let status = h.hub.register_local(now, id, &mut io);
                self.settle(deferred);
                match status {
                    RegisterStatus::Ok => Ok(()),
                    RegisterStatus::Taken => Err(PlatformError::MachineIdTaken { id: id.into() }),
                    _ => Err(PlatformError::BadMachineId { id: id.into() }),
                }
            }
            Side::Client(c) => {
                c.pending_register.insert(id.to_string(), None);
                c.all_registered = false;
                if !c.endpoint.is_ready() {
                    return Ok(());
                }
                if let Some(conn) = c.conn.as_mut() {
                    let _ = conn.queue(&Frame::Register { machine: id });
                }
                let deadline = std::time::Instant::now() + StdDuration::from_secs(5);
                loop {
                    let Side::Client(c) = &mut self.side else {
                        return Ok(());
                    };
                    let refused = match c.pending_register.get(id) {
                        Some(Some(RegisterStatus::Ok)) => return Ok(()),
                        Some(Some(RegisterStatus::Taken)) => {
                            PlatformError::MachineIdTaken { id: id.into() }
                        }
                        Some(Some(_)) => PlatformError::BadMachineId { id: id.into() },
                        _ => {
                            if !c.endpoint.is_ready() || std::time::Instant::now() > deadline {
                                // Registered when the link comes (back).
                                return Ok(());
                            }
                            self.run_once(Some(StdDuration::from_millis(10)))?;
                            continue;
                        }
                    };
                    // Not this node's id after all: forget it.
                    c.pending_register.remove(id);
                    c.refresh_registered();
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
                c.endpoint.connected(now);
                let _ = conn.queue(&c.endpoint.hello());
                conn.flush();
                c.conn = Some(conn);
                c.readable = true;
                self.local.stats.connects += 1;
            }
            Err(_) => c.endpoint.disconnected(now),
        }
        Ok(())
    }

    pub(super) fn client_lost(&mut self, why: &str) {
        let now = self.now();
        let Side::Client(c) = &mut self.side else {
            return;
        };
        c.blocked_since = None;
        if let Some(mut conn) = c.conn.take() {
            let _ = conn.stream.deregister(self.poll.registry());
            (self.log)(&format!("lost the hub ({why}); reconnecting"));
        }
        // Whatever was sent and not acknowledged is sent again after the reconnect.
        self.local.outstanding.rewind();
        if c.endpoint.is_ready()
            || matches!(
                c.endpoint.state(),
                interstate_core::endpoint::LinkState::Handshaking
            )
        {
            c.endpoint.disconnected(now);
        }
        c.snapshot_done = false;
        self.local.registry.clear();
        for h in &self.local.machines {
            self.local.registry.insert(local_info(&h.id));
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
                let body_len = match conn.peek_frame() {
                    Ok(Some(b)) => {
                        self.scratch[..b.len()].copy_from_slice(b);
                        b.len()
                    }
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
                let frame = match Frame::decode(&self.scratch[..body_len]) {
                    Ok(f) => f,
                    Err(e) => {
                        lost = Some(format!("bad frame from the hub: {e}"));
                        break;
                    }
                };
                match c.endpoint.handle_frame(now, &frame) {
                    Todo::Ready => {
                        ready = true;
                        if let Frame::Welcome(w) = frame {
                            conn.set_max_frame(w.max_frame);
                        }
                    }
                    Todo::Send(f) => {
                        let _ = conn.queue(&f);
                    }
                    Todo::Close => {
                        let msg = match frame {
                            Frame::Reject(r) => {
                                format!("the hub refused this process: {}", r.message)
                            }
                            _ => "closing".into(),
                        };
                        lost = Some(msg);
                    }
                    Todo::Connect | Todo::Nothing => {}
                }
                match frame {
                    Frame::Deliver(d) => self.local.receive(now, &d, &mut deferred),
                    Frame::Ack { from, to, seq } => self.local.outstanding.ack(to, from, seq),
                    Frame::DeliveryFailed(f) => deferred.failures.push((
                        f.from.to_string(),
                        f.to.to_string(),
                        f.event.to_string(),
                        f.seq,
                        f.reason,
                    )),
                    Frame::RegisterResult { machine, status } => {
                        let again = c.owned.contains(machine);
                        match status {
                            RegisterStatus::Ok => {
                                if c.held_elsewhere.remove(machine) {
                                    deferred.logs.push(format!("registered '{machine}' again"));
                                }
                                if !again {
                                    c.owned.insert(machine.to_string());
                                }
                            }
                            // The hub still holds the id for this node's previous connection
                            // (it has not noticed that it broke): ask again shortly. Messages
                            // from the id wait meanwhile, rather than fail as `not-owner`.
                            RegisterStatus::Taken if again => {
                                if c.held_elsewhere.insert(machine.to_string()) {
                                    deferred.logs.push(format!(
                                        "the hub still holds '{machine}' for another \
                                         connection; asking again until it is free"
                                    ));
                                }
                                if c.retry_register.is_none() {
                                    c.retry_register = Some((now + Duration::from_millis(50), 50));
                                }
                            }
                            _ => deferred.logs.push(format!(
                                "the hub refused to register '{machine}': {status:?}"
                            )),
                        }
                        c.pending_register.insert(machine.to_string(), Some(status));
                        c.refresh_registered();
                    }
                    Frame::RegistryEntry(e) => self.local.registry_entry(now, &e, &mut deferred),
                    Frame::RegistryRemoved { machine }
                        if !self.local.by_id.contains_key(machine) =>
                    {
                        self.local.registry_removed(now, machine, &mut deferred)
                    }
                    Frame::SnapshotEnd => {
                        c.snapshot_done = true;
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
                        self.local
                            .received
                            .departed_unless(&|m| registry.contains(m), now.as_millis());
                    }
                    Frame::Monitored { frame, .. } => {
                        if self.monitor_frames.len() < 65536 {
                            self.monitor_frames.push_back(frame.to_vec());
                        } else {
                            self.monitor_dropped += 1;
                        }
                    }
                    Frame::Goodbye { reason } => {
                        lost = Some(format!("the hub said goodbye: {reason}"))
                    }
                    _ => {}
                }
                if let Some(conn) = c.conn.as_mut() {
                    conn.consume_frame();
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

    /// The link to the hub is (again) ready: register, subscribe, send what is outstanding.
    fn on_ready(&mut self) {
        let ids: Vec<String> = self
            .local
            .machines
            .iter()
            .map(|h| h.id.clone())
            .chain(self.local.ports.keys().cloned())
            .collect();
        let now = self.now();
        self.grace_until = Some(now + RECONNECT_GRACE);
        let Side::Client(c) = &mut self.side else {
            return;
        };
        let Some(conn) = c.conn.as_mut() else { return };
        for id in &ids {
            c.pending_register.insert(id.clone(), None);
            let _ = conn.queue(&Frame::Register { machine: id });
        }
        c.all_registered = ids.is_empty();
        c.retry_register = None;
        let _ = conn.queue(&Frame::Subscribe {
            registry: true,
            monitor: c.monitor,
        });
        self.transmit();
    }

    /// Client: moves unsent messages from the outstanding buffer onto the hub link, in order,
    /// holding back (during the grace after a reconnect) those for machines not back yet.
    pub(super) fn transmit(&mut self) {
        let Side::Client(c) = &mut self.side else {
            return;
        };
        if !c.endpoint.is_ready() || !self.local.outstanding.has_unsent() {
            return;
        }
        let ClientSide {
            conn,
            pending_register,
            all_registered,
            snapshot_done,
            held_elsewhere,
            ..
        } = &mut **c;
        let Some(conn) = conn.as_mut() else { return };
        let now = self.turn_now;
        let in_grace = self.grace_until.is_some_and(|g| now < g);
        let registry = &self.local.registry;
        let synced = *snapshot_done;
        let all = *all_registered;
        let sendable = |from: &str, to: &str| {
            (!in_grace || (synced && registry.contains(to)))
                && may_send_as(all, pending_register, held_elsewhere, from)
        };
        self.local
            .outstanding
            .transmit(&sendable, &mut |body| conn.queue_body(body).is_ok());
    }

    /// Sends the acknowledgements owed for messages delivered here.
    pub(super) fn emit_acks(&mut self) {
        let now = self.turn_now;
        if !self.local.received.is_dirty() {
            self.ack_due = None;
            return;
        }
        // Acks ride on a write that happens anyway, or go out in batches, or after a short
        // delay: never one write per message.
        let piggyback = match &self.side {
            Side::Client(c) => c.conn.as_ref().is_some_and(|cn| cn.pending() > 0),
            Side::Hub(h) => h.links[..h.high]
                .iter()
                .flatten()
                .any(|l| l.conn.pending() > 0),
        };
        let due = *self.ack_due.get_or_insert(now + ACK_DELAY);
        if !piggyback && self.local.received.owed() < ACK_BATCH && now < due {
            return;
        }
        self.ack_due = None;
        match &mut self.side {
            Side::Client(c) => {
                let Some(conn) = c.conn.as_mut().filter(|_| c.endpoint.is_ready()) else {
                    return;
                };
                self.local.received.emit(&mut |receiver, sender, seq| {
                    conn.queue(&Frame::Ack {
                        from: receiver,
                        to: sender,
                        seq,
                    })
                    .is_ok()
                });
            }
            Side::Hub(h) => {
                let mut deferred = Deferred::default();
                // The receive state is taken out while the hub routes the acks (which needs
                // the rest of `local`); nothing is allocated by taking it.
                let mut received = std::mem::take(&mut self.local.received);
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
                    let mut io = HubIoImpl::new(&mut h.links, local, now, &mut deferred);
                    // A full link delays the ack; the sender keeps the message until it comes.
                    !matches!(
                        h.hub
                            .ack_local(receiver, sender, &scratch[LEN_PREFIX..n], &mut io),
                        Handled::Stalled(_)
                    )
                });
                self.local.received = received;
                self.settle(deferred);
            }
        }
    }
}

//! The hub side: the platform half of the core hub ([`HubIo`]), the hub's delivery state,
//! and reading the links ([`hub_serve`](super::hub_serve) binds the sockets and admits links).

use interstate_core::bus::policy::{AckTimer, FORGET_DEPARTED_MS, SWEEP_EVERY};
use interstate_core::hub::fair::{may_resume, Deficit, PassOrder};
use interstate_core::hub::{Handled, Hub, HubIo, LinkFull, LinkId, PeerCredentials, LOCAL_LINK};
use interstate_core::wire::{Deliver, Frame, LEN_PREFIX};
use interstate_core::Instant;
use mio::net::UnixListener;
use std::path::PathBuf;

use crate::error::PlatformError;
use crate::transport::LinkIo;

use super::local::{Deferred, Failure, Local};
use super::{
    duplicate_slots, CoreOutstanding, CoreReceived, LinkConnIo, Node, NodeConfig, Side, HUB_LINKS,
    HUB_MACHINES, HUB_WATCHES,
};

pub(super) struct LinkConn {
    pub(super) conn: LinkConnIo,
    /// More bytes may be waiting in the socket (edge-triggered readiness).
    pub(super) readable: bool,
    /// Reading is paused until this link drains (backpressure).
    pub(super) waiting_on: Option<LinkId>,
    /// The peer hung up (seen in the readiness event, before its bytes are read).
    pub(super) hung_up: bool,
    /// Since when output has waited for this link with none of it written: a receiver that
    /// reads nothing for the idle timeout is closed (it would stall its senders for ever).
    pub(super) unread_since: Option<Instant>,
    /// Who is at the other end (from the kernel), for the connection log.
    pub(super) peer: PeerCredentials,
    /// The executable its Hello named, once the hub welcomed it (and its connection was
    /// logged); `None` before.
    pub(super) executable: Option<String>,
    /// Its queue holds something besides monitor copies (which may wait a little: see
    /// [`OBSERVER_FLUSH_EVERY`]).
    pub(super) urgent: bool,
    /// When its queue was last written to the socket.
    pub(super) flushed_at: Instant,
    /// Its share of the hub's reading ([`interstate_core::hub::fair`]).
    pub(super) fair: Deficit,
}

/// Monitor copies (`Monitored`) wait in a link's queue for up to this long, or until
/// [`OBSERVER_BATCH`] bytes of them are queued, before the hub writes them: a monitor
/// (`interstate monitor`, the inspector's event log) then costs the hub one write per batch
/// instead of one per routed message, and its process one wake-up. Anything else queued for
/// the link goes at once and takes the waiting copies with it.
pub(super) const OBSERVER_FLUSH_EVERY: interstate_core::Duration =
    interstate_core::Duration::from_millis(10);
/// See [`OBSERVER_FLUSH_EVERY`].
pub(super) const OBSERVER_BATCH: usize = 32 * 1024;

/// Queues `frame` for link `l`, marking it urgent unless it is a monitor copy.
fn queue_frame(l: &mut LinkConn, frame: &Frame<'_>) -> Result<(), LinkFull> {
    if !matches!(frame, Frame::Monitored { .. }) {
        l.urgent = true;
    }
    l.conn.queue(frame)
}

impl LinkConn {
    /// The connection log's description of the peer.
    pub(super) fn who(&self) -> String {
        format!(
            "pid {}, uid {}, executable {}",
            self.peer.pid,
            self.peer.uid,
            self.executable.as_deref().unwrap_or("?")
        )
    }
}

pub(super) struct HubSide {
    /// One past the highest link slot ever used: the per-turn scans of `links` stop here
    /// instead of walking all `HUB_LINKS` slots.
    pub(super) high: usize,
    pub(super) listener: UnixListener,
    /// Where clients ask for shared-memory links (`<bus>.shm.sock`), with its path.
    pub(super) shm_listener: Option<(UnixListener, PathBuf)>,
    /// Where clients announce FIFO pairs (`<bus>.fifo`).
    pub(super) fifo: Option<crate::transport::fifo::RequestFifo>,
    pub(super) hub: Box<BusHub>,
    pub(super) links: Vec<Option<LinkConn>>,
    /// The socket file this hub created (removed on shutdown); none when socket-activated.
    pub(super) path: Option<PathBuf>,
    /// End-to-end delivery for this process's own machines.
    pub(super) delivery: HubDelivery,
    /// The bus lock, held while this process serves the bus.
    pub(super) lock: Option<super::failover::BusLock>,
    /// Set while this hub takes over from a client of a hub that went away.
    pub(super) handover: Option<super::failover::Handover>,
    /// Where the next pass over the links starts.
    pub(super) order: PassOrder,
}

/// Both ends of end-to-end delivery for the machines of the hub's own process: what they
/// sent and is not acknowledged yet, and the duplicate filter and acknowledgement timing for
/// what they receive. (A client's are inside its [`BusClient`](super::BusClient).)
pub(super) struct HubDelivery {
    pub(super) outstanding: CoreOutstanding,
    pub(super) received: CoreReceived,
    pub(super) acks: AckTimer,
    next_sweep: Instant,
}

impl HubDelivery {
    pub(super) fn new(config: &NodeConfig) -> Self {
        let (pairs, owners) = duplicate_slots(config);
        HubDelivery {
            outstanding: CoreOutstanding::new(vec![0; config.reconnect_buffer].into_boxed_slice()),
            received: CoreReceived::new(pairs, owners),
            acks: AckTimer::default(),
            next_sweep: Instant::ZERO,
        }
    }

    /// Whether [`sweep`](Self::sweep) has work at `now`.
    pub(super) fn sweep_due(&self, now: Instant) -> bool {
        now >= self.next_sweep
    }

    /// Forgets departed senders' duplicate state, once a second.
    pub(super) fn sweep(&mut self, now: Instant) {
        if now >= self.next_sweep {
            self.next_sweep = now + SWEEP_EVERY;
            self.received
                .forget_departed(now.as_millis(), FORGET_DEPARTED_MS);
        }
    }
}

/// The hub's I/O while it routes a message of this process's own machines: frames for other
/// links go onto them; a failure report for this process waits in `deferred`.
pub(super) struct ForwardIo<'a> {
    links: &'a mut Vec<Option<LinkConn>>,
    deferred: &'a mut Deferred,
    forwarded: u64,
}

impl<'a> ForwardIo<'a> {
    pub(super) fn new(links: &'a mut Vec<Option<LinkConn>>, deferred: &'a mut Deferred) -> Self {
        ForwardIo {
            links,
            deferred,
            forwarded: 0,
        }
    }

    /// Message bodies copied onto links.
    pub(super) fn forwarded(&self) -> u64 {
        self.forwarded
    }
}

impl HubIo for ForwardIo<'_> {
    fn send(&mut self, link: LinkId, frame: &Frame<'_>) -> Result<(), LinkFull> {
        if link == LOCAL_LINK {
            if let Frame::DeliveryFailed(f) = *frame {
                self.deferred.failures.push(Failure::reported(&f));
            }
            return Ok(());
        }
        match self.links.get_mut(link as usize).and_then(Option::as_mut) {
            Some(l) => queue_frame(l, frame),
            None => Ok(()),
        }
    }

    fn forward(&mut self, link: LinkId, body: &[u8]) -> Result<(), LinkFull> {
        match self.links.get_mut(link as usize).and_then(Option::as_mut) {
            Some(l) if link != LOCAL_LINK => {
                l.urgent = true;
                l.conn.queue_body(body)?;
                self.forwarded += 1;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn close(&mut self, link: LinkId, reason: &str) {
        if link != LinkId::MAX && link != LOCAL_LINK {
            self.deferred.close.push((link, reason.to_string()));
        }
    }

    fn open_direct(&mut self, pair: u32, a: LinkId, b: LinkId) -> bool {
        super::direct::open_rings(self.links, pair, a, b)
    }

    fn log(&mut self, link: LinkId, message: &str) {
        self.deferred
            .logs
            .push(format!("hub: link {link}: {message}"));
    }
}

/// `from` acknowledged what this process's `to` sent it, up to `seq`.
fn acked(local: &mut Local, delivery: &mut HubDelivery, from: &str, to: &str, seq: u64) {
    local.metrics.acked(to, from, seq);
    local.port_acked(to, from, seq);
    delivery.outstanding.ack(to, from, seq)
}

/// The platform side of the hub when this node is the hub.
pub(super) struct HubIoImpl<'a> {
    links: &'a mut Vec<Option<LinkConn>>,
    local: &'a mut Local,
    /// This process's delivery state; `None` while a caller holds it (routing
    /// acknowledgements from the duplicate filter, which concern other processes' messages).
    delivery: Option<&'a mut HubDelivery>,
    now: Instant,
    deferred: &'a mut Deferred,
    refused: Option<&'a mut dyn LinkIo>,
}

impl<'a> HubIoImpl<'a> {
    /// The hub's view of this node for a call into it (no refused connection to answer).
    pub(super) fn new(
        links: &'a mut Vec<Option<LinkConn>>,
        local: &'a mut Local,
        delivery: Option<&'a mut HubDelivery>,
        now: Instant,
        deferred: &'a mut Deferred,
    ) -> Self {
        HubIoImpl {
            links,
            local,
            delivery,
            now,
            deferred,
            refused: None,
        }
    }

    /// The same, answering a connection being admitted: a refusal is written to it.
    pub(super) fn answering(mut self, refused: &'a mut dyn LinkIo) -> Self {
        self.refused = Some(refused);
        self
    }
}

impl HubIo for HubIoImpl<'_> {
    fn send(&mut self, link: LinkId, frame: &Frame<'_>) -> Result<(), LinkFull> {
        if link == LinkId::MAX {
            if let Some(s) = self.refused.as_deref_mut() {
                let mut buf = [0u8; 512];
                if let Ok(n) = frame.encode(&mut buf) {
                    let _ = std::io::Write::write(s, &buf[..n]);
                }
            }
            return Ok(());
        }
        if link == LOCAL_LINK {
            match *frame {
                Frame::RegistryEntry(e) => {
                    if let Some(d) = self.delivery.as_deref_mut() {
                        d.received.sender_registered_as(
                            e.machine,
                            e.pid,
                            e.durable,
                            self.now.as_millis(),
                        );
                        // A durable machine whose owner came back (the hub held its id and
                        // dropped what was sent to it meanwhile): what this process sent it
                        // and did not have acknowledged goes again, in order, before
                        // anything new to it ([`super::failover::holding`]).
                        d.outstanding.rewind_to(e.machine);
                    }
                    self.local.registry_entry(self.now, &e, self.deferred)
                }
                Frame::RegistryRemoved { machine } => {
                    if let Some(d) = self.delivery.as_deref_mut() {
                        d.received.sender_departed(machine, self.now.as_millis());
                    }
                    self.local
                        .registry_removed(self.now, machine, self.deferred)
                }
                Frame::DeliveryFailed(f) => match self.delivery.as_deref_mut() {
                    // Settled now, in the order the hub reported it: a receiver that refuses a
                    // message and then acknowledges past it sends both in one read, and the
                    // acknowledgement (applied at once, below) must not settle it first.
                    Some(d) => {
                        let settled = self
                            .local
                            .settle_reported(&mut d.outstanding, Failure::reported(&f));
                        self.deferred.direct.extend(settled);
                    }
                    None => self.deferred.failures.push(Failure::reported(&f)),
                },
                Frame::Report { machine, on } => {
                    self.local.report_requested(machine, on, self.deferred)
                }
                _ => {}
            }
            return Ok(());
        }
        match self.links.get_mut(link as usize).and_then(Option::as_mut) {
            Some(l) => queue_frame(l, frame),
            None => Ok(()),
        }
    }

    fn forward(&mut self, link: LinkId, body: &[u8]) -> Result<(), LinkFull> {
        if link == LOCAL_LINK {
            let Some(delivery) = self.delivery.as_deref_mut() else {
                self.deferred.logs.push(
                    "hub: a frame for this process arrived while its delivery state was in use; \
                     dropped"
                        .into(),
                );
                return Ok(());
            };
            match Frame::decode(body) {
                Ok(Frame::Deliver(d)) => {
                    delivery.acks.delivered(body.len());
                    let received = &mut delivery.received;
                    self.local
                        .receive(self.now, &d, self.deferred, &mut |d, handed| {
                            received.accept(d.to, d.from, d.seq, handed)
                        })
                }
                Ok(Frame::Ack { from, to, seq }) => acked(self.local, delivery, from, to, seq),
                _ => {}
            }
            return Ok(());
        }
        match self.links.get_mut(link as usize).and_then(Option::as_mut) {
            Some(l) => {
                l.urgent = true;
                l.conn.queue_body(body)
            }
            None => Ok(()),
        }
    }

    fn forward_ack(
        &mut self,
        link: LinkId,
        from: &str,
        to: &str,
        seq: u64,
        body: &[u8],
    ) -> Result<(), LinkFull> {
        // For this process's own machines: the hub decoded it already.
        match self.delivery.as_deref_mut() {
            Some(delivery) if link == LOCAL_LINK => {
                acked(self.local, delivery, from, to, seq);
                Ok(())
            }
            _ => self.forward(link, body),
        }
    }

    fn forward_deliver(
        &mut self,
        link: LinkId,
        d: &Deliver<'_>,
        body: &[u8],
    ) -> Result<(), LinkFull> {
        if link != LOCAL_LINK {
            return self.forward(link, body);
        }
        // For this process's own machines: the hub decoded it already.
        let Some(delivery) = self.delivery.as_deref_mut() else {
            return self.forward(link, body);
        };
        // `body` is the frame body the hub decoded `d` from: its length is `d.body_len()`
        // without summing the fields again (about 80 instructions a message, counted).
        debug_assert_eq!(body.len(), d.body_len());
        delivery.acks.delivered(body.len());
        let received = &mut delivery.received;
        self.local
            .receive(self.now, d, self.deferred, &mut |d, handed| {
                received.accept(d.to, d.from, d.seq, handed)
            });
        Ok(())
    }

    fn close(&mut self, link: LinkId, reason: &str) {
        if link != LinkId::MAX && link != LOCAL_LINK {
            self.deferred.close.push((link, reason.to_string()));
        }
    }

    fn open_direct(&mut self, pair: u32, a: LinkId, b: LinkId) -> bool {
        super::direct::open_rings(self.links, pair, a, b)
    }

    fn stats_requested(&mut self, asker: LinkId, nodes: u32) {
        self.deferred.stats_asked.push((asker, nodes));
    }

    fn log(&mut self, link: LinkId, message: &str) {
        if link == LinkId::MAX {
            self.deferred
                .logs
                .push(format!("hub: refused a connection: {message}"));
        } else {
            self.deferred
                .logs
                .push(format!("hub: link {link}: {message}"));
        }
    }
}

impl Node {
    /// One pass over the links: each is read once, up to its quantum of bytes, starting one
    /// link further on each pass ([`interstate_core::hub::fair`]).
    pub(super) fn read_links(&mut self) -> Result<(), PlatformError> {
        let now = self.turn_now;
        let (n, start) = match &mut self.side {
            Side::Hub(h) => (h.high, h.order.next_start(h.high)),
            Side::Client(_) => return Ok(()),
        };
        for i in 0..n {
            self.read_link(PassOrder::link_at(i, n, start), now);
        }
        Ok(())
    }

    /// One link's turn in a pass (see [`read_links`](Self::read_links)).
    fn read_link(&mut self, l: usize, now: Instant) {
        // A free slot has nothing to read.
        match &self.side {
            Side::Hub(h) if matches!(h.links.get(l), Some(Some(_))) => {}
            _ => return,
        }
        let mut deferred = Deferred::default();
        'read: {
            let Side::Hub(h) = &mut self.side else {
                break 'read;
            };
            // Resume a link whose target has drained below its low-water mark.
            if let Some(Some(lc)) = h.links.get(l) {
                if let Some(t) = lc.waiting_on {
                    let drained = match h.links.get(t as usize) {
                        Some(Some(tc)) => may_resume(tc.conn.pending(), tc.conn.capacity()),
                        _ => true,
                    };
                    if drained {
                        if let Some(Some(lc)) = h.links.get_mut(l) {
                            lc.waiting_on = None;
                        }
                    } else if lc.hung_up {
                        // A stalled sender that hung up (it reconnects when its keepalive
                        // goes unanswered) is closed now, not once its unread frames get
                        // through: its ids are freed for the new connection, which sends
                        // again whatever was not acknowledged.
                        deferred
                            .close
                            .push((l as LinkId, "peer closed the connection".into()));
                        break 'read;
                    } else {
                        h.hub.link_stalled(l as LinkId, now);
                        break 'read;
                    }
                }
            }
            let Some(Some(lc)) = h.links.get_mut(l) else {
                break 'read;
            };
            if lc.readable {
                lc.conn.fill();
                lc.readable = false;
            }
            lc.fair.start_turn();
            // Frames are decoded where they were read: the link's read buffer is lent
            // out while the hub handles one, so that it can queue on any link (this one
            // too).
            let mut closing = false;
            let mut dry = false;
            while let Some(Some(lc)) = h.links.get_mut(l) {
                if !lc.fair.may_take() {
                    // Its quantum is used: the other links' turn; come back next pass.
                    lc.readable = true;
                    break;
                }
                let lent = match lc.conn.lend_frame() {
                    Ok(Some(lent)) => lent,
                    Ok(None) => {
                        // The read buffer was full: there may be more in the socket.
                        if !lc.conn.dead && lc.conn.more {
                            lc.conn.fill();
                            if matches!(lc.conn.peek_frame(), Ok(Some(_))) {
                                continue;
                            }
                        }
                        dry = true;
                        break;
                    }
                    Err(e) => {
                        deferred
                            .logs
                            .push(format!("hub: link {l}: {e}; closing it"));
                        deferred.close.push((l as LinkId, e.to_string()));
                        closing = true;
                        break;
                    }
                };
                let bytes = LEN_PREFIX + lent.body().len();
                let mut io = HubIoImpl::new(
                    &mut h.links,
                    &mut self.local,
                    Some(&mut h.delivery),
                    now,
                    &mut deferred,
                );
                let handled = h.hub.handle_frame(now, l as LinkId, lent.body(), &mut io);
                let Some(Some(lc)) = h.links.get_mut(l) else {
                    break;
                };
                lc.conn.give_back(lent, matches!(handled, Handled::Done));
                match handled {
                    Handled::Done => {
                        lc.fair.took(bytes);
                        if lc.executable.is_none() {
                            // Welcomed: the connection is logged once, with its peer.
                            if let Some(exe) = h.hub.executable(l as LinkId) {
                                lc.executable = Some(exe.to_string());
                                deferred
                                    .logs
                                    .push(format!("connections: link {l} connected: {}", lc.who()));
                            }
                        }
                    }
                    Handled::Stalled(t) => {
                        lc.waiting_on = Some(t);
                        break;
                    }
                    Handled::Closed => {
                        closing = true;
                        break;
                    }
                }
            }
            if let Some(Some(lc)) = h.links.get_mut(l) {
                lc.fair.end_turn(dry);
            }
            // The peer is gone: once its whole frames are handled, so is the link. Half a
            // frame left over is worth a log line (unless the link is already closing for
            // a reason of its own, logged once).
            if let Some(Some(lc)) = h.links.get(l).filter(|_| !closing) {
                if lc.conn.dead
                    && lc.waiting_on.is_none()
                    && !matches!(lc.conn.peek_frame(), Ok(Some(_)))
                {
                    let why = if lc.conn.has_partial() {
                        "peer closed mid-frame"
                    } else {
                        "peer closed the connection"
                    };
                    if lc.conn.has_partial() {
                        deferred.logs.push(format!("hub: link {l}: {why}"));
                    }
                    deferred.close.push((l as LinkId, why.into()));
                }
            }
        }
        self.settle(deferred);
    }
}

/// The hub's tables as the platform sizes them.
pub(super) type BusHub = Hub<HUB_LINKS, HUB_MACHINES, HUB_WATCHES, super::topics::HubSlots>;

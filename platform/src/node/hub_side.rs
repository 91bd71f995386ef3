//! The hub side: serving the bus (its sockets and request FIFO), admitting and installing
//! links, the platform half of the core hub ([`HubIo`]), and reading the links.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};

use interstate_core::bus::policy::{AckTimer, FORGET_DEPARTED_MS, SWEEP_EVERY};
use interstate_core::hub::fair::{may_resume, Deficit, PassOrder};
use interstate_core::hub::{
    Handled, Hub, HubConfig, HubIo, LinkFull, LinkId, PeerCredentials, LOCAL_LINK,
};
use interstate_core::wire::{Deliver, Frame, LEN_PREFIX};
use interstate_core::Instant;
use mio::net::UnixListener;
use mio::{Interest, Poll, Token};

use crate::conn::Conn;
use crate::error::PlatformError;
use crate::transport::shm::ShmLink;
use crate::transport::LinkIo;

use super::local::{Deferred, Failure, Local};
use super::payload::ThisProcess;
use super::{
    duplicate_slots, CoreOutstanding, CoreReceived, LinkConnIo, Node, NodeConfig, Side, Transport,
    FIFO_LISTENER, HUB_LINKS, HUB_MACHINES, HUB_WATCHES, LINK_BASE, LISTENER, SHM_LISTENER,
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
    fn new(config: &NodeConfig) -> Self {
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

/// Asks the hub to admit a new connection (by its peer's credentials); a refusal is written
/// to `stream` itself. Returns the new link's id.
fn admit(
    h: &mut HubSide,
    local: &mut Local,
    now: Instant,
    stream: &mut dyn LinkIo,
    log: &mut dyn FnMut(&str),
) -> Option<LinkId> {
    let peer = stream.peer();
    let mut deferred = Deferred::default();
    let mut io = HubIoImpl {
        links: &mut h.links,
        local,
        delivery: Some(&mut h.delivery),
        now,
        deferred: &mut deferred,
        refused: Some(stream),
    };
    let link = h.hub.link_opened(now, peer, &mut io);
    for line in deferred.logs.drain(..) {
        log(&line);
    }
    link
}

/// Puts an admitted link's stream in the event loop and the link table; if the stream could
/// not be set up or watched, the hub forgets the link.
#[allow(clippy::too_many_arguments)]
fn install(
    h: &mut HubSide,
    local: &mut Local,
    registry: &mio::Registry,
    config: &NodeConfig,
    now: Instant,
    link: LinkId,
    opened: std::io::Result<Box<dyn LinkIo>>,
    log: &mut dyn FnMut(&str),
) {
    let token = Token(LINK_BASE + link as usize);
    match opened.and_then(|mut s| s.register(registry, token, Interest::READABLE).map(|()| s)) {
        Ok(stream) => {
            h.hub.set_transport(link, stream.kind());
            let peer = stream.peer();
            h.high = h.high.max(link as usize + 1);
            h.links[link as usize] = Some(LinkConn {
                conn: Conn::new(stream, config.max_frame, config.link_queue),
                readable: true,
                waiting_on: None,
                hung_up: false,
                unread_since: None,
                peer,
                executable: None,
                urgent: false,
                flushed_at: Instant::from_millis(0),
                fair: Deficit::with_quantum(config.hub_read_quantum),
            });
        }
        Err(e) => {
            log(&format!("hub: cannot set up link {link}: {e}"));
            let mut deferred = Deferred::default();
            let mut io = HubIoImpl::new(
                &mut h.links,
                local,
                Some(&mut h.delivery),
                now,
                &mut deferred,
            );
            h.hub.link_closed(link, &mut io);
        }
    }
}

/// The shared-memory set-up socket beside a bus socket: `<bus>.shm.sock`.
pub fn shm_socket_path(bus_socket: &Path) -> PathBuf {
    let mut name = bus_socket
        .file_stem()
        .map(|s| s.to_os_string())
        .unwrap_or_default();
    name.push(".shm.sock");
    bus_socket.with_file_name(name)
}

impl Node {
    pub(super) fn serve(
        config: &NodeConfig,
        poll: &Poll,
        path: &Path,
    ) -> Result<HubSide, PlatformError> {
        // Exactly one process serves a bus: the one holding its lock (see `failover`).
        let lock = super::failover::BusLock::take(path)?;
        if let Some(fd) = &config.listen_fd {
            let mut side = Self::serve_activated(config, poll, fd)?;
            side.lock = Some(lock);
            return Ok(side);
        }
        // A live hub is never taken over; a stale socket file (connect refused) is replaced.
        match StdUnixStream::connect(path) {
            Ok(_) => return Err(PlatformError::HubRunning { path: path.into() }),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                let _ = std::fs::remove_file(path);
            }
            Err(_) => {}
        }
        let mut listener = match UnixListener::bind(path) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                return Err(PlatformError::HubRunning { path: path.into() })
            }
            Err(e) => return Err(PlatformError::io("binding the hub socket", Some(path), e)),
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|e| {
            PlatformError::io("restricting the hub socket to its owner", Some(path), e)
        })?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(|e| PlatformError::io("watching the hub socket", Some(path), e))?;
        let mut side = Self::hub_side(config, listener, Some(path.into()));
        let shm_path = shm_socket_path(path);
        let _ = std::fs::remove_file(&shm_path);
        match UnixListener::bind(&shm_path) {
            Ok(mut l) => {
                std::fs::set_permissions(&shm_path, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| {
                        PlatformError::io(
                            "restricting the shared-memory socket to its owner",
                            Some(&shm_path),
                            e,
                        )
                    })?;
                poll.registry()
                    .register(&mut l, SHM_LISTENER, Interest::READABLE)
                    .map_err(|e| {
                        PlatformError::io("watching the shared-memory socket", Some(&shm_path), e)
                    })?;
                side.shm_listener = Some((l, shm_path));
                let mut fifo =
                    crate::transport::fifo::RequestFifo::create(&config.dir, &config.bus).map_err(
                        |e| {
                            PlatformError::io(
                                "creating the request FIFO",
                                Some(&crate::transport::fifo::request_path(
                                    &config.dir,
                                    &config.bus,
                                )),
                                e,
                            )
                        },
                    )?;
                fifo.register(poll.registry(), FIFO_LISTENER).map_err(|e| {
                    PlatformError::io("watching the request FIFO", Some(fifo.path()), e)
                })?;
                side.fifo = Some(fifo);
            }
            Err(e) => {
                return Err(PlatformError::io(
                    "binding the shared-memory socket",
                    Some(&shm_path),
                    e,
                ))
            }
        }
        side.lock = Some(lock);
        Ok(side)
    }

    /// Serves on a listening socket handed over by the service manager (socket activation):
    /// nothing is bound, and the socket file is the manager's, not removed on exit.
    fn serve_activated(
        config: &NodeConfig,
        poll: &Poll,
        fd: &std::sync::Arc<std::os::fd::OwnedFd>,
    ) -> Result<HubSide, PlatformError> {
        let owned = fd
            .try_clone()
            .map_err(|e| PlatformError::io("duplicating the activated socket", None, e))?;
        let std_listener = std::os::unix::net::UnixListener::from(owned);
        std_listener
            .set_nonblocking(true)
            .map_err(|e| PlatformError::io("making the activated socket non-blocking", None, e))?;
        let mut listener = UnixListener::from_std(std_listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(|e| PlatformError::io("watching the activated socket", None, e))?;
        Ok(Self::hub_side(config, listener, None))
    }

    fn hub_side(config: &NodeConfig, listener: UnixListener, path: Option<PathBuf>) -> HubSide {
        let me = ThisProcess::current();
        let mut hc = HubConfig::new(me.uid, me.pid);
        hc.max_frame = config.max_frame;
        hc.machines_per_link = config.machines_per_link;
        hc.idle_timeout = config.idle_timeout;
        hc.durable_hold = config.durable_hold;
        hc.epoch_unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        for &u in &config.allowed_uids {
            let _ = hc.allowed_uids.push(u);
        }
        for &g in &config.allowed_gids {
            let _ = hc.allowed_gids.push(g);
        }
        let mut links = Vec::new();
        links.resize_with(HUB_LINKS, || None);
        HubSide {
            high: 1,
            listener,
            shm_listener: None,
            fifo: None,
            hub: boxed_hub(hc, me.executable.clone()),
            links,
            path,
            delivery: HubDelivery::new(config),
            lock: None,
            handover: None,
            order: PassOrder::default(),
        }
    }

    /// Accepts every pending connection on the bus socket (`shm` false) or on the
    /// shared-memory set-up socket (`shm` true).
    pub(super) fn accept(&mut self, shm: bool) -> Result<(), PlatformError> {
        let now = self.now();
        let ring = match self.config.transport {
            Transport::SharedMemory { ring, .. } => ring,
            Transport::UnixSocket | Transport::Fifo => crate::transport::shm::DEFAULT_RING,
        };
        let Side::Hub(h) = &mut self.side else {
            return Ok(());
        };
        loop {
            let listener = match (shm, &h.shm_listener) {
                (false, _) => &h.listener,
                (true, Some((l, _))) => l,
                (true, None) => return Ok(()),
            };
            let mut stream = match listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    (self.log)(&format!("hub: accept failed: {e}"));
                    return Ok(());
                }
            };
            // Admission first, on the kernel's word about the peer; a refusal goes back on
            // the socket itself, before any shared memory is handed out.
            let peer = stream.peer();
            let Some(link) = admit(h, &mut self.local, now, &mut stream, &mut *self.log) else {
                continue;
            };
            let opened: std::io::Result<Box<dyn LinkIo>> = if shm {
                ShmLink::accept(stream, ring, peer).map(|l| Box::new(l) as Box<dyn LinkIo>)
            } else {
                Ok(Box::new(stream))
            };
            install(
                h,
                &mut self.local,
                self.poll.registry(),
                &self.config,
                now,
                link,
                opened,
                &mut *self.log,
            );
        }
    }

    /// Opens the FIFO pairs announced on the request FIFO, admitting their owners as the
    /// socket links' peers are admitted.
    pub(super) fn accept_fifo(&mut self) {
        let now = self.now();
        let Side::Hub(h) = &mut self.side else { return };
        let lines = match h.fifo.as_mut() {
            Some(fifo) => fifo.lines(),
            None => return,
        };
        for line in lines {
            let mut link_io = match crate::transport::fifo::FifoLink::accept(
                &self.config.dir,
                &self.config.bus,
                &line,
            ) {
                Ok(l) => l,
                Err(e) => {
                    (self.log)(&format!("hub: {e}"));
                    continue;
                }
            };
            let Some(link) = admit(h, &mut self.local, now, &mut link_io, &mut *self.log) else {
                continue;
            };
            install(
                h,
                &mut self.local,
                self.poll.registry(),
                &self.config,
                now,
                link,
                Ok(Box::new(link_io)),
                &mut *self.log,
            );
        }
    }

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
type BusHub = Hub<HUB_LINKS, HUB_MACHINES, HUB_WATCHES, super::topics::HubSlots>;

/// The hub, built where a large value cannot overflow the caller's stack. The hub is a few
/// hundred kilobytes of fixed-size tables (links, registry, watches, held ids), and an
/// unoptimised build copies a value that size several times on the stack between `Hub::new`
/// and the heap: enough to overflow a thread's 2 MiB stack (a hub served from a spawned
/// thread, every test thread). Building it on a short-lived thread with a stack sized for it
/// keeps the caller's stack out of it, with no `unsafe`; it happens once, when the hub starts.
fn boxed_hub(hc: HubConfig, executable: String) -> Box<BusHub> {
    const BUILD_STACK: usize = 64 << 20;
    let (config, name) = (hc.clone(), executable.clone());
    let built = std::thread::Builder::new()
        .name("interstate-hub-init".into())
        .stack_size(BUILD_STACK)
        .spawn(move || Box::new(Hub::new(config, &name)));
    match built {
        Ok(handle) => match handle.join() {
            Ok(hub) => hub,
            Err(panic) => std::panic::resume_unwind(panic),
        },
        // No thread to spare (a process at its thread limit): built here, as before.
        Err(_) => Box::new(Hub::new(hc, &executable)),
    }
}

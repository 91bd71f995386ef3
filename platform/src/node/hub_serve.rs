//! Serving the bus: binding its sockets and request FIFO (or taking an activated socket),
//! building the hub, and accepting, admitting and installing new links.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};

use interstate_core::hub::fair::{Deficit, PassOrder};
use interstate_core::hub::{Hub, HubConfig, LinkId};
use interstate_core::Instant;
use mio::net::UnixListener;
use mio::{Interest, Poll, Token};

use crate::conn::Conn;
use crate::error::PlatformError;
use crate::transport::shm::ShmLink;
use crate::transport::LinkIo;

use super::hub_side::BusHub;
use super::hub_side::{HubDelivery, HubIoImpl, HubSide, LinkConn};
use super::local::{Deferred, Local};
use super::payload::ThisProcess;
use super::{
    Node, NodeConfig, Side, Transport, FIFO_LISTENER, HUB_LINKS, LINK_BASE, LISTENER, SHM_LISTENER,
};

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
    let mut io = HubIoImpl::new(
        &mut h.links,
        local,
        Some(&mut h.delivery),
        now,
        &mut deferred,
    )
    .answering(stream);
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
}

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

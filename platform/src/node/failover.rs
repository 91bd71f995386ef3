//! Failover of the auto role: the bus lock that makes exactly one process serve a bus, and
//! the takeover that turns an auto-role client whose hub died into the hub, in place.
//!
//! **The lock.** `<bus>.lock` in the bus directory, locked with an exclusive `flock` by the
//! process that serves the bus, for as long as it serves (the kernel releases it when the
//! process dies, however it dies). It is taken before a stale socket is removed and the new
//! one bound, at start-up (hub and auto roles, socket activation included) and at a takeover,
//! so two processes can never both serve: the second finds the lock held and is refused
//! (`HubRunning`), or, in the auto role, stays a client. The file holds the serving process's
//! pid (for the takeover's log line and for people). An orderly hub removes it on shutdown,
//! while it still holds the lock; a killed one leaves it, as it leaves its socket. Whoever
//! locks the file checks that it is still the one at the path (not one removed meanwhile) and
//! starts again if not, so two processes never hold locks on two different files.
//!
//! **The takeover.** When an auto-role client's reconnect attempt fails and the bus's socket
//! says nobody serves (refused, or gone: [`may_take_over`]), it tries to serve. If it gets
//! the lock and binds, its node becomes the hub without losing anything: its machines and
//! ports stay and are registered with the new hub; the core client's outstanding buffer
//! (messages to other processes not yet acknowledged) and duplicate filter move into the hub
//! side's own delivery state ([`HubDelivery`]); its registry copy is rebuilt as the other
//! clients reconnect. The messages it holds wait, as a reconnecting client's do, up to the
//! reconnect grace for their targets to register again; then they are routed, and those whose
//! target did not come back fail visibly (`unknown-target`). Messages sent meanwhile queue
//! behind them, so the order per target holds.
//!
//! [`HubDelivery`]: super::hub_side::HubDelivery

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};

use interstate_core::bus::policy::{may_take_over, Grace, HubProbe};
use interstate_core::hub::Handled;
use interstate_core::wire::Frame;
use interstate_core::Instant;

use crate::error::PlatformError;

use super::hub_side::{ForwardIo, HubIoImpl, HubSide};
use super::local::Deferred;
use super::{Node, Role, Side};

/// The lock file beside a bus socket: `<bus>.lock`.
fn lock_path(bus_socket: &Path) -> PathBuf {
    let mut name = bus_socket
        .file_stem()
        .map(|s| s.to_os_string())
        .unwrap_or_default();
    name.push(".lock");
    bus_socket.with_file_name(name)
}

/// The bus lock, held by the process that serves the bus for as long as it serves.
pub(super) struct BusLock {
    _file: File,
    path: PathBuf,
    /// The pid the file named before this process took the lock: the previous hub's.
    pub(super) previous: Option<u32>,
    /// The file was removed (on shutdown): the lock is held until this is dropped.
    removed: bool,
}

impl BusLock {
    /// Takes the lock of the bus whose socket is `bus_socket`, without waiting: a lock
    /// another process holds is `HubRunning` (that process serves the bus, or is about to).
    pub(super) fn take(bus_socket: &Path) -> Result<BusLock, PlatformError> {
        let path = lock_path(bus_socket);
        let mut tries = 0;
        let mut file = loop {
            let file = Self::lock_file(bus_socket, &path)?;
            // Removed (by a hub shutting down) between the open and the lock: the file at
            // the path is the one that counts.
            let at_path = std::fs::metadata(&path).ok();
            let locked = file.metadata().ok();
            if let (Some(a), Some(b)) = (at_path, locked) {
                if (a.dev(), a.ino()) == (b.dev(), b.ino()) {
                    break file;
                }
            }
            tries += 1;
            if tries >= 16 {
                // Someone keeps replacing it: that someone is serving, or about to.
                return Err(PlatformError::HubRunning {
                    path: bus_socket.into(),
                });
            }
        };
        let mut text = String::new();
        let _ = file.read_to_string(&mut text);
        let previous = text.trim().parse::<u32>().ok();
        // The pid of the process that serves now, for the next takeover's log and for people.
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = writeln!(file, "{}", std::process::id());
        Ok(BusLock {
            _file: file,
            path,
            previous,
            removed: false,
        })
    }

    /// Removes the lock file, once, while the lock is still held (an orderly shutdown leaves
    /// nothing behind). The lock itself is released when this is dropped.
    pub(super) fn remove(&mut self) {
        if !self.removed {
            self.removed = true;
            let _ = std::fs::remove_file(&self.path);
        }
    }

    /// Whether [`remove`](Self::remove) ran (the hub shut down).
    pub(super) fn removed(&self) -> bool {
        self.removed
    }

    /// Opens (creating it) and locks the file at `path`, without waiting.
    fn lock_file(bus_socket: &Path, path: &Path) -> Result<File, PlatformError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| PlatformError::io("opening the bus lock", Some(path), e))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                return Err(PlatformError::HubRunning {
                    path: bus_socket.into(),
                })
            }
            Err(e) => {
                return Err(PlatformError::io(
                    "locking the bus",
                    Some(path),
                    std::io::Error::from(e),
                ))
            }
        }
        Ok(file)
    }
}

/// What connecting to the bus's socket finds now.
fn probe(bus_socket: &Path) -> HubProbe {
    match StdUnixStream::connect(bus_socket) {
        Ok(_) => HubProbe::Live,
        Err(e) => match e.kind() {
            std::io::ErrorKind::ConnectionRefused => HubProbe::Refused,
            std::io::ErrorKind::NotFound => HubProbe::Missing,
            _ => HubProbe::Unknown,
        },
    }
}

/// The hub side's state while it hands over from a client's: the grace during which its
/// own process's messages wait for their targets to register with it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Handover {
    grace: Grace,
}

impl Handover {
    fn new(now: Instant) -> Self {
        let mut grace = Grace::default();
        grace.reconnected(now);
        Handover { grace }
    }
}

/// Whether the hub's own process is handing over from a takeover: a new message to another
/// process then waits in the outstanding buffer, behind those held, for its target to come
/// back (as a reconnecting client's does), and [`Node::transmit_handed_over`] routes it.
///
/// Also while messages wait to be sent again to a durable machine that came back (the
/// hub dropped them while it held the machine's id): a new one to it must not pass them.
pub(super) fn holding(h: &HubSide) -> bool {
    h.handover.is_some() || h.delivery.outstanding.has_unsent()
}

impl Node {
    /// When the handover after a takeover next has work: the end of its grace.
    pub(super) fn handover_deadline(&self) -> Option<Instant> {
        match &self.side {
            Side::Hub(h) => h.handover?.grace.poll_timeout(self.turn_now),
            Side::Client(_) => None,
        }
    }

    /// A connection attempt to the hub failed: an auto-role process whose hub is gone tries
    /// to serve the bus itself. Losing the race (the lock is held) leaves it a client that
    /// keeps reconnecting, to the winner.
    pub(super) fn hub_gone(&mut self) -> Result<(), PlatformError> {
        let path = self.config.socket_path();
        let may_serve = self.config.role == Role::Auto;
        if !matches!(self.side, Side::Client(_))
            || !may_serve
            || !may_take_over(may_serve, probe(&path))
        {
            return Ok(());
        }
        let mut h = match Self::serve(&self.config, &self.poll, &path) {
            Ok(h) => h,
            // Another process serves the bus, or is about to: reconnect to it.
            Err(PlatformError::HubRunning { .. }) => return Ok(()),
            Err(e) => {
                (self.log)(&format!("cannot serve bus {}: {e}", self.config.bus));
                return Ok(());
            }
        };
        let now = self.now();
        let Side::Client(c) = &mut self.side else {
            return Ok(());
        };
        // What this process sent and was not acknowledged, and what it has received (the
        // duplicate filter), become the hub side's own delivery state.
        std::mem::swap(&mut h.delivery.outstanding, c.client.outstanding_mut());
        std::mem::swap(&mut h.delivery.received, c.client.received_mut());
        h.delivery.outstanding.rewind();
        h.handover = Some(Handover::new(now));
        // The hub this process knew, else the last one the lock file names.
        let previous = c.hub_pid.or(h.lock.as_ref().and_then(|l| l.previous));
        // Its machines' subscriptions are held by the new hub, this process.
        let subscriptions: Vec<(String, String)> = c
            .topics
            .mine()
            .map(|(m, f)| (m.to_string(), f.to_string()))
            .collect();
        self.side = Side::Hub(Box::new(h));
        // The registry copy starts from this process's own ids; the others come back as
        // their processes reconnect.
        self.local.registry.clear();
        let ids: Vec<String> = self
            .local
            .machines
            .iter()
            .map(|m| m.id.clone())
            .chain(self.local.ports.keys().cloned())
            .collect();
        let mut deferred = Deferred::default();
        if let Side::Hub(h) = &mut self.side {
            for id in &ids {
                let mut io = HubIoImpl::new(
                    &mut h.links,
                    &mut self.local,
                    Some(&mut h.delivery),
                    now,
                    &mut deferred,
                );
                if h.hub.register_local(now, id, &mut io)
                    != interstate_core::wire::RegisterStatus::Ok
                {
                    deferred
                        .logs
                        .push(format!("could not register '{id}' with the new hub"));
                }
            }
            for (machine, filter) in &subscriptions {
                let mut io = HubIoImpl::new(
                    &mut h.links,
                    &mut self.local,
                    Some(&mut h.delivery),
                    now,
                    &mut deferred,
                );
                h.hub.subscribe_local(machine, filter, &mut io);
            }
        }
        let previous = previous.map_or_else(|| "unknown".to_string(), |p| p.to_string());
        (self.log)(&format!(
            "serving bus {} after its hub (pid {previous}) went away",
            self.config.bus
        ));
        self.settle(deferred);
        self.transmit();
        Ok(())
    }

    /// The hub's own process after a takeover: routes the messages it held, in order,
    /// those whose targets are registered again at once, the rest at the end of the grace
    /// (where the hub fails those whose target did not come back). Then the handover is
    /// over: watched machines that did not come back are down, and senders that did not
    /// come back have departed (for the duplicate filter).
    pub(super) fn transmit_handed_over(&mut self) {
        let now = self.turn_now;
        let Side::Hub(h) = &mut self.side else {
            return;
        };
        // Without a handover: messages rewound for a durable machine that came back.
        let handover = h.handover;
        if handover.is_none() && !h.delivery.outstanding.has_unsent() {
            return;
        }
        let in_grace = handover.is_some_and(|h| h.grace.in_grace(now));
        let mut deferred = Deferred::default();
        let mut forwarded = 0;
        if h.delivery.outstanding.has_unsent() {
            let HubSide {
                hub,
                links,
                delivery,
                ..
            } = &mut **h;
            let registry = &self.local.registry;
            delivery.outstanding.transmit(
                &mut |_, to| !in_grace || registry.contains(to),
                &mut |body| {
                    let Ok(Frame::Deliver(d)) = Frame::decode(body) else {
                        // Never written so: nothing to route (it goes as if sent).
                        return true;
                    };
                    let mut io = ForwardIo::new(links, &mut deferred);
                    let handled = hub.deliver_local(now, d, body, &mut io);
                    forwarded += io.forwarded();
                    !matches!(handled, Handled::Stalled(_))
                },
            );
        }
        self.local.stats.payload_copies += forwarded;
        if handover.is_some() && !in_grace {
            if let Side::Hub(h) = &mut self.side {
                if !h.delivery.outstanding.has_unsent() {
                    h.handover = None;
                    let registry = &self.local.registry;
                    h.delivery
                        .received
                        .departed_unless(&|m| registry.contains(m), now.as_millis());
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
                }
            }
        }
        self.settle(deferred);
    }
}

//! Shared-memory links: two single-producer single-consumer rings in a memfd, one per
//! direction, mapped by both processes; eventfds for wake-ups; the Unix socket they were set up
//! over stays open only to tell each side when the other is gone.
//!
//! Setting up: a client connects to the bus's shared-memory socket (`<bus>.shm.sock`). The hub
//! accepts, creates a memfd holding both rings, seals its size (so the client can rely on it
//! and the hub cannot shrink it under the client: no `SIGBUS`), creates one eventfd per side,
//! and passes the three descriptors over the socket with `SCM_RIGHTS`, with a short header:
//! `ISHM`, the ring capacity (u32 LE). From then on frames travel through the rings; nothing
//! but the setup ever touches `/dev/shm` or the file system, so nothing is left behind after
//! any crash: the memory goes away with the last process mapping it.
//!
//! The client checks everything it was given (magic, capacity, the memfd's size and seals)
//! before mapping it; the ring itself checks every position it reads (see [`super::ring`]).
//!
//! Direct peer rings (two clients' own pair, see `docs/architecture.md`) are made the same
//! way by the hub ([`DirectRegion`]) and passed to each client over its link's control socket
//! (`ISDR`, the capacity, the pair's number and the side, with the memfd and both eventfds),
//! just before the hub's `DirectOffer` frame; the client keeps such messages as its link reads
//! them ([`ShmLink::take_direct`]). A direct link has no control socket: the hub tells each
//! side when the other is gone.

use std::fs::File;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::Duration as StdDuration;

use interstate_core::hub::PeerCredentials;
use interstate_core::TransportKind;
use memmap2::MmapMut;
use mio::net::UnixStream;
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use rustix::event::{eventfd, EventfdFlags};
use rustix::fs::{
    fcntl_add_seals, fcntl_get_seals, fstat, ftruncate, memfd_create, MemfdFlags, SealFlags,
};
use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

use super::ring::{Ring, HEADER};
use super::{LinkIo, UNKNOWN_PEER};

/// The default capacity of each ring (per direction).
pub const DEFAULT_RING: usize = 1 << 20;
/// The largest ring capacity a client accepts.
pub const MAX_RING: usize = 1 << 28;
const MAGIC: &[u8; 4] = b"ISHM";
const DIRECT_MAGIC: &[u8; 4] = b"ISDR";
/// Bytes of a direct pair's setup message: magic, capacity, pair, side (u32 LE each).
const DIRECT_HEADER: usize = 16;
/// Direct setup messages a link keeps for offers not read yet (older ones are dropped: their
/// offers were withdrawn).
const DIRECT_KEPT: usize = 8;

/// How a consumer waits for data.
///
/// A spinning node does not spin against a peer on its own CPU (each side says in the ring
/// which CPU it waits on): there the spin would only hold off the data it waits for, so
/// `SpinThenPark` parks at once and `BusySpin` yields the CPU at every look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitStrategy {
    /// Never sleep: poll the rings until the loop's timeout. Lowest latency, one busy core.
    BusySpin,
    /// Poll the rings for up to this long, then sleep until signalled. The spin adapts
    /// between a sixteenth of this and all of it: spins that find nothing halve it, spins
    /// (or short sleeps) that end with input double it.
    SpinThenPark(StdDuration),
    /// Sleep at once until signalled.
    Park,
}

/// One side of a shared-memory link.
pub struct ShmLink {
    /// Keeps the rings mapped; both `Ring`s point into it.
    _map: MmapMut,
    tx: Ring,
    rx: Ring,
    /// Signalled by the peer when it wrote to `rx` while we slept, or freed space in `tx`.
    wake_me: OwnedFd,
    /// Signals the peer.
    wake_peer: OwnedFd,
    /// The socket the link was set up over: its end-of-file is the peer's death. A direct
    /// link has none (the hub tells it when the other side is gone).
    control: Option<UnixStream>,
    /// Direct pairs' setup messages the hub passed over `control`: (pair, header, fds).
    direct_setups: Vec<(u32, [u8; DIRECT_HEADER], Vec<OwnedFd>)>,
    peer: PeerCredentials,
    /// This side asked to be signalled (it advertised sleep, or waited for space) since it
    /// last drained its eventfd: only then is there anything to drain.
    armed: bool,
    /// This side set the ring's "waiting for space" flag and has not cleared it yet.
    waiting_for_space: bool,
}

/// The CPU this thread runs on, if the system says (for the choice between spinning and
/// parking: see [`WaitStrategy`]).
pub fn current_cpu() -> Option<u32> {
    // SAFETY: `sched_getcpu` takes no arguments and touches no memory of ours; it returns
    // the CPU number or -1.
    let cpu = unsafe { libc::sched_getcpu() };
    u32::try_from(cpu).ok()
}

fn corrupt(c: super::ring::Corrupt) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, c.to_string())
}

fn region_len(capacity: usize) -> usize {
    2 * (HEADER + capacity)
}

fn map(memfd: OwnedFd, len: usize) -> io::Result<MmapMut> {
    let file = File::from(memfd);
    // SAFETY: the memfd is sealed against shrinking (checked by the caller on the receiving
    // side, set by us on the creating side), so the mapping cannot lose its backing pages and
    // fault; concurrent writes by the peer are expected and handled by the ring's protocol,
    // which copies bytes out before inspecting them.
    unsafe { memmap2::MmapOptions::new().len(len).map_mut(&file) }
}

/// The two rings in a mapping: (ring written by the client, ring written by the hub).
/// A sealed memfd of two rings of `capacity` (rounded to a power of two within bounds), mapped,
/// both rings initialized: (the memfd, its mapping, the capacity taken).
fn sealed_region(name: &str, capacity: usize) -> io::Result<(OwnedFd, MmapMut, usize)> {
    let capacity = capacity.next_power_of_two().clamp(4096, MAX_RING);
    let len = region_len(capacity);
    let memfd = memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
    ftruncate(&memfd, len as u64)?;
    fcntl_add_seals(
        &memfd,
        SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL,
    )?;
    let mut map = map(memfd.try_clone()?, len)?;
    let (mut first, mut second) = rings(&mut map, capacity);
    first.init();
    second.init();
    Ok((memfd, map, capacity))
}

fn rings(map: &mut MmapMut, capacity: usize) -> (Ring, Ring) {
    let base = map.as_mut_ptr();
    // SAFETY: the mapping holds `region_len(capacity)` bytes, page-aligned, and lives as long
    // as the `ShmLink` that owns both it and the rings; each process uses one ring as the
    // producer and the other as the consumer.
    unsafe {
        (
            Ring::new(base, capacity),
            Ring::new(base.add(HEADER + capacity), capacity),
        )
    }
}

fn signal(fd: &OwnedFd) {
    // An eventfd counter only overflows after 2^64 - 2 signals; a full counter (EAGAIN) still
    // wakes the reader, so the error is harmless.
    let _ = rustix::io::write(fd, &1u64.to_ne_bytes());
}

fn drain(fd: &OwnedFd) {
    let mut buf = [0u8; 8];
    let _ = rustix::io::read(fd, &mut buf);
}

impl ShmLink {
    /// Hub side: sets up a link over a just-accepted connection on the shared-memory socket.
    pub fn accept(
        control: UnixStream,
        capacity: usize,
        peer: PeerCredentials,
    ) -> io::Result<ShmLink> {
        // The rings are set up before the client can see them: a client that maps them and
        // writes its hello at once must find them ready (initializing after handing them over
        // could wipe that hello).
        let (memfd, mut map, capacity) = sealed_region("interstate-link", capacity)?;
        let (c2h, h2c) = rings(&mut map, capacity);
        let hub_wake = eventfd(0, EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC)?;
        let client_wake = eventfd(0, EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC)?;
        let mut header = [0u8; 8];
        header[..4].copy_from_slice(MAGIC);
        header[4..].copy_from_slice(&(capacity as u32).to_le_bytes());
        let fds = [memfd.as_fd(), client_wake.as_fd(), hub_wake.as_fd()];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(3))];
        let mut cmsg = SendAncillaryBuffer::new(&mut space);
        cmsg.push(SendAncillaryMessage::ScmRights(&fds));
        let sent = sendmsg(
            &control,
            &[IoSlice::new(&header)],
            &mut cmsg,
            SendFlags::NOSIGNAL,
        )?;
        if sent != header.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "shared-memory setup message cut short",
            ));
        }
        Ok(ShmLink {
            _map: map,
            tx: h2c,
            rx: c2h,
            wake_me: hub_wake,
            wake_peer: client_wake,
            control: Some(control),
            direct_setups: Vec::new(),
            peer,
            armed: false,
            waiting_for_space: false,
        })
    }

    /// Client side: connects to the bus's shared-memory socket and maps what the hub sends.
    pub fn connect(path: &Path, timeout: StdDuration) -> io::Result<ShmLink> {
        let control = std::os::unix::net::UnixStream::connect(path)?;
        control.set_read_timeout(Some(timeout))?;
        let peer = match rustix::net::sockopt::socket_peercred(&control) {
            Ok(c) => PeerCredentials {
                pid: c.pid.as_raw_nonzero().get() as u32,
                uid: c.uid.as_raw(),
                gid: c.gid.as_raw(),
            },
            Err(_) => UNKNOWN_PEER,
        };
        let mut header = [0u8; 8];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(3))];
        let mut cmsg = RecvAncillaryBuffer::new(&mut space);
        let got = recvmsg(
            &control,
            &mut [IoSliceMut::new(&mut header)],
            &mut cmsg,
            RecvFlags::CMSG_CLOEXEC,
        )?;
        let mut fds: Vec<OwnedFd> = Vec::new();
        for msg in cmsg.drain() {
            if let RecvAncillaryMessage::ScmRights(rights) = msg {
                fds.extend(rights);
            }
        }
        let bad = |why: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("shared-memory setup refused: {why}"),
            )
        };
        if got.bytes != 8 || &header[..4] != MAGIC {
            return Err(bad(
                "not an interstate shared-memory hub (the hub may have refused this user)",
            ));
        }
        let capacity = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        if !capacity.is_power_of_two() || !(4096..=MAX_RING).contains(&capacity) {
            return Err(bad("ring capacity out of range"));
        }
        let [memfd, my_wake, hub_wake]: [OwnedFd; 3] = fds
            .try_into()
            .map_err(|_| bad("expected three descriptors"))?;
        let len = region_len(capacity);
        let st = fstat(&memfd)?;
        if st.st_size as u64 != len as u64 {
            return Err(bad("the memory region has the wrong size"));
        }
        let seals = fcntl_get_seals(&memfd)?;
        if !seals.contains(SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL) {
            return Err(bad("the memory region is not sealed against resizing"));
        }
        let mut map = map(memfd, len)?;
        let (c2h, h2c) = rings(&mut map, capacity);
        control.set_nonblocking(true)?;
        Ok(ShmLink {
            _map: map,
            tx: c2h,
            rx: h2c,
            wake_me: my_wake,
            wake_peer: hub_wake,
            control: Some(UnixStream::from_std(control)),
            direct_setups: Vec::new(),
            peer,
            armed: false,
            waiting_for_space: false,
        })
    }

    /// Reads one message from the control socket.
    fn receive_control(&mut self) -> io::Result<Control> {
        let Some(control) = self.control.as_ref() else {
            return Ok(Control::Nothing);
        };
        let mut header = [0u8; DIRECT_HEADER];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(3))];
        let mut cmsg = RecvAncillaryBuffer::new(&mut space);
        let got = match recvmsg(
            control,
            &mut [IoSliceMut::new(&mut header)],
            &mut cmsg,
            RecvFlags::CMSG_CLOEXEC | RecvFlags::DONTWAIT,
        ) {
            Ok(got) => got,
            Err(e) if e == rustix::io::Errno::AGAIN => return Ok(Control::Nothing),
            Err(e) if e == rustix::io::Errno::INTR => return Ok(Control::Nothing),
            Err(e) => return Err(e.into()),
        };
        let mut fds: Vec<OwnedFd> = Vec::new();
        for msg in cmsg.drain() {
            if let RecvAncillaryMessage::ScmRights(rights) = msg {
                fds.extend(rights);
            }
        }
        if got.bytes == 0 && fds.is_empty() {
            return Ok(Control::Closed);
        }
        if got.bytes != DIRECT_HEADER || &header[..4] != DIRECT_MAGIC || fds.len() != 3 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "unexpected bytes on the shared-memory control socket",
            ));
        }
        let pair = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
        if self.direct_setups.len() >= DIRECT_KEPT {
            self.direct_setups.remove(0);
        }
        self.direct_setups.push((pair, header, fds));
        Ok(Control::Setup)
    }

    /// Client: the rings of direct pair `pair`, which the hub passed over this link's
    /// control socket before its offer, as a link to process `peer_pid` (whose credentials
    /// the hub checked when it admitted it: it has this link's user).
    pub fn take_direct(&mut self, pair: u32, peer_pid: u32) -> io::Result<ShmLink> {
        let bad = |why: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("direct ring setup refused: {why}"),
            )
        };
        loop {
            if let Some(i) = self.direct_setups.iter().position(|s| s.0 == pair) {
                let (_, header, fds) = self.direct_setups.remove(i);
                let peer = PeerCredentials {
                    pid: peer_pid,
                    ..self.peer
                };
                return ShmLink::direct(&header, fds, peer);
            }
            match self.receive_control()? {
                Control::Setup => continue,
                Control::Nothing | Control::Closed => {
                    return Err(bad("the hub passed no rings for this pair"))
                }
            }
        }
    }

    /// Maps a direct pair's rings from their setup message.
    fn direct(
        header: &[u8; DIRECT_HEADER],
        fds: Vec<OwnedFd>,
        peer: PeerCredentials,
    ) -> io::Result<ShmLink> {
        let bad = |why: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("direct ring setup refused: {why}"),
            )
        };
        let word = |i: usize| {
            u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]) as usize
        };
        let (capacity, side) = (word(4), word(12));
        if !capacity.is_power_of_two() || !(4096..=MAX_RING).contains(&capacity) || side > 1 {
            return Err(bad("ring capacity or side out of range"));
        }
        let [memfd, wake_a, wake_b]: [OwnedFd; 3] = fds
            .try_into()
            .map_err(|_| bad("expected three descriptors"))?;
        let len = region_len(capacity);
        if fstat(&memfd)?.st_size as u64 != len as u64 {
            return Err(bad("the memory region has the wrong size"));
        }
        if !fcntl_get_seals(&memfd)?.contains(SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)
        {
            return Err(bad("the memory region is not sealed against resizing"));
        }
        let mut map = map(memfd, len)?;
        // Side 0 writes the first ring and reads the second; side 1 the other way round.
        let (first, second) = rings(&mut map, capacity);
        let (tx, rx, wake_me, wake_peer) = if side == 0 {
            (first, second, wake_a, wake_b)
        } else {
            (second, first, wake_b, wake_a)
        };
        Ok(ShmLink {
            _map: map,
            tx,
            rx,
            wake_me,
            wake_peer,
            control: None,
            direct_setups: Vec::new(),
            peer,
            armed: false,
            waiting_for_space: false,
        })
    }

    /// Whether bytes are waiting to be read (without blocking or syscalls).
    pub fn ready(&self) -> bool {
        self.rx.available().map(|n| n > 0).unwrap_or(true)
    }
}

/// What a read of the control socket found.
enum Control {
    /// Nothing waiting.
    Nothing,
    /// End-of-file: the peer is gone.
    Closed,
    /// A direct pair's setup message, kept.
    Setup,
}

/// A direct pair's rings as the hub makes them: a sealed memfd holding two rings, and one
/// eventfd per side. `DirectRegion::pass` hands one side its descriptors; the hub keeps
/// nothing mapped afterwards.
pub struct DirectRegion {
    memfd: OwnedFd,
    wake: [OwnedFd; 2],
    capacity: usize,
}

impl DirectRegion {
    /// Makes the region and initializes both rings (before either side can see them).
    pub fn new(capacity: usize) -> io::Result<DirectRegion> {
        let (memfd, map, capacity) = sealed_region("interstate-direct", capacity)?;
        drop(map);
        let wake = [
            eventfd(0, EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC)?,
            eventfd(0, EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC)?,
        ];
        Ok(DirectRegion {
            memfd,
            wake,
            capacity,
        })
    }

    /// Sends side `side` (0 or 1) of pair `pair` its descriptors over `control`.
    fn pass(&self, control: &UnixStream, pair: u32, side: u32) -> io::Result<()> {
        let mut header = [0u8; DIRECT_HEADER];
        header[..4].copy_from_slice(DIRECT_MAGIC);
        header[4..8].copy_from_slice(&(self.capacity as u32).to_le_bytes());
        header[8..12].copy_from_slice(&pair.to_le_bytes());
        header[12..16].copy_from_slice(&side.to_le_bytes());
        let fds = [
            self.memfd.as_fd(),
            self.wake[0].as_fd(),
            self.wake[1].as_fd(),
        ];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(3))];
        let mut cmsg = SendAncillaryBuffer::new(&mut space);
        cmsg.push(SendAncillaryMessage::ScmRights(&fds));
        let sent = sendmsg(
            control,
            &[IoSlice::new(&header)],
            &mut cmsg,
            SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
        )?;
        if sent != header.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "direct ring setup message cut short",
            ));
        }
        Ok(())
    }
}

impl Read for ShmLink {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Only a side that asked to be signalled has a flag to clear and a counter to drain:
        // the common case costs no system call.
        if self.armed {
            self.armed = false;
            self.rx.wake_up();
            drain(&self.wake_me);
        }
        let n = self.rx.pop(buf).map_err(corrupt)?;
        if n > 0 {
            if self.rx.producer_waiting() {
                signal(&self.wake_peer);
            }
            return Ok(n);
        }
        // Nothing in the ring: is the peer still there? (The hub may also have passed a
        // direct pair's rings: kept for its offer.)
        if self.control.is_none() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        loop {
            match self.receive_control()? {
                Control::Closed => return Ok(0),
                Control::Nothing => return Err(io::ErrorKind::WouldBlock.into()),
                Control::Setup => continue,
            }
        }
    }
}

impl Write for ShmLink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut n = self.tx.push(buf).map_err(corrupt)?;
        if n == 0 && !buf.is_empty() {
            // Full: ask to be woken when the consumer makes room, then look once more.
            self.armed = true;
            self.waiting_for_space = true;
            if !self.tx.prepare_wait_for_space().map_err(corrupt)? {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            n = self.tx.push(buf).map_err(corrupt)?;
        }
        if n > 0 && self.waiting_for_space {
            self.waiting_for_space = false;
            self.tx.space_wait_over();
        }
        if n > 0 && self.tx.consumer_sleeping() {
            signal(&self.wake_peer);
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl LinkIo for ShmLink {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        let _ = interest;
        use std::os::fd::AsRawFd;
        registry.register(
            &mut SourceFd(&self.wake_me.as_raw_fd()),
            token,
            Interest::READABLE,
        )?;
        match self.control.as_mut() {
            Some(control) => registry.register(control, token, Interest::READABLE),
            None => Ok(()),
        }
    }
    fn reregister(
        &mut self,
        _registry: &Registry,
        _token: Token,
        _interest: Interest,
    ) -> io::Result<()> {
        // Space in the ring is signalled on the same eventfd as data: readable covers both.
        Ok(())
    }
    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        registry.deregister(&mut SourceFd(&self.wake_me.as_raw_fd()))?;
        match self.control.as_mut() {
            Some(control) => registry.deregister(control),
            None => Ok(()),
        }
    }
    fn peer(&self) -> PeerCredentials {
        self.peer
    }
    fn kind(&self) -> TransportKind {
        TransportKind::SharedMemory
    }
    fn prepare_wait(&mut self) -> bool {
        // Data that arrived after the last read, or a corrupted ring (reading reports it).
        self.armed = true;
        self.rx.prepare_sleep().unwrap_or(true)
    }
    fn ready_now(&self) -> bool {
        self.ready()
    }
    fn input_watch(&self) -> Option<crate::transport::ring::InputWatch<'_>> {
        Some(self.rx.input_watch())
    }
    fn publish_cpu(&mut self, cpu: Option<u32>) {
        self.tx.publish_cpu(cpu);
    }
    fn peer_cpu(&self) -> Option<u32> {
        self.rx.producer_cpu()
    }
    fn writable_now(&self) -> bool {
        self.tx.free().map(|n| n > 0).unwrap_or(true)
    }
    fn pass_direct(&mut self, region: &DirectRegion, pair: u32, side: u32) -> io::Result<()> {
        match self.control.as_ref() {
            Some(control) => region.pass(control, pair, side),
            None => Err(io::ErrorKind::Unsupported.into()),
        }
    }
    fn take_direct(&mut self, pair: u32, peer_pid: u32) -> io::Result<Box<dyn LinkIo>> {
        ShmLink::take_direct(self, pair, peer_pid).map(|l| Box::new(l) as Box<dyn LinkIo>)
    }
    fn stage(&mut self, parts: &[&[u8]]) -> io::Result<bool> {
        self.tx.stage(parts).map_err(corrupt)
    }
    fn publish(&mut self) -> io::Result<()> {
        if self.tx.publish() && self.tx.consumer_sleeping() {
            signal(&self.wake_peer);
        }
        Ok(())
    }
}

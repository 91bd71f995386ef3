//! Transports: the byte streams a link runs over.
//!
//! A node speaks the same frames over every transport; a transport only has to move bytes
//! without blocking and tell the event loop when it can. [`LinkIo`] is that contract:
//! `Read` + `Write` (returning `WouldBlock` instead of blocking), registration with mio, and
//! the peer's credentials as the kernel (or the transport's own checks) report them.

use std::io::{self, Read, Write};

use interstate_core::hub::PeerCredentials;
use mio::{Interest, Registry, Token};

pub mod fifo;
pub mod ring;
pub mod shm;
pub mod unix;

/// A non-blocking byte stream a link runs over.
pub trait LinkIo: Read + Write {
    /// Registers the stream's descriptors with the event loop under `token`.
    fn register(&mut self, registry: &Registry, token: Token, interest: Interest)
        -> io::Result<()>;
    /// Changes the interest (the node watches write readiness only while a flush is blocked).
    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()>;
    /// Removes the stream's descriptors from the event loop.
    fn deregister(&mut self, registry: &Registry) -> io::Result<()>;
    /// Who is at the other end. Unknown credentials must be reported as uid and gid
    /// `u32::MAX` (nobody's), so that admission refuses them.
    fn peer(&self) -> PeerCredentials;
    /// The transport's name, for the registry and logs.
    fn kind(&self) -> interstate_core::TransportKind;
    /// About to block in the event loop: transports that are not file descriptors (shared
    /// memory) ask to be signalled here. Returns true when input is already waiting.
    fn prepare_wait(&mut self) -> bool {
        false
    }
    /// Whether input is waiting right now, checked without a system call (for spinning).
    fn ready_now(&self) -> bool {
        false
    }
    /// For spinning: a look at the input that costs no call through the trait object
    /// (shared memory: the ring's producer position), valid until the next read. `None`:
    /// the loop calls [`LinkIo::ready_now`] instead.
    fn input_watch(&self) -> Option<ring::InputWatch<'_>> {
        None
    }
    /// Says which CPU this side waits on (shared memory: for the peer's choice between
    /// spinning and parking; see [`ring`]).
    fn publish_cpu(&mut self, cpu: Option<u32>) {
        let _ = cpu;
    }
    /// The CPU the peer last said it waits on, if the transport tells.
    fn peer_cpu(&self) -> Option<u32> {
        None
    }
    /// Whether output could be written right now, checked without a system call (a spinning
    /// loop with queued output watches this as well as input).
    fn writable_now(&self) -> bool {
        false
    }
    /// Hub, shared memory: passes side `side` of direct pair `pair`'s rings to the peer over
    /// the link's control socket (see [`shm`]). Other transports cannot.
    fn pass_direct(&mut self, region: &shm::DirectRegion, pair: u32, side: u32) -> io::Result<()> {
        let _ = (region, pair, side);
        Err(io::ErrorKind::Unsupported.into())
    }
    /// Client, shared memory: the rings of direct pair `pair` that the hub passed over this
    /// link, as a link to process `peer_pid`. Other transports have none.
    fn take_direct(&mut self, pair: u32, peer_pid: u32) -> io::Result<Box<dyn LinkIo>> {
        let _ = (pair, peer_pid);
        Err(io::ErrorKind::Unsupported.into())
    }
    /// Writes `parts` where the peer reads them, all or nothing, without showing them yet
    /// (shared memory: straight into the ring); [`publish`](Self::publish) shows them.
    /// Returns false when there is no room for all of them, or no such place (the default:
    /// sockets and pipes batch in the connection's write buffer instead).
    fn stage(&mut self, parts: &[&[u8]]) -> io::Result<bool> {
        let _ = parts;
        Ok(false)
    }
    /// Shows the peer what was staged, waking it if it sleeps.
    fn publish(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Credentials that admit no one.
pub const UNKNOWN_PEER: PeerCredentials = PeerCredentials {
    pid: 0,
    uid: u32::MAX,
    gid: u32::MAX,
};

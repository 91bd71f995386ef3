//! Unix domain stream sockets: the default transport. The kernel vouches for the peer
//! (`SO_PEERCRED`).

use std::io;

use interstate_core::hub::PeerCredentials;
use interstate_core::TransportKind;
use mio::net::UnixStream;
use mio::{Interest, Registry, Token};

use super::{LinkIo, UNKNOWN_PEER};

impl LinkIo for UnixStream {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        registry.register(self, token, interest)
    }
    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        registry.reregister(self, token, interest)
    }
    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        registry.deregister(self)
    }
    fn peer(&self) -> PeerCredentials {
        match rustix::net::sockopt::socket_peercred(self) {
            Ok(c) => PeerCredentials {
                pid: c.pid.as_raw_nonzero().get() as u32,
                uid: c.uid.as_raw(),
                gid: c.gid.as_raw(),
            },
            Err(_) => UNKNOWN_PEER,
        }
    }
    fn kind(&self) -> TransportKind {
        TransportKind::UnixSocket
    }
}

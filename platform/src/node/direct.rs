//! Direct peer rings in a node: the platform half of the core's rules
//! ([`interstate_core::bus::direct`], the hub's in `interstate_core::hub`). The hub's process
//! makes a pair's rings and passes them to both clients over their links' control sockets;
//! a client maps them when the offer comes, reads them once the other side switched over, and
//! writes the other process's machines' messages to them. What to do when is the core's.

use interstate_core::bus::client::DirectSink;
use interstate_core::bus::{Incoming, MAX_DIRECT_PAIRS};
use interstate_core::hub::LinkId;
use interstate_core::wire::Frame;
use mio::{Interest, Token};

use crate::conn::Conn;
use crate::transport::shm::{DirectRegion, DEFAULT_RING};

use super::client_side::{ClientSide, Sink};
use super::hub_side::LinkConn;
use super::local::Deferred;
use super::{LinkConnIo, Node, NodeConfig, Side};

/// Tokens of a client's direct rings: `DIRECT_TOKEN_BASE + slot`.
pub(super) const DIRECT_TOKEN_BASE: usize = 8;

/// How many direct pairs a node takes by default (over shared memory; none otherwise).
pub const DEFAULT_DIRECT_PAIRS: usize = 4;

/// One pair's rings as a client holds them.
pub(super) struct DirectRing {
    pub(super) conn: LinkConnIo,
    /// More may be waiting (a wake-up came, or the other side just switched over).
    pub(super) readable: bool,
}

/// A client's pairs, by the core client's slots.
pub(super) type DirectRings = [Option<DirectRing>; MAX_DIRECT_PAIRS];

/// Hub: makes the rings of `pair` and passes them to links `a` (side 0) and `b` (side 1).
pub(super) fn open_rings(links: &mut [Option<LinkConn>], pair: u32, a: LinkId, b: LinkId) -> bool {
    let region = match DirectRegion::new(DEFAULT_RING) {
        Ok(r) => r,
        Err(_) => return false,
    };
    for (link, side) in [(a, 0), (b, 1)] {
        let Some(l) = links.get_mut(link as usize).and_then(Option::as_mut) else {
            return false;
        };
        if l.conn.stream.pass_direct(&region, pair, side).is_err() {
            return false;
        }
    }
    true
}

/// Messages the core client routes to a pair go onto that pair's ring.
pub(super) struct RingSink<'a> {
    pub(super) rings: &'a mut DirectRings,
    pub(super) copies: &'a mut u64,
}

impl DirectSink for RingSink<'_> {
    fn send_body(&mut self, slot: usize, body: &[u8]) -> bool {
        let sent = self
            .rings
            .get_mut(slot)
            .and_then(Option::as_mut)
            .is_some_and(|r| r.conn.queue_body(body).is_ok());
        if sent {
            *self.copies += 1;
        }
        sent
    }
    fn has_pending(&self) -> bool {
        self.rings.iter().flatten().any(|r| r.conn.pending() > 0)
    }
}

impl Node {
    /// Client: the hub offered `pair` with process `peer_pid`: maps the rings it passed and
    /// switches over, or tells the hub it cannot.
    pub(super) fn take_direct_offer(
        c: &mut ClientSide,
        registry: &mio::Registry,
        config: &NodeConfig,
        copies: &mut u64,
        pair: u32,
        peer_pid: u32,
        log: &mut dyn FnMut(&str),
    ) {
        let taken = match c.conn.as_mut() {
            Some(conn) => conn.stream.take_direct(pair, peer_pid),
            None => return,
        };
        let mut sink = Sink::new(c.conn.as_mut(), copies);
        let mut stream = match taken {
            Ok(s) => s,
            Err(e) => {
                log(&format!("direct ring with process {peer_pid} refused: {e}"));
                c.client.direct_refused(pair, &mut sink);
                return;
            }
        };
        let Some(slot) = c.client.direct().slot_of(pair).or_else(|| {
            // The slot the client will give it: the first free one.
            (0..MAX_DIRECT_PAIRS).find(|&k| c.client.direct().get(k).is_none())
        }) else {
            c.client.direct_refused(pair, &mut sink);
            return;
        };
        let token = Token(DIRECT_TOKEN_BASE + slot);
        if let Err(e) = stream.register(registry, token, Interest::READABLE) {
            log(&format!(
                "direct ring with process {peer_pid} not watched: {e}"
            ));
            c.client.direct_refused(pair, &mut sink);
            return;
        }
        match c.client.direct_mapped(pair, peer_pid, &mut sink) {
            Some(k) if k == slot => {
                c.direct[slot] = Some(DirectRing {
                    conn: Conn::new(stream, config.max_frame, config.link_queue),
                    readable: false,
                });
            }
            Some(k) => {
                // (The core gives the first free slot, as assumed above.)
                let _ = stream.deregister(registry);
                c.client.close_direct(k, &mut sink);
            }
            None => {
                let _ = stream.deregister(registry);
            }
        }
    }

    /// Client: drops the rings in `slot` (the pair closed), unread bytes and all.
    pub(super) fn drop_direct(c: &mut ClientSide, registry: &mio::Registry, slot: usize) {
        if let Some(mut r) = c.direct.get_mut(slot).and_then(Option::take) {
            let _ = r.conn.stream.deregister(registry);
        }
    }

    /// Client: reads every readable ring of a pair whose other side switched over.
    pub(super) fn read_direct(&mut self) {
        let now = self.turn_now;
        let mut deferred = Deferred::default();
        let Side::Client(c) = &mut self.side else {
            return;
        };
        for slot in 0..MAX_DIRECT_PAIRS {
            if !c.client.direct().readable(slot) {
                continue;
            }
            let Some(ring) = c.direct[slot].as_mut().filter(|r| r.readable) else {
                continue;
            };
            ring.readable = false;
            ring.conn.fill();
            let mut budget = 8192;
            let mut closed = false;
            while budget > 0 && !closed {
                budget -= 1;
                let Some(ring) = c.direct[slot].as_mut() else {
                    break;
                };
                let body_len = match ring.conn.peek_frame() {
                    Ok(Some(b)) => {
                        self.scratch[..b.len()].copy_from_slice(b);
                        b.len()
                    }
                    Ok(None) => {
                        if ring.conn.more {
                            ring.conn.fill();
                            if matches!(ring.conn.peek_frame(), Ok(Some(_))) {
                                continue;
                            }
                        }
                        break;
                    }
                    Err(_) => {
                        // A length past the largest frame: the ring cannot be read on.
                        let mut sink =
                            Sink::new(c.conn.as_mut(), &mut self.local.stats.payload_copies);
                        c.client.close_direct(slot, &mut sink);
                        deferred
                            .logs
                            .push("closed a direct ring: a frame longer than allowed".into());
                        Self::drop_direct(c, self.poll.registry(), slot);
                        break;
                    }
                };
                ring.conn.consume_frame();
                let frame = match Frame::decode(&self.scratch[..body_len]) {
                    Ok(f) => f,
                    // Undecodable: the core closes the pair on what a ring may not carry,
                    // and a ping stands for it.
                    Err(_) => Frame::Ping { nonce: 0 },
                };
                if let Frame::Ack { from, to, seq } = frame {
                    self.local.metrics.acked(to, from, seq);
                    self.local.port_acked(to, from, seq);
                }
                let local = &mut self.local;
                let mut sink = Sink::new(c.conn.as_mut(), &mut local.stats.payload_copies);
                let registry = &local.registry;
                let (by_id, ports) = (&local.by_id, &local.ports);
                let incoming = c.client.handle_direct_frame(
                    slot,
                    frame,
                    &|id| registry.owner_of(id).map(|o| o.0),
                    &|id| by_id.contains_key(id) || ports.contains_key(id),
                    &mut sink,
                );
                match incoming {
                    Incoming::Deliver(d) => {
                        local.receive(now, &d, &mut deferred, &mut |d, handed| {
                            c.client.accept(d, handed)
                        });
                    }
                    Incoming::DirectClosed { why, peer_pid, .. } => {
                        if let Some(why) = why {
                            deferred.logs.push(format!(
                                "closed the direct ring with process {peer_pid}: {why}"
                            ));
                        }
                        Self::drop_direct(c, self.poll.registry(), slot);
                        closed = true;
                    }
                    _ => {}
                }
            }
            if budget == 0 {
                if let Some(r) = c.direct[slot].as_mut() {
                    r.readable = true;
                }
            }
        }
        self.settle(deferred);
    }
}

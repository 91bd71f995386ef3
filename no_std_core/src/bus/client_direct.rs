//! The client's calls for direct peer rings (the rules are in [`crate::bus::direct`]).

use super::{Client, FrameSink, Incoming};
use crate::bus::direct::DirectPeers;
use crate::bus::received::{OwnerSlot, PairSlot};
use crate::wire::Frame;

impl<B, P, O, const R: usize> Client<B, P, O, R>
where
    B: AsRef<[u8]> + AsMut<[u8]>,
    P: AsRef<[PairSlot]> + AsMut<[PairSlot]>,
    O: AsRef<[OwnerSlot]> + AsMut<[OwnerSlot]>,
{
    /// How many direct pairs this process takes (0, the default: none). Said to the hub on
    /// every connection; set it before connecting.
    pub fn set_direct_pairs(&mut self, pairs: usize) {
        self.direct.set_allowed(pairs);
    }

    /// The direct pairs this process holds.
    pub fn direct(&self) -> &DirectPeers {
        &self.direct
    }

    pub(super) fn direct_offered<'f>(
        &mut self,
        pair: u32,
        peer_pid: u32,
        sink: &mut dyn FrameSink,
    ) -> Incoming<'f> {
        if self.direct.may_take(pair, peer_pid) {
            Incoming::DirectOffer { pair, peer_pid }
        } else {
            self.send_direct_close(pair, sink);
            Incoming::Nothing
        }
    }

    pub(super) fn direct_closed_by_hub<'f>(&mut self, pair: u32) -> Incoming<'f> {
        match self.direct.closed(pair) {
            Some((slot, peer)) => {
                self.outstanding.rewind_direct(slot);
                Incoming::DirectClosed {
                    slot,
                    peer_pid: peer.peer_pid,
                    why: None,
                }
            }
            None => Incoming::Nothing,
        }
    }

    /// The host mapped the rings of an offered pair: from now on messages to `peer_pid`'s
    /// machines go through them (after the [`Frame::DirectOpen`] this queues on the hub's
    /// link, behind every message sent that way before). Returns the pair's slot, or `None`
    /// when it may not be taken after all (the hub is told; drop the rings).
    pub fn direct_mapped(
        &mut self,
        pair: u32,
        peer_pid: u32,
        sink: &mut dyn FrameSink,
    ) -> Option<usize> {
        if !self.endpoint.is_ready() {
            return None;
        }
        let Some(slot) = self.direct.opened(pair, peer_pid) else {
            self.send_direct_close(pair, sink);
            return None;
        };
        if !sink.send_frame(&Frame::DirectOpen { pair }) {
            // Without its DirectOpen the other side would never read the ring.
            self.direct.closed(pair);
            self.send_direct_close(pair, sink);
            return None;
        }
        Some(slot)
    }

    /// The host could not map the rings of an offered pair: the hub is told.
    pub fn direct_refused(&mut self, pair: u32, sink: &mut dyn FrameSink) {
        self.send_direct_close(pair, sink);
    }

    /// This side closes the pair in `slot` (its ring failed, or carried what it may not):
    /// what was written to it and not acknowledged goes again through the hub, and the hub
    /// is told. Returns the other process, `None` for a free slot. Drop the rings.
    pub fn close_direct(&mut self, slot: usize, sink: &mut dyn FrameSink) -> Option<u32> {
        let peer = self.direct.get(slot)?;
        self.direct.closed(peer.pair);
        self.outstanding.rewind_direct(slot);
        self.send_direct_close(peer.pair, sink);
        Some(peer.peer_pid)
    }

    /// A frame read from the ring of pair `slot` (call only once it is readable:
    /// [`Incoming::DirectReadable`]). A message comes back as [`Incoming::Deliver`] (then
    /// [`Client::accept`] it as any other), an acknowledgement is taken here. Anything a ring
    /// may not carry closes the pair ([`Incoming::DirectClosed`] with the reason).
    /// `owner_pid(id)`: the process the host's registry copy shows `id` on; `hosts(id)`:
    /// whether this process hosts `id`.
    pub fn handle_direct_frame<'f>(
        &mut self,
        slot: usize,
        frame: Frame<'f>,
        owner_pid: &dyn Fn(&str) -> Option<u32>,
        hosts: &dyn Fn(&str) -> bool,
        sink: &mut dyn FrameSink,
    ) -> Incoming<'f> {
        if let Err(why) = self.direct.check(slot, &frame, owner_pid, hosts) {
            return match self.close_direct(slot, sink) {
                Some(peer_pid) => Incoming::DirectClosed {
                    slot,
                    peer_pid,
                    why: Some(why),
                },
                None => Incoming::Nothing,
            };
        }
        match frame {
            Frame::Deliver(d) => Incoming::Deliver(d),
            Frame::Ack { from, to, seq } => {
                self.outstanding.ack(to, from, seq);
                Incoming::Nothing
            }
            // (`check` lets nothing else through.)
            _ => Incoming::Nothing,
        }
    }

    fn send_direct_close(&mut self, pair: u32, sink: &mut dyn FrameSink) {
        if !sink.send_frame(&Frame::DirectClose { pair }) {
            // Sent before anything else is transmitted; a full table means the link is
            // lost soon (every pair closes with it).
            let _ = self.direct_closes.push(pair);
        }
    }
}

//! The client's acknowledgements of what it received: when they go out is the policy's
//! ([`crate::bus::policy::AckTimer`]), where they go (the hub's link or a direct pair's
//! ring) is decided here.

use super::{Client, DirectSink, FrameSink};
use crate::bus::received::{OwnerSlot, PairSlot};
use crate::time::Instant;
use crate::wire::{Frame, LEN_PREFIX};

impl<B, P, O, const R: usize> Client<B, P, O, R>
where
    B: AsRef<[u8]> + AsMut<[u8]>,
    P: AsRef<[PairSlot]> + AsMut<[PairSlot]>,
    O: AsRef<[OwnerSlot]> + AsMut<[OwnerSlot]>,
{
    /// Sends the acknowledgements owed, when the policy says they are due.
    pub fn emit_acks(&mut self, now: Instant, sink: &mut dyn FrameSink) {
        self.emit_acks_via(now, &|_| None, sink, None, false);
    }

    /// As [`Client::emit_acks`], with the acknowledgements to the machines of a process this
    /// one holds a direct pair with written to that pair's ring (they ride on its replies).
    /// `owner_pid(id)`: the process the host's registry copy shows `id` on.
    pub fn emit_acks_direct(
        &mut self,
        now: Instant,
        owner_pid: &dyn Fn(&str) -> Option<u32>,
        sink: &mut dyn FrameSink,
        rings: &mut dyn DirectSink,
    ) {
        self.emit_acks_via(now, owner_pid, sink, Some(rings), false);
    }

    /// Sends every acknowledgement owed now, whatever the policy, on the hub's link: before
    /// the process goes (or one of its ids leaves the bus), so that what it was delivered is
    /// not reported failed to its senders. The rule: no frame announcing that an id leaves
    /// (`Unregister`, `Stopped`, the `Goodbye` or the link's close) goes before the
    /// acknowledgements owed for what the id took. On the hub's link even for the other side
    /// of a direct pair: the departure travels there, and the hub forwards both in the order
    /// it read them, while an acknowledgement on the ring could be read after the hub's
    /// `RegistryRemoved` (and the messages failed as `target-gone`).
    pub fn emit_acks_now(&mut self, now: Instant, sink: &mut dyn FrameSink) {
        self.emit_acks_via(now, &|_| None, sink, None, true);
    }

    fn emit_acks_via(
        &mut self,
        now: Instant,
        owner_pid: &dyn Fn(&str) -> Option<u32>,
        sink: &mut dyn FrameSink,
        mut rings: Option<&mut dyn DirectSink>,
        now_anyway: bool,
    ) {
        let dirty = self.received.is_dirty();
        // Forced: owed as if a whole batch were (the timer is reset all the same).
        let owed = if now_anyway {
            usize::MAX
        } else {
            self.received.owed()
        };
        let pending = sink.has_pending() || rings.as_ref().is_some_and(|r| r.has_pending());
        if !self.acks.should_emit(now, dirty, owed, pending) {
            return;
        }
        if !self.endpoint.is_ready() {
            return;
        }
        let direct = &self.direct;
        self.received.emit(&mut |receiver, sender, seq| {
            let ack = Frame::Ack {
                from: receiver,
                to: sender,
                seq,
            };
            let way = match rings.as_deref_mut() {
                Some(r) if direct.any() => direct.route(owner_pid(sender)).map(|k| (k, r)),
                _ => None,
            };
            match way {
                Some((k, r)) => {
                    // Two ids and a sequence number: well within this.
                    let mut buf = [0u8; 2 * crate::hub::MAX_ID + 32];
                    match ack.encode(&mut buf) {
                        Ok(n) => r.send_body(k, &buf[LEN_PREFIX..n]),
                        Err(_) => sink.send_frame(&ack),
                    }
                }
                None => sink.send_frame(&ack),
            }
        });
    }
}

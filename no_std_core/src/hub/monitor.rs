//! Copies for monitoring links (`Subscribe { monitor: true }`): every routed `Deliver`,
//! every `DeliveryFailed` the hub reports, and every `NodeFailure` a node reports (a failure
//! it found itself), as `Monitored` frames. Lossy by design: a copy a monitor has no room
//! for is dropped and counted.

use super::{Hub, HubIo, LinkId, LinkState, LOCAL_LINK};
use crate::topic::SubscriptionSlots;
use crate::wire::{DeliveryFailed, Frame};

/// The largest failure report copied to monitors (its ids and event name included).
const FAILURE_COPY: usize = 512;

impl<const L: usize, const M: usize, const W: usize, T: SubscriptionSlots> Hub<L, M, W, T> {
    /// Copies a frame body that came from (or was answered to) `link` to every monitor.
    pub(super) fn copy_to_monitors(&mut self, link: LinkId, body: &[u8], io: &mut dyn HubIo) {
        let at_ms = self.config.epoch_unix_ms + self.now.as_millis();
        // This runs for every routed message: the scan stops at the last monitor instead
        // of walking every link slot.
        let mut left = self.monitors;
        for i in 0..L {
            if left == 0 {
                break;
            }
            if !self.links[i].monitor {
                continue;
            }
            left -= 1;
            if self.links[i].state != LinkState::Ready {
                continue;
            }
            // A copy larger than the monitor accepts (with its envelope) is dropped and counted.
            let fits = body.len() + 32 <= self.links[i].max_frame as usize;
            let copy = Frame::Monitored {
                link,
                at_ms,
                frame: body,
            };
            if !fits || io.send(i as LinkId, &copy).is_err() {
                self.stats.monitor_dropped += 1;
            }
        }
    }

    /// Copies a failure report sent to `link` to every monitor.
    pub(super) fn copy_failure_to_monitors(
        &mut self,
        link: LinkId,
        f: &DeliveryFailed<'_>,
        io: &mut dyn HubIo,
    ) {
        self.copy_frame_to_monitors(link, &Frame::DeliveryFailed(*f), io);
    }

    fn copy_frame_to_monitors(&mut self, link: LinkId, frame: &Frame<'_>, io: &mut dyn HubIo) {
        let mut buf = [0u8; FAILURE_COPY];
        match frame.encode(&mut buf) {
            Ok(n) => self.copy_to_monitors(link, &buf[crate::wire::LEN_PREFIX..n], io),
            Err(_) => self.stats.monitor_dropped += 1,
        }
    }

    /// A `NodeFailure` from `link` (its body `body`). From the link that owns the failed
    /// message's sender, it is a failure that node found itself: copied to the monitors,
    /// if any. From the link that owns its *receiver* (and not its sender), it is the
    /// receiver refusing a message it had taken: a bridge whose remote machine did not
    /// get it (`docs/internode.md`). The hub reports it to the sender's link as its own
    /// `DeliveryFailed` (with the pair held until the sender confirms, as for any report).
    /// Any other is counted as spoofed and dropped.
    pub(super) fn node_failure(
        &mut self,
        link: LinkId,
        f: &DeliveryFailed<'_>,
        body: &[u8],
        io: &mut dyn HubIo,
    ) -> super::Handled {
        let sender = self.lookup(f.from).map(|r| r.link);
        if sender == Some(link) {
            if self.monitors > 0 {
                self.copy_to_monitors(link, body, io);
            }
            return super::Handled::Done;
        }
        let receiver = self.lookup(f.to).map(|r| r.link);
        match (receiver, sender) {
            (Some(r), Some(s)) if r == link => {
                let d = crate::wire::Deliver {
                    from: f.from,
                    to: f.to,
                    event: f.event,
                    payload: &[],
                    seq: f.seq,
                    correlation: crate::wire::Correlation::None,
                };
                match self.fail_with(s, &d, f.reason, f.detail, io) {
                    // The sender's queue is full: the refusal waits (the receiver's link is
                    // not read meanwhile), as a Deliver would.
                    super::Handled::Stalled(l) => super::Handled::Stalled(l),
                    _ => super::Handled::Done,
                }
            }
            // A refusal for a sender that left the bus: no one to tell.
            (Some(r), None) if r == link => super::Handled::Done,
            _ => {
                self.stats.spoofed += 1;
                super::Handled::Done
            }
        }
    }

    /// A machine of the hub's own process (a bridge's port) refuses a message it had taken:
    /// as a `NodeFailure` from the receiver's link (see `node_failure`).
    pub fn refused_by_local(
        &mut self,
        f: &DeliveryFailed<'_>,
        io: &mut dyn HubIo,
    ) -> super::Handled {
        let Some(sender) = self.lookup(f.from).map(|r| r.link) else {
            return super::Handled::Done;
        };
        let d = crate::wire::Deliver {
            from: f.from,
            to: f.to,
            event: f.event,
            seq: f.seq,
            payload: &[],
            correlation: crate::wire::Correlation::None,
        };
        self.fail_with(sender, &d, f.reason, f.detail, io)
    }

    /// Whether any link monitors the bus: a node hosting the hub reports the failures it
    /// finds itself ([`Hub::node_failure_local`]) only then.
    pub fn monitored(&self) -> bool {
        self.monitors > 0
    }

    /// A message of a machine of the hub's own process failed in this process (as if link 0
    /// had sent `NodeFailure`): copied to the monitors, if any.
    pub fn node_failure_local(&mut self, f: &DeliveryFailed<'_>, io: &mut dyn HubIo) {
        if self.monitors > 0 {
            self.copy_frame_to_monitors(LOCAL_LINK, &Frame::NodeFailure(*f), io);
        }
    }
}

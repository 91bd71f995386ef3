//! Failure reports (DeliveryFailed) to a message's sender, and the hold that follows one:
//! the pair's later messages from that link fail too until the client confirms, by
//! answering a Ping queued after the report, that it read it.

use heapless::String;

use super::unconfirmed::pair_hash;
use super::{Handled, Hub, HubIo, LinkFull, LinkId, LOCAL_LINK};
use crate::time::Instant;
use crate::topic::SubscriptionSlots;
use crate::wire::{Deliver, DeliveryFailed, FailReason, Frame, MAX_STOP_ERROR};

impl<const L: usize, const M: usize, const W: usize, T: SubscriptionSlots> Hub<L, M, W, T> {
    pub(super) fn fail(
        &mut self,
        link: LinkId,
        d: &Deliver<'_>,
        reason: FailReason,
        io: &mut dyn HubIo,
    ) -> Handled {
        // A stopped target's report says what stopped it (copied: the report outlives
        // calls that change the hub).
        let mut detail: String<MAX_STOP_ERROR> = String::new();
        if reason == FailReason::TargetStopped {
            if let Some(error) = self.stop_error(d.to) {
                let _ = detail.push_str(error);
            }
        }
        self.fail_with(link, d, reason, &detail, io)
    }

    /// Reports `d` failed to `link` (the sender's) with `reason` and `detail`, and holds
    /// the pair's later messages on that link until the client confirms reading it.
    pub(super) fn fail_with(
        &mut self,
        link: LinkId,
        d: &Deliver<'_>,
        reason: FailReason,
        detail: &str,
        io: &mut dyn HubIo,
    ) -> Handled {
        let f = DeliveryFailed {
            from: d.from,
            to: d.to,
            event: d.event,
            seq: d.seq,
            reason,
            detail,
        };
        match io.send(link, &Frame::DeliveryFailed(f)) {
            Ok(()) => {
                self.count_failed(link, reason);
                if self.monitors > 0 {
                    self.copy_failure_to_monitors(link, &f, io);
                }
                if link != LOCAL_LINK {
                    self.hold(self.now, link, d.from, d.to, reason, io);
                }
                Handled::Done
            }
            Err(LinkFull) => Handled::Stalled(link),
        }
    }

    /// A failure of the pair (`from`, `to`) was reported on `link`: its later messages from
    /// the link fail too until the client confirms it read the report.
    pub(super) fn hold(
        &mut self,
        now: Instant,
        link: LinkId,
        from: &str,
        to: &str,
        reason: FailReason,
        io: &mut dyn HubIo,
    ) {
        let u = &mut self.links[link as usize].unconfirmed;
        let h = pair_hash(from, to);
        if u.all.is_none()
            && !u.pairs.iter().any(|p| p.0 == h)
            && u.pairs.push((h, reason)).is_err()
        {
            u.all = Some(reason);
        }
        u.reported += 1;
        if u.pinged.is_none() {
            self.ask_confirmation(now, link, io);
        }
        self.link_deadline_changed(link);
    }

    /// Queues a Ping after the failure reports on `link`: its Pong confirms the client read
    /// them (a client reads and answers in order).
    pub(super) fn ask_confirmation(&mut self, now: Instant, link: LinkId, io: &mut dyn HubIo) {
        let u = &mut self.links[link as usize].unconfirmed;
        let nonce = u.reported;
        if io.send(link, &Frame::Ping { nonce }).is_ok() {
            u.pinged = Some((nonce, now));
        }
        // Asked again at `now` + ASK_AGAIN, or at once if the Ping found no room.
        self.link_deadline_changed(link);
    }

    /// A Pong from `link`: when it answers a Ping queued after the last failure report, the
    /// client has read every report, and the pairs they held are released.
    pub(super) fn confirmed(&mut self, now: Instant, link: LinkId, nonce: u64, io: &mut dyn HubIo) {
        let u = &mut self.links[link as usize].unconfirmed;
        if !u.is_held() {
            return;
        }
        if nonce == u.reported {
            u.clear();
        } else if u.pinged.is_some_and(|(n, _)| n == nonce) {
            // Reports queued after that Ping: ask again.
            self.ask_confirmation(now, link, io);
        }
    }
}

//! Routing of messages (Deliver) and their acknowledgements (Ack) between links, and the
//! report of a message that will never reach its target.

use super::{Handled, Hub, HubIo, LinkFull, LinkId, LOCAL_LINK};
use crate::time::Instant;
use crate::topic::SubscriptionSlots;
use crate::wire::is_reserved_event;
use crate::wire::{Deliver, FailReason, Frame};

/// The event name of a Deliver's event field: after the topic of a publication, else all of
/// it (as [`crate::topic::split_publication`], with a byte search: this runs for every
/// message, and the separator is one ASCII byte).
fn event_name(event: &str) -> &str {
    const _: () = assert!(crate::topic::TOPIC_SEPARATOR.is_ascii());
    const SEPARATOR: u8 = crate::topic::TOPIC_SEPARATOR as u8;
    match event.bytes().position(|b| b == SEPARATOR) {
        // After an ASCII byte: a char boundary.
        Some(i) => event.get(i + 1..).unwrap_or(""),
        None => event,
    }
}

impl<const L: usize, const M: usize, const W: usize, T: SubscriptionSlots> Hub<L, M, W, T> {
    /// Routes a message from a machine of the hub's own process (as if link 0 had sent it).
    pub fn deliver_local(
        &mut self,
        now: Instant,
        d: Deliver<'_>,
        body: &[u8],
        io: &mut dyn HubIo,
    ) -> Handled {
        self.now = self.now.max(now);
        self.deliver(now, LOCAL_LINK, d, body, io)
    }

    pub(super) fn deliver(
        &mut self,
        now: Instant,
        link: LinkId,
        d: Deliver<'_>,
        body: &[u8],
        io: &mut dyn HubIo,
    ) -> Handled {
        self.now = self.now.max(now);
        if self.routes.link_of(d.from) != Some(link) {
            self.stats.spoofed += 1;
            core_log!(
                warn,
                "hub: link {} sent as '{}', an id it does not own",
                link,
                d.from
            );
            io.log(
                link,
                "deliver from a machine id this link does not own; refused",
            );
            return self.fail(link, &d, FailReason::NotOwner, io);
        }
        if is_reserved_event(event_name(d.event)) {
            // Only the runtime makes `xstate.*` events, and it makes them inside the
            // receiving process: one on the wire is forged.
            self.stats.reserved += 1;
            core_log!(
                warn,
                "hub: link {} sent the reserved event '{}'",
                link,
                d.event
            );
            io.log(
                link,
                "deliver of an event in the reserved xstate. namespace; refused",
            );
            return self.fail(link, &d, FailReason::Reserved, io);
        }
        // An earlier message of the pair failed on this link, and the client has not
        // confirmed reading the report: should the report be lost with the link, the sender
        // sends that message again after reconnecting, and the receiver must not have
        // delivered a later one meanwhile.
        if let Some(reason) = self.links[link as usize].unconfirmed.holds(d.from, d.to) {
            return self.fail(link, &d, reason, io);
        }
        if self.drops_for_resend(link, d.to) {
            return Handled::Done;
        }
        let Some(target) = self.routes.link_of(d.to) else {
            if self.drops_while_held(link, d.to) {
                return Handled::Done;
            }
            let reason = if self.stopped.iter().any(|s| s.0 .0.as_str() == d.to) {
                FailReason::TargetStopped
            } else {
                FailReason::UnknownTarget
            };
            return self.fail(link, &d, reason, io);
        };
        if body.len() > self.links[target as usize].max_frame as usize {
            return self.fail(link, &d, FailReason::TooLarge, io);
        }
        if io.forward_deliver(target, &d, body).is_err() {
            return Handled::Stalled(target);
        }
        self.count_routed(link, target);
        if self.monitors > 0 {
            self.copy_to_monitors(link, body, io);
        } else if target != LOCAL_LINK && self.links[link as usize].direct_allow > 0 {
            self.consider_direct(link, target, io);
        }
        Handled::Done
    }

    /// Routes an acknowledgement from `link`: `seq` is what `body` carries, when the hub
    /// decoded it (a host takes it from here instead of decoding the body again).
    pub(super) fn ack(
        &mut self,
        link: LinkId,
        from: &str,
        to: &str,
        seq: Option<u64>,
        body: &[u8],
        io: &mut dyn HubIo,
    ) -> Handled {
        if self.routes.link_of(from) != Some(link) {
            self.stats.spoofed += 1;
            io.log(
                link,
                "ack from a machine id this link does not own; dropped",
            );
            return Handled::Done;
        }
        // An ack for a sender that is gone has no one to tell.
        let Some(target) = self.routes.link_of(to) else {
            return Handled::Done;
        };
        let queued = match seq {
            Some(seq) => io.forward_ack(target, from, to, seq, body),
            None => io.forward(target, body),
        };
        match queued {
            Ok(()) => Handled::Done,
            Err(LinkFull) => Handled::Stalled(target),
        }
    }

    /// Routes an ack from a machine of the hub's own process.
    pub fn ack_local(&mut self, from: &str, to: &str, body: &[u8], io: &mut dyn HubIo) -> Handled {
        self.ack(LOCAL_LINK, from, to, None, body, io)
    }

    /// Reports a Deliver frame that will never reach its target (it was queued on a link that
    /// closed) back to its sender. Other frames are ignored.
    ///
    /// A sender whose link has no room for the report is closed: it sends the message again
    /// after reconnecting, and nothing it sent after it is forwarded meanwhile.
    pub fn undeliverable(&mut self, body: &[u8], io: &mut dyn HubIo) {
        let Ok(Frame::Deliver(d)) = Frame::decode(body) else {
            return;
        };
        if let Some(sender) = self.lookup(d.from).map(|r| r.link) {
            if self.drops_while_held(sender, d.to) {
                return;
            }
            if let Handled::Stalled(_) = self.fail(sender, &d, FailReason::TargetGone, io) {
                let why = "no room to report a failure to this link; closing it so it sends again";
                io.log(sender, why);
                io.close(sender, why);
                self.link_closed(sender, io);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::event_name;
    use crate::topic::split_publication;

    #[test]
    fn the_event_name_is_what_split_publication_finds() {
        for event in [
            "",
            "E",
            "xstate.x",
            "t\0E",
            "t\0xstate.e",
            "\0",
            "a\0b\0c",
            "é\0ü",
            "\0xstate.",
        ] {
            assert_eq!(event_name(event), split_publication(event).1, "{event:?}");
        }
    }
}

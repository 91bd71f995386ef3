//! Durable ids: kept for their next owner across their owner's death.
//!
//! An id registered with [`crate::wire::Frame::RegisterDurable`] belongs to a machine that journals its
//! state and comes back after a crash (its process restarted by a supervisor). When its
//! owner's link closes, the hub does not remove it (which would make every sender fail what
//! it had outstanding to it as `target-gone`, though the restarted machine may have taken
//! it): it keeps the id, without a route, for [`super::HubConfig::durable_hold`]:
//!
//! - a message to a held id is dropped, not failed, when its sender sends again what a
//!   registry entry asks it to (a node: a registry subscriber, or the hub's own process);
//!   it stays in the sender's outstanding buffer. From a link that is not a registry
//!   subscriber it fails as `target-gone`, as before;
//! - messages queued for the dead link are dropped alike ([`Hub::undeliverable`]);
//! - when the id is registered again (durable or not: the same rule for any next owner),
//!   the registry entry goes out as for any registration, and each other node sends again,
//!   in order, what it had sent to the id and not had acknowledged; the new owner's
//!   duplicate filter (restored from its journal when it is durable) drops what its earlier
//!   process took, and acknowledges it. Until a link says it is resending
//!   ([`crate::wire::Frame::Resending`]) or answers the Ping queued after the entry, its messages to the
//!   id are dropped: they were written before it rewound, and it sends them again after;
//! - past the hold the id leaves the registry as any other id: its senders fail what they
//!   had outstanding to it as `target-gone`.
//!
//! Bounded: at most [`HELD_IDS`] ids are held at once; a durable id whose owner dies when
//! the table is full leaves the registry at once, as a non-durable one does.

use heapless::Vec;

use crate::time::Instant;
use crate::topic::SubscriptionSlots;

use super::{pair_hash, Hub, HubIo, LinkId, LinkState, RouteKey, LOCAL_LINK};

/// How many durable ids a hub keeps for their next owner at once.
pub const HELD_IDS: usize = 32;

/// The hash a link's resend hold keeps for a target id.
fn target_hash(to: &str) -> u32 {
    pair_hash("", to)
}

impl<const L: usize, const M: usize, const W: usize, T: SubscriptionSlots> Hub<L, M, W, T> {
    /// The durable `key`'s owner is gone: keeps the id for its next owner. Returns false
    /// (the caller removes it as any id) when the table of held ids is full.
    pub(super) fn hold_durable(&mut self, key: &RouteKey, io: &mut dyn HubIo) -> bool {
        let until = self.now + self.config.durable_hold;
        if self.held.iter().any(|h| h.0 == *key) || self.held.push((key.clone(), until)).is_err() {
            return false;
        }
        self.lower_deadline(until);
        // Its topic subscriptions end (its next owner subscribes again); its senders keep
        // what they sent it.
        self.drop_subscriptions(&key.0, io);
        true
    }

    /// Ids held past their time leave the registry.
    pub(super) fn release_held(&mut self, now: Instant, io: &mut dyn HubIo) {
        while let Some(i) = self.held.iter().position(|h| h.1 <= now) {
            let (key, _) = self.held.swap_remove(i);
            core_log!(
                info,
                "hub: durable id '{}' not registered again in time; removed",
                key.0.as_str()
            );
            self.broadcast_removed(&key.0, io);
        }
    }

    /// Forgets `machine` from the held ids; whether it was held.
    pub(super) fn unhold(&mut self, machine: &str) -> bool {
        match self.held.iter().position(|h| h.0 .0.as_str() == machine) {
            Some(i) => {
                self.held.swap_remove(i);
                true
            }
            None => false,
        }
    }

    /// Whether `machine` is held for its next owner.
    pub fn is_held(&self, machine: &str) -> bool {
        self.held.iter().any(|h| h.0 .0.as_str() == machine)
    }

    /// A message from `link` to `to`, which has no route: whether it is dropped for its
    /// sender to send again (the id is held, and the link sends again on a registry entry).
    pub(super) fn drops_while_held(&mut self, link: LinkId, to: &str) -> bool {
        let resends =
            link == LOCAL_LINK || self.links.get(link as usize).is_some_and(|l| l.registry);
        if resends && self.is_held(to) {
            self.stats.held_dropped += 1;
            return true;
        }
        false
    }

    /// A message from `link` to `to`: whether it is dropped because `to`'s owner came back
    /// and the link has not yet rewound what it sends to it.
    pub(super) fn drops_for_resend(&mut self, link: LinkId, to: &str) -> bool {
        let u = &self.links[link as usize].unconfirmed;
        // Nearly always nothing is held for a resend: no hash of the target for every message.
        if u.resending_to_any() && u.drops_to(target_hash(to)) {
            self.stats.held_dropped += 1;
            return true;
        }
        false
    }

    /// `machine`, a held id, has a new owner on `owner`: every other node is to send again
    /// what it had sent to it (the registry entry, queued already, tells it); its messages
    /// to it are dropped until it says so, or confirms reading the entry. A link with too
    /// many such ids at once is closed: it sends everything again after reconnecting.
    pub(super) fn ask_to_resend(
        &mut self,
        now: Instant,
        owner: LinkId,
        machine: &str,
        io: &mut dyn HubIo,
    ) {
        let h = target_hash(machine);
        let mut full: Vec<LinkId, 8> = Vec::new();
        for i in 1..L {
            let l = &mut self.links[i];
            if i as LinkId == owner || l.state != LinkState::Ready || !l.registry {
                continue;
            }
            let u = &mut l.unconfirmed;
            if !u.hold_for_resend(h) {
                if full.push(i as LinkId).is_err() {
                    break;
                }
                continue;
            }
            u.reported += 1;
            if u.pinged.is_none() {
                self.ask_confirmation(now, i as LinkId, io);
            }
            self.link_deadline_changed(i as LinkId);
        }
        for link in full {
            let why = "too many durable ids to send again to at once; closing it so it sends \
                       everything again";
            io.log(link, why);
            io.close(link, why);
            self.link_closed(link, io);
        }
    }

    /// `link` rewound what it had sent to `machine`: what follows is in order.
    pub(super) fn resending(&mut self, link: LinkId, machine: &str) {
        self.links[link as usize]
            .unconfirmed
            .resending(target_hash(machine));
    }

    /// Whether `machine` is registered as durable now.
    pub fn is_durable(&self, machine: &str) -> bool {
        self.routes.get(machine).is_some_and(|r| r.durable)
    }
}

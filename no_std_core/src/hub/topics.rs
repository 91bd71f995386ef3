//! The hub's publish/subscribe table: which machine subscribed to which topic filter, held
//! for as long as the machine is registered, and told to every link that watches the table
//! (each node, so that it fans its machines' publications out as ordinary messages).
//!
//! Bounded: as many subscriptions in all as the hub's slots `T` hold (64 by default; a
//! node's hub has 1024), [`SUBSCRIPTIONS_PER_LINK`] per link.
//! A subscription beyond either is refused with a [`Frame::TopicResult`] naming why: a
//! client flooding subscriptions never grows the hub.

use super::{Handled, Hub, HubIo, LinkFull, LinkId, LinkState, LOCAL_LINK};
use crate::topic::{check_filter, SubscriptionSlots, SubscriptionTable, TopicStatus};
use crate::wire::Frame;

/// The most subscriptions one link (one process) may hold.
pub const SUBSCRIPTIONS_PER_LINK: usize = 256;

/// The subscription table and who watches it.
pub(super) struct Topics<T> {
    pub(super) table: SubscriptionTable<T>,
    /// Links watching the table, one bit each (links 0 to 255).
    watchers: [u64; 4],
}

impl<T: SubscriptionSlots> Topics<T> {
    pub(super) fn new() -> Self {
        Topics {
            table: SubscriptionTable::new(T::empty()),
            watchers: [0; 4],
        }
    }

    fn watching(&self, link: LinkId) -> bool {
        let l = link as usize;
        l < 256 && self.watchers[l / 64] & (1 << (l % 64)) != 0
    }

    fn set_watching(&mut self, link: LinkId, on: bool) {
        let l = link as usize;
        if l < 256 {
            if on {
                self.watchers[l / 64] |= 1 << (l % 64);
            } else {
                self.watchers[l / 64] &= !(1 << (l % 64));
            }
        }
    }
}

impl<const L: usize, const M: usize, const W: usize, T: SubscriptionSlots> Hub<L, M, W, T> {
    /// The subscriptions the hub holds: (machine, filter). The hub's own process fans its
    /// publications out from here.
    pub fn subscriptions(&self) -> &SubscriptionTable<T> {
        &self.topics.table
    }

    /// Handles a topic frame from `link` (subscribe, unsubscribe, watch).
    pub(super) fn topic_frame(
        &mut self,
        link: LinkId,
        frame: Frame<'_>,
        io: &mut dyn HubIo,
    ) -> Handled {
        match frame {
            Frame::TopicSubscribe { machine, filter } => {
                let status = self.subscribe(link, machine, filter, io);
                if link == LOCAL_LINK {
                    return Handled::Done;
                }
                let answer = Frame::TopicResult {
                    machine,
                    filter,
                    status,
                };
                match io.send(link, &answer) {
                    Ok(()) => Handled::Done,
                    Err(LinkFull) => {
                        // Held (or refused) already; the answer is lost, not the table's
                        // consistency: the client asks again after a reconnect.
                        io.log(link, "no room to answer a topic subscription");
                        Handled::Done
                    }
                }
            }
            Frame::TopicUnsubscribe { machine, filter } => {
                if self.lookup(machine).is_some_and(|r| r.link == link)
                    && self.topics.table.remove(machine, filter)
                {
                    self.tell_watchers(machine, filter, false, io);
                }
                Handled::Done
            }
            Frame::TopicWatch { on } => self.topic_watch(link, on, io),
            _ => Handled::Done,
        }
    }

    fn subscribe(
        &mut self,
        link: LinkId,
        machine: &str,
        filter: &str,
        io: &mut dyn HubIo,
    ) -> TopicStatus {
        let status = if check_filter(filter).is_err() {
            TopicStatus::BadFilter
        } else if self.lookup(machine).is_none_or(|r| r.link != link) {
            TopicStatus::NotOwner
        } else if link != LOCAL_LINK
            && self.topics.table.count_link(link) >= SUBSCRIPTIONS_PER_LINK
            && !self
                .topics
                .table
                .iter()
                .any(|s| s.1 == machine && s.2 == filter)
        {
            TopicStatus::TooMany
        } else {
            match self.topics.table.insert(link, machine, filter) {
                Ok(true) => {
                    self.tell_watchers(machine, filter, true, io);
                    TopicStatus::Ok
                }
                Ok(false) => TopicStatus::Ok,
                Err(_) => TopicStatus::HubFull,
            }
        };
        if status != TopicStatus::Ok {
            core_log!(
                warn,
                "hub: link {} refused a subscription: {}",
                link,
                status.as_str()
            );
            io.log(link, status.as_str());
        }
        status
    }

    /// Subscribes a machine of the hub's own process (as if link 0 had sent
    /// [`Frame::TopicSubscribe`]).
    pub fn subscribe_local(
        &mut self,
        machine: &str,
        filter: &str,
        io: &mut dyn HubIo,
    ) -> TopicStatus {
        self.subscribe(LOCAL_LINK, machine, filter, io)
    }

    /// Ends a subscription of a machine of the hub's own process.
    pub fn unsubscribe_local(&mut self, machine: &str, filter: &str, io: &mut dyn HubIo) {
        self.topic_frame(LOCAL_LINK, Frame::TopicUnsubscribe { machine, filter }, io);
    }

    fn topic_watch(&mut self, link: LinkId, on: bool, io: &mut dyn HubIo) -> Handled {
        self.topics.set_watching(link, on);
        if !on {
            return Handled::Done;
        }
        let fits = self.topics.table.iter().all(|(_, machine, filter)| {
            let entry = Frame::TopicEntry {
                machine,
                filter,
                on: true,
            };
            io.send(link, &entry).is_ok()
        });
        if !fits || io.send(link, &Frame::TopicSnapshotEnd).is_err() {
            return self.violation(link, "topic snapshot does not fit the link's queue", io);
        }
        Handled::Done
    }

    /// Tells every watching link that a subscription was added or ended. A watcher with no
    /// room for the change is closed, so that it reconnects and starts from a snapshot (its
    /// copy would be wrong otherwise).
    fn tell_watchers(&mut self, machine: &str, filter: &str, on: bool, io: &mut dyn HubIo) {
        let entry = Frame::TopicEntry {
            machine,
            filter,
            on,
        };
        for i in 1..L.min(256) {
            let link = i as LinkId;
            if self.topics.watching(link)
                && self.links[i].state == LinkState::Ready
                && io.send(link, &entry).is_err()
            {
                self.topics.set_watching(link, false);
                io.log(
                    link,
                    "topic watcher too slow; closing it so it resynchronizes",
                );
                io.close(link, "topic watcher too slow");
            }
        }
    }

    /// `machine` left the registry: its subscriptions end.
    pub(super) fn drop_subscriptions(&mut self, machine: &str, io: &mut dyn HubIo) {
        loop {
            let Some(filter) = self
                .topics
                .table
                .iter()
                .find(|s| s.1 == machine)
                .map(|s| heapless::String::<{ crate::topic::MAX_TOPIC }>::try_from(s.2))
            else {
                return;
            };
            let Ok(filter) = filter else { return };
            self.topics.table.remove(machine, &filter);
            self.tell_watchers(machine, &filter, false, io);
        }
    }

    /// `link` closed: it watches no more (its machines' subscriptions end as they leave the
    /// registry).
    pub(super) fn topic_link_closed(&mut self, link: LinkId) {
        self.topics.set_watching(link, false);
    }
}

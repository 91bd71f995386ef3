//! A process's side of publish/subscribe: its copy of the bus's subscriptions (from the
//! hub's [`Frame::TopicEntry`] updates) to fan its machines' publications out from, and its
//! own machines' subscriptions, asked for again whenever the hub registers their ids anew
//! (after a reconnect, a hub restart), since the hub holds subscriptions only as long as the
//! machine's registration.
//!
//! A publication is fanned out in the copy's slot order ([`SubscriptionTable::next_subscriber`]),
//! one ordinary message per subscriber with the publisher's next sequence number, so that
//! every promise of a direct message holds per subscriber. The copy keeps the slots of the
//! subscriptions a new snapshot names again, so that a fan-out stopped by backpressure
//! resumes where it stopped.

use super::client::FrameSink;
use crate::topic::{check_filter, Subscription, SubscriptionTable, TopicError, TopicStatus};
use crate::wire::Frame;

/// The link number of one of this process's subscriptions the hub has not confirmed.
const UNCONFIRMED: u32 = 0;
/// ... and of one it has.
const CONFIRMED: u32 = 1;

/// What a topic frame from the hub meant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopicNews<'f> {
    /// Nothing the host needs to hear about.
    Nothing,
    /// The hub refused one of this process's subscriptions (it is dropped here too).
    Refused {
        /// The machine.
        machine: &'f str,
        /// The filter.
        filter: &'f str,
        /// Why.
        status: TopicStatus,
    },
    /// The copy has no room for a subscription on the bus: publications will miss it.
    CopyFull {
        /// The machine.
        machine: &'f str,
        /// The filter.
        filter: &'f str,
    },
}

/// Why a subscription was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubscribeError {
    /// The filter breaks the topic rules.
    Filter(TopicError),
    /// This process holds as many subscriptions as its table does.
    Full,
}

/// The bus's subscriptions as this process knows them, and its own (`B` and `M`: the
/// caller's slots, allocated once).
pub struct TopicMirror<B, M> {
    table: SubscriptionTable<B>,
    mine: SubscriptionTable<M>,
    synced: bool,
}

impl<B, M> TopicMirror<B, M>
where
    B: AsRef<[Subscription]> + AsMut<[Subscription]>,
    M: AsRef<[Subscription]> + AsMut<[Subscription]>,
{
    /// An empty copy over `table` (the bus's subscriptions) and `mine` (this process's).
    pub fn new(table: B, mine: M) -> Self {
        TopicMirror {
            table: SubscriptionTable::new(table),
            mine: SubscriptionTable::new(mine),
            synced: false,
        }
    }

    /// The bus's subscriptions, as last heard (this process's own included).
    pub fn table(&self) -> &SubscriptionTable<B> {
        &self.table
    }

    /// Whether the copy is current (a snapshot has been received since the link came up).
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// The subscriptions of this process's machines: (machine, filter).
    pub fn mine(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.mine.iter().map(|(_, m, f)| (m, f))
    }

    /// Whether the hub has confirmed holding `machine`'s subscription to `filter` (on the
    /// current link): publications from any process reach it from then on.
    pub fn is_held(&self, machine: &str, filter: &str) -> bool {
        self.mine
            .iter()
            .any(|s| s.0 == CONFIRMED && s.1 == machine && s.2 == filter)
    }

    /// The link is (again) ready: ask for the table. Subscriptions are asked for again per
    /// machine once the hub has registered it ([`TopicMirror::registered`]).
    pub fn on_ready(&mut self, sink: &mut dyn FrameSink) {
        self.synced = false;
        // None is confirmed on the new link yet.
        self.mine.set_links(UNCONFIRMED);
        self.table.mark_stale();
        sink.send_frame(&Frame::TopicWatch { on: true });
    }

    /// The hub registered `machine` for this process: ask for its subscriptions.
    pub fn registered(&mut self, machine: &str, sink: &mut dyn FrameSink) {
        for (_, m, filter) in self.mine.iter().filter(|s| s.1 == machine) {
            sink.send_frame(&Frame::TopicSubscribe { machine: m, filter });
        }
    }

    /// Subscribes `machine` (one of this process's) to `filter`. It is in the copy at once,
    /// so that publications from this process reach it; `registered`: whether the hub has
    /// registered the machine (then it is asked for now; otherwise once it is).
    pub fn subscribe(
        &mut self,
        machine: &str,
        filter: &str,
        registered: bool,
        sink: &mut dyn FrameSink,
    ) -> Result<(), SubscribeError> {
        check_filter(filter).map_err(SubscribeError::Filter)?;
        self.mine
            .insert(UNCONFIRMED, machine, filter)
            .map_err(|_| SubscribeError::Full)?;
        if self.table.insert(0, machine, filter).is_err() {
            self.mine.remove(machine, filter);
            return Err(SubscribeError::Full);
        }
        if registered {
            sink.send_frame(&Frame::TopicSubscribe { machine, filter });
        }
        Ok(())
    }

    /// Ends a subscription of one of this process's machines.
    pub fn unsubscribe(&mut self, machine: &str, filter: &str, sink: &mut dyn FrameSink) {
        if self.mine.remove(machine, filter) {
            self.table.remove(machine, filter);
            sink.send_frame(&Frame::TopicUnsubscribe { machine, filter });
        }
    }

    /// `machine` left this process: its subscriptions end (the hub ends them when it
    /// unregisters).
    pub fn forget(&mut self, machine: &str) {
        self.mine
            .remove_where(&mut |_, m| m == machine, &mut |_, _| {});
        self.table
            .remove_where(&mut |_, m| m == machine, &mut |_, _| {});
    }

    fn is_mine(&self, machine: &str, filter: &str) -> bool {
        self.mine.iter().any(|s| s.1 == machine && s.2 == filter)
    }

    fn added<'f>(&mut self, machine: &'f str, filter: &'f str) -> TopicNews<'f> {
        match self.table.insert(0, machine, filter) {
            Ok(_) => TopicNews::Nothing,
            Err(_) => TopicNews::CopyFull { machine, filter },
        }
    }

    fn ended(&mut self, machine: &str, filter: &str) {
        // One of ours ended by the hub while we still want it (a registration lost and
        // regained) stays: it is asked for again with the registration.
        if !self.is_mine(machine, filter) {
            self.table.remove(machine, filter);
        }
    }

    fn confirmed(&mut self, machine: &str, filter: &str) {
        if self.is_mine(machine, filter) {
            let _ = self.mine.insert(CONFIRMED, machine, filter);
        }
    }

    /// A topic frame from the hub.
    pub fn handle<'f>(&mut self, frame: &Frame<'f>) -> TopicNews<'f> {
        match *frame {
            Frame::TopicEntry {
                machine,
                filter,
                on: true,
            } => return self.added(machine, filter),
            Frame::TopicEntry {
                machine,
                filter,
                on: false,
            } => self.ended(machine, filter),
            Frame::TopicSnapshotEnd => {
                // Ours stay in the copy while they are asked for again.
                for (_, m, f) in self.mine.iter() {
                    let _ = self.table.insert(0, m, f);
                }
                self.table.sweep_stale();
                self.synced = true;
            }
            Frame::TopicResult {
                machine,
                filter,
                status: TopicStatus::Ok,
            } => self.confirmed(machine, filter),
            Frame::TopicResult {
                machine,
                filter,
                status,
            } => {
                // Refused for good (a bad filter, a full table, an id not ours): dropped, and
                // the host says so.
                self.mine.remove(machine, filter);
                self.table.remove(machine, filter);
                return TopicNews::Refused {
                    machine,
                    filter,
                    status,
                };
            }
            _ => {}
        }
        TopicNews::Nothing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Frames(heapless::Vec<heapless::String<160>, 16>);
    impl FrameSink for Frames {
        fn send_frame(&mut self, f: &Frame<'_>) -> bool {
            let mut s = heapless::String::new();
            let _ = core::fmt::write(&mut s, format_args!("{f:?}"));
            self.0.push(s).is_ok()
        }
        fn send_body(&mut self, _: &[u8]) -> bool {
            true
        }
        fn has_pending(&self) -> bool {
            false
        }
    }

    fn mirror() -> TopicMirror<[Subscription; 8], [Subscription; 4]> {
        TopicMirror::new([Subscription::EMPTY; 8], [Subscription::EMPTY; 4])
    }

    #[test]
    fn own_subscriptions_are_asked_for_once_registered_and_survive_a_new_snapshot() {
        let mut m = mirror();
        let mut sink = Frames::default();
        assert_eq!(
            m.subscribe("a", "x/#/y", false, &mut sink),
            Err(SubscribeError::Filter(TopicError::HashNotLast))
        );
        m.subscribe("a", "x/+", false, &mut sink).unwrap();
        assert!(sink.0.is_empty(), "not registered yet: nothing asked");
        assert_eq!(m.table().count_subscribers("x/1"), 1);
        m.registered("a", &mut sink);
        assert_eq!(sink.0.len(), 1);
        assert!(sink.0[0].contains("TopicSubscribe"));
        assert!(!m.is_held("a", "x/+"));
        m.handle(&Frame::TopicResult {
            machine: "a",
            filter: "x/+",
            status: TopicStatus::Ok,
        });
        assert!(m.is_held("a", "x/+"));
        // Another process's subscription arrives; then the link comes back with a snapshot
        // that names neither.
        m.handle(&Frame::TopicEntry {
            machine: "b",
            filter: "x/#",
            on: true,
        });
        assert_eq!(m.table().count_subscribers("x/1"), 2);
        m.on_ready(&mut sink);
        assert!(!m.is_synced());
        assert!(!m.is_held("a", "x/+"), "asked for again on the new link");
        m.handle(&Frame::TopicSnapshotEnd);
        assert!(m.is_synced());
        assert_eq!(m.table().count_subscribers("x/1"), 1, "b is gone, a stays");
        // The hub refuses a: it leaves the copy.
        let news = m.handle(&Frame::TopicResult {
            machine: "a",
            filter: "x/+",
            status: TopicStatus::HubFull,
        });
        assert!(matches!(news, TopicNews::Refused { .. }));
        assert_eq!(m.table().count_subscribers("x/1"), 0);
        assert_eq!(m.mine().count(), 0);
    }
}

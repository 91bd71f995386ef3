//! The hub's counters per link, its failures by reason, and the stats request: who asked
//! for the bus's counters and where the nodes' answers go.
//!
//! Counting rules (protocol facts, so they live here and are tested on the simulated bus):
//! - a link's `frames_in`/`bytes_in` count every whole frame body the hub was handed from it
//!   (a frame handed in again after [`Handled::Stalled`] counts each time it is handed in:
//!   the counters say what the hub read, not what it accepted);
//! - `messages_in` of a link counts the messages from it the hub routed to their target's
//!   link, and `messages_out` of the target's link the same messages (the hub's own process is
//!   link 0); a message reported failed counts in neither, but in `failures` of the sender's
//!   link and in [`HubStats::failed_by_reason`];
//! - a stats request is passed on to every ready link but the asker's and the hub's own; a
//!   node's answer reaches the asker only while the asker's link is open and has asked.

use crate::topic::SubscriptionSlots;
use crate::wire::{FailReason, Frame};

use super::{Handled, Hub, HubIo, LinkId, LinkState, PeerCredentials, LOCAL_LINK};

/// How many [`FailReason`]s there are (the length of
/// [`HubStats::failed_by_reason`]).
pub const FAIL_REASONS: usize = 9;

/// Every [`FailReason`], in the order of [`fail_reason_index`].
pub const ALL_FAIL_REASONS: [FailReason; FAIL_REASONS] = [
    FailReason::UnknownTarget,
    FailReason::TargetGone,
    FailReason::QueueFull,
    FailReason::NotOwner,
    FailReason::TooLarge,
    FailReason::Disconnected,
    FailReason::Reserved,
    FailReason::TargetStopped,
    FailReason::NodeUnreachable,
];

/// The slot of a reason in a by-reason table.
pub fn fail_reason_index(reason: FailReason) -> usize {
    ALL_FAIL_REASONS
        .iter()
        .position(|r| *r == reason)
        .unwrap_or(0)
}

/// The hub's counters (see the counting rules above).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct HubStats {
    /// Messages routed to their target's link.
    pub delivered: u64,
    /// Messages reported back as failed.
    pub failed: u64,
    /// Links refused at admission or handshake.
    pub rejected: u64,
    /// Links closed for malformed or out-of-order frames.
    pub protocol_errors: u64,
    /// Deliver frames whose sender did not own the `from` id.
    pub spoofed: u64,
    /// Deliver frames refused for an event in the reserved `xstate.` namespace.
    pub reserved: u64,
    /// Monitor copies dropped because a monitor was slow.
    pub monitor_dropped: u64,
    /// State reports not forwarded to a watcher whose queue was full.
    pub reports_dropped: u64,
    /// Watches refused because the watch table was full.
    pub watches_refused: u64,
    /// Links open now (the local link excluded).
    pub links: u32,
    /// Links admitted since the hub started (reconnects included).
    pub links_opened: u64,
    /// Of `failed`, by reason, in the order of [`ALL_FAIL_REASONS`].
    pub failed_by_reason: [u64; FAIL_REASONS],
    /// Stats requests handled ([`Frame::StatsRequest`]).
    pub stats_requests: u64,
    /// Node stats reports not forwarded (the asker gone, never asked, or full).
    pub stats_dropped: u64,
    /// Messages to a durable id whose owner was away (or had just come back) dropped for
    /// their senders to send again.
    pub held_dropped: u64,
    /// Direct ring pairs offered to two clients (see [`Hub::direct_pairs`]).
    pub direct_pairs_opened: u64,
    /// Direct ring pairs closed.
    pub direct_pairs_closed: u64,
}

/// What the hub counted on one link since it opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct LinkCounters {
    /// Frame bodies handed to the hub from the link.
    pub frames_in: u64,
    /// Their bytes (length prefixes excluded).
    pub bytes_in: u64,
    /// Messages from the link routed to their target's link.
    pub messages_in: u64,
    /// Messages routed to the link.
    pub messages_out: u64,
    /// Failure reports the hub queued for the link (its messages that failed).
    pub failures: u64,
}

/// A link as [`Hub::links`] shows it.
#[derive(Clone, Copy, Debug)]
pub struct LinkStats<'h> {
    /// The link's number (0: the hub's own process).
    pub link: LinkId,
    /// Its peer.
    pub peer: PeerCredentials,
    /// The executable its Hello named ("" before the Hello).
    pub executable: &'h str,
    /// The machine ids it registered.
    pub machines: usize,
    /// Its counters.
    pub counters: LinkCounters,
}

impl<const L: usize, const M: usize, const W: usize, T: SubscriptionSlots> Hub<L, M, W, T> {
    /// The open links (the hub's own process, link 0, first) with their counters.
    pub fn links(&self) -> impl Iterator<Item = LinkStats<'_>> + '_ {
        self.links
            .iter()
            .enumerate()
            .filter(|(_, l)| l.state != LinkState::Free)
            .map(|(i, l)| LinkStats {
                link: i as LinkId,
                peer: l.peer,
                executable: l.executable.as_str(),
                machines: l.machines,
                counters: l.counters,
            })
    }

    /// Counts a frame body handed in from `link`.
    pub(super) fn count_frame_in(&mut self, link: LinkId, len: usize) {
        if let Some(l) = self.links.get_mut(link as usize) {
            l.counters.frames_in += 1;
            l.counters.bytes_in += len as u64;
        }
    }

    /// Counts a message routed from `from` to `to`.
    pub(super) fn count_routed(&mut self, from: LinkId, to: LinkId) {
        self.stats.delivered += 1;
        if let Some(l) = self.links.get_mut(from as usize) {
            l.counters.messages_in += 1;
        }
        if let Some(l) = self.links.get_mut(to as usize) {
            l.counters.messages_out += 1;
        }
    }

    /// Counts a failure report queued for `link`.
    pub(super) fn count_failed(&mut self, link: LinkId, reason: FailReason) {
        self.stats.failed += 1;
        self.stats.failed_by_reason[fail_reason_index(reason)] += 1;
        if let Some(l) = self.links.get_mut(link as usize) {
            l.counters.failures += 1;
        }
    }

    /// A [`Frame::StatsRequest`] from `asker`: passed on to every other ready link (best
    /// effort: a link with no room is left out), then the platform is told through
    /// [`HubIo::stats_requested`] to answer with the hub's counters and how many nodes will.
    pub(super) fn stats_request(&mut self, asker: LinkId, io: &mut dyn HubIo) -> Handled {
        self.stats.stats_requests += 1;
        if let Some(l) = self.links.get_mut(asker as usize) {
            l.stats_asked = true;
        }
        let mut nodes = 0u32;
        for i in 1..L {
            let link = i as LinkId;
            if link == asker || self.links[i].state != LinkState::Ready {
                continue;
            }
            if io.send(link, &Frame::StatsRequest { link: asker }).is_ok() {
                nodes += 1;
            }
        }
        io.stats_requested(asker, nodes);
        Handled::Done
    }

    /// A node's [`Frame::Stats`] answer for `asker`, from `link`: forwarded to the asker
    /// with `link` set to the reporting link; dropped when the asker is gone, never asked,
    /// or has no room (the asker stops waiting after its own timeout).
    pub(super) fn stats_report(
        &mut self,
        link: LinkId,
        asker: u32,
        report: &[u8],
        io: &mut dyn HubIo,
    ) -> Handled {
        let asked = asker != LOCAL_LINK
            && self
                .links
                .get(asker as usize)
                .is_some_and(|l| l.state == LinkState::Ready && l.stats_asked);
        if asked {
            let answer = Frame::Stats {
                link,
                expect: 0,
                report,
            };
            if io.send(asker, &answer).is_err() {
                self.stats.stats_dropped += 1;
            }
        } else {
            self.stats.stats_dropped += 1;
        }
        Handled::Done
    }
}

//! The node's metrics: the counters it keeps beside [`NodeStats`] (each machine's messages,
//! failures by reason, a sampled acknowledgement latency), the report built from them on
//! request ([`Node::metrics`]), and the stats request of the wire (frames 29 and 30): a
//! client answers the hub's [`Frame::StatsRequest`] with its report, and a tool asks the
//! bus for every process's report ([`Node::request_stats`], [`Node::next_stats_answer`]).
//!
//! Storage is fixed: a few integers per machine and per node, and one probe (two short ids
//! and a time). The acknowledgement latency is sampled: one message to another process is
//! timed at once, from its send to the acknowledgement that covers it, and a probe starts
//! at most once a millisecond, so a busy node costs two clock reads per sample, not one per
//! message: whether a probe is old enough to give up, or a new one due, is told by the loop
//! turn's time.

use interstate_core::hub::{fail_reason_index, ALL_FAIL_REASONS, FAIL_REASONS};
use interstate_core::wire::{FailReason, Frame};

use super::hub_side::HubSide;
use super::{Node, NodeStats, Side};
use crate::metrics::{labels, LatencyHistogram, Report, Source};

/// A probe not acknowledged after this long is given up (its message failed, or its
/// receiver left), so that sampling goes on.
const PROBE_GIVEN_UP_AFTER: interstate_core::Duration =
    interstate_core::Duration::from_millis(60_000);

/// A probe starts at most once per this much loop-turn time: a ping-pong acknowledges
/// every message at once, so without it each message was a probe, with its two clock reads
/// and two id copies (about 300 instructions a message on each side, counted). A thousand
/// samples a second is plenty for the histogram.
const PROBE_EVERY: interstate_core::Duration = interstate_core::Duration::from_millis(1);

/// The longest id a probe keeps (longer ids are not sampled).
const PROBE_ID: usize = 64;

/// What a node counts per hosted machine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct MachineCounters {
    /// Messages delivered to it (from anywhere).
    pub(super) received: u64,
    /// Messages it sent (each target of a broadcast or publication counts).
    pub(super) sent: u64,
    /// Failure reports of its messages it was given.
    pub(super) failed: u64,
}

/// The one message being timed for the latency histogram.
struct AckProbe {
    sender: heapless::String<PROBE_ID>,
    receiver: heapless::String<PROBE_ID>,
    seq: u64,
    at: std::time::Instant,
    /// The loop turn's time at the send (for giving the probe up without a clock read).
    sent_in_turn: interstate_core::Instant,
}

/// The node-wide metrics that [`NodeStats`] does not hold.
#[derive(Default)]
pub(super) struct NodeMetrics {
    /// Failure reports given to this node's machines and ports, by reason.
    failed_by_reason: [u64; FAIL_REASONS],
    /// Time from a message's send to its acknowledgement (sampled).
    ack_latency: LatencyHistogram,
    probe: Option<AckProbe>,
    /// The loop turn's time before which no probe starts ([`PROBE_EVERY`]).
    next_probe: interstate_core::Instant,
    /// Probes given up ([`PROBE_GIVEN_UP_AFTER`]).
    probes_given_up: u64,
}

impl NodeMetrics {
    /// A failure report for one of this node's senders.
    pub(super) fn failed(&mut self, reason: FailReason) {
        self.failed_by_reason[fail_reason_index(reason)] += 1;
    }

    /// A message left for another process: timed, when no other is.
    /// A message to another process, sent in the loop turn of time `now`.
    pub(super) fn sent_remote(
        &mut self,
        now: interstate_core::Instant,
        sender: &str,
        receiver: &str,
        seq: u64,
    ) {
        if let Some(p) = &self.probe {
            // Every message a busy node sends comes here: no clock read.
            if now < p.sent_in_turn + PROBE_GIVEN_UP_AFTER {
                return;
            }
            self.probes_given_up += 1;
            self.probe = None;
        } else if now < self.next_probe {
            return;
        }
        let (Ok(s), Ok(r)) = (
            heapless::String::try_from(sender),
            heapless::String::try_from(receiver),
        ) else {
            return;
        };
        self.next_probe = now + PROBE_EVERY;
        self.probe = Some(AckProbe {
            sender: s,
            receiver: r,
            seq,
            at: std::time::Instant::now(),
            sent_in_turn: now,
        });
    }

    /// An acknowledgement: `receiver` took `sender`'s messages up to `seq`.
    pub(super) fn acked(&mut self, sender: &str, receiver: &str, seq: u64) {
        let Some(p) = &self.probe else { return };
        if seq >= p.seq && p.sender.as_str() == sender && p.receiver.as_str() == receiver {
            let us = u64::try_from(p.at.elapsed().as_micros()).unwrap_or(u64::MAX);
            self.ack_latency.record(us);
            self.probe = None;
        }
    }
}

/// A report that answered [`Node::request_stats`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatsAnswer {
    /// The hub's link to the process it is from (0: the hub's own process).
    pub link: u32,
    /// In the hub's first answer: how many other processes were asked (their answers
    /// follow); else 0.
    pub expect: u32,
    /// The report: JSON ([`Report::from_json`] reads it).
    pub report: Vec<u8>,
}

/// Room left in a frame for its fields besides the report.
const FRAME_OVERHEAD: usize = 64;

impl Node {
    /// This process's metrics now: the node's counters and gauges, each hosted machine's,
    /// and, when it serves the bus, the hub's (per link too). Built on request (it
    /// allocates); the counters it reads are kept without allocation.
    pub fn metrics(&self) -> Report {
        self.metrics_report(true)
    }

    fn metrics_report(&self, detailed: bool) -> Report {
        let executable = std::env::current_exe()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default();
        let mut r = Report::new(Source {
            role: if self.is_hub() { "hub" } else { "node" }.into(),
            pid: std::process::id(),
            executable,
            bus: self.config.bus.clone(),
            machines: self.machine_ids().map(str::to_string).collect(),
        });
        node_families(&mut r, &self.local.stats, &self.local.metrics);
        let outstanding = self.side.outstanding();
        let none = std::collections::BTreeMap::new;
        r.gauge(
            "interstate_node_outstanding_messages",
            "Messages sent to other processes and not acknowledged yet.",
            none(),
            outstanding.len() as u64,
        );
        r.gauge(
            "interstate_node_outstanding_bytes",
            "Bytes those messages hold in the outstanding buffer.",
            none(),
            outstanding.bytes_held() as u64,
        );
        r.gauge(
            "interstate_node_machines",
            "Machines this process hosts.",
            none(),
            self.local.machines.iter().filter(|h| !h.vacant).count() as u64,
        );
        if detailed {
            // (A stopped child's free slot is no machine.)
            for h in self.local.machines.iter().filter(|h| !h.vacant) {
                let l = || labels([("machine", h.id.as_str())]);
                let s = h.machine.stats();
                let c = h.counters;
                r.counter(
                    "interstate_machine_messages_received",
                    "Messages delivered to the machine.",
                    l(),
                    c.received,
                );
                r.counter(
                    "interstate_machine_messages_sent",
                    "Messages the machine sent (each receiver of a broadcast counts).",
                    l(),
                    c.sent,
                );
                r.counter(
                    "interstate_machine_delivery_failures",
                    "Failure reports of the machine's messages.",
                    l(),
                    c.failed,
                );
                r.counter(
                    "interstate_machine_events",
                    "External events the machine processed (messages and timers).",
                    l(),
                    s.events,
                );
                r.gauge(
                    "interstate_machine_outbox",
                    "Messages in the machine's outbox, waiting to be routed.",
                    l(),
                    h.machine.outbox_len() as u64,
                );
            }
        }
        if let Side::Hub(h) = &self.side {
            hub_families(&mut r, h, detailed);
        }
        r
    }

    /// The report as JSON that fits in one frame of at most `max_frame` bytes: without the
    /// per-machine and per-link samples (and `interstate_report_truncated` 1) when the
    /// whole does not.
    fn report_json(&self, max_frame: usize) -> String {
        let full = self.metrics_report(true).to_json();
        if full.len() + FRAME_OVERHEAD <= max_frame {
            return full;
        }
        let mut short = self.metrics_report(false);
        short.gauge(
            "interstate_report_truncated",
            "1 when per-machine and per-link samples were left out to fit a frame.",
            std::collections::BTreeMap::new(),
            1,
        );
        short.to_json()
    }

    /// Asks the bus for every process's metrics (a client only: the hub's own process
    /// reads [`Node::metrics`]). The answers arrive as the loop runs:
    /// [`Node::next_stats_answer`].
    pub fn request_stats(&mut self) -> Result<(), crate::PlatformError> {
        let Side::Client(c) = &mut self.side else {
            return Err(crate::PlatformError::Rejected {
                message: "the hub's own process reads its metrics with Node::metrics".into(),
            });
        };
        let Some(conn) = c.conn.as_mut() else {
            return Err(crate::PlatformError::NoHub {
                path: self.config.socket_path(),
            });
        };
        conn.queue(&Frame::StatsRequest { link: 0 }).map_err(|_| {
            crate::PlatformError::Rejected {
                message: "no room on the hub link for the stats request".into(),
            }
        })?;
        self.flush_all();
        Ok(())
    }

    /// The next answer to [`Node::request_stats`], in arrival order.
    pub fn next_stats_answer(&mut self) -> Option<StatsAnswer> {
        self.stats_answers.pop_front()
    }

    /// Answers a stats request: a client sends its report for `asker` to the hub; the hub's
    /// own process sends the asker its report, saying how many other processes will.
    pub(super) fn answer_stats(&mut self, asker: u32, nodes: u32) {
        let max_frame = match &self.side {
            Side::Client(c) => match c.conn.as_ref() {
                Some(conn) => conn.max_frame() as usize,
                None => return,
            },
            Side::Hub(h) => match h.links.get(asker as usize).and_then(Option::as_ref) {
                Some(l) => l.conn.max_frame() as usize,
                None => return,
            },
        };
        let json = self.report_json(max_frame);
        let queued = match &mut self.side {
            Side::Client(c) => c.conn.as_mut().map(|conn| {
                conn.queue(&Frame::Stats {
                    link: asker,
                    expect: 0,
                    report: json.as_bytes(),
                })
            }),
            Side::Hub(h) => h
                .links
                .get_mut(asker as usize)
                .and_then(Option::as_mut)
                .map(|l| {
                    l.urgent = true;
                    l.conn.queue(&Frame::Stats {
                        link: 0,
                        expect: nodes,
                        report: json.as_bytes(),
                    })
                }),
        };
        if let Some(Err(_)) = queued {
            log::warn!(
                target: "interstate::node",
                "no room to answer a stats request ({} bytes); the asker times out",
                json.len()
            );
        }
    }
}

/// The node-wide families.
fn node_families(r: &mut Report, s: &NodeStats, m: &NodeMetrics) {
    let none = std::collections::BTreeMap::new;
    r.counter(
        "interstate_node_messages_received",
        "Messages delivered to this process's machines and ports.",
        none(),
        s.received,
    );
    r.counter(
        "interstate_node_messages_sent",
        "Messages this process's machines sent, by where they went (local: to a machine of \
         this process).",
        labels([("scope", "remote")]),
        s.sent_remote,
    );
    r.counter(
        "interstate_node_messages_sent",
        "",
        labels([("scope", "local")]),
        s.sent_local,
    );
    for reason in ALL_FAIL_REASONS {
        r.counter(
            "interstate_node_delivery_failures",
            "Failure reports given to this process's senders, by reason.",
            labels([("reason", reason.code())]),
            m.failed_by_reason[fail_reason_index(reason)],
        );
    }
    r.counter(
        "interstate_node_connects",
        "Connections to the hub made (the first included; 0 for the hub's own process).",
        none(),
        s.connects,
    );
    r.counter(
        "interstate_node_reconnects",
        "Connections to the hub after the first (after a lost hub or a takeover).",
        none(),
        s.connects.saturating_sub(1),
    );
    r.counter(
        "interstate_node_duplicate_filter_full",
        "Messages refused because the duplicate filter was full (they stay with their senders).",
        none(),
        s.duplicate_filter_full,
    );
    r.counter(
        "interstate_node_late_replies",
        "Replies dropped because their request was settled already.",
        none(),
        s.late_replies,
    );
    r.counter(
        "interstate_node_state_reports",
        "State reports sent for watched machines.",
        none(),
        s.state_reports,
    );
    r.counter(
        "interstate_node_payload_copies",
        "Copies of message payloads this process made.",
        none(),
        s.payload_copies,
    );
    r.histogram(
        "interstate_node_ack_latency_seconds",
        "Time from a message's send to its acknowledgement (sampled: one message in flight \
         at a time).",
        none(),
        &m.ack_latency,
    );
    r.counter(
        "interstate_node_ack_probes_given_up",
        "Timed messages not acknowledged within 60 s (failed, or their receiver left).",
        none(),
        m.probes_given_up,
    );
}

/// The hub's families: its counters, failures by reason, and each link's counters and
/// write queue (with `detailed`).
fn hub_families(r: &mut Report, h: &HubSide, detailed: bool) {
    let none = std::collections::BTreeMap::new;
    let s = h.hub.stats();
    let counters: [(&str, &str, u64); 12] = [
        (
            "interstate_hub_messages_routed",
            "Messages the hub routed to their target's link.",
            s.delivered,
        ),
        (
            "interstate_hub_links_opened",
            "Connections admitted (reconnects included).",
            s.links_opened,
        ),
        (
            "interstate_hub_links_rejected",
            "Connections refused at admission or handshake.",
            s.rejected,
        ),
        (
            "interstate_hub_protocol_errors",
            "Links closed for malformed or out-of-order frames.",
            s.protocol_errors,
        ),
        (
            "interstate_hub_spoofed",
            "Frames whose sender did not own the id it sent as.",
            s.spoofed,
        ),
        (
            "interstate_hub_reserved_refused",
            "Messages refused for an event of the reserved xstate. namespace.",
            s.reserved,
        ),
        (
            "interstate_hub_monitor_dropped",
            "Monitor copies dropped because a monitor was slow.",
            s.monitor_dropped,
        ),
        (
            "interstate_hub_reports_dropped",
            "State reports not forwarded to a watcher whose queue was full.",
            s.reports_dropped,
        ),
        (
            "interstate_hub_watches_refused",
            "Watches refused because the watch table was full.",
            s.watches_refused,
        ),
        (
            "interstate_hub_stats_requests",
            "Stats requests the hub handled.",
            s.stats_requests,
        ),
        (
            "interstate_hub_direct_pairs_opened",
            "Direct ring pairs offered to two clients in shared memory.",
            s.direct_pairs_opened,
        ),
        (
            "interstate_hub_direct_pairs_closed",
            "Direct ring pairs closed (a side left or refused, a monitor attached).",
            s.direct_pairs_closed,
        ),
    ];
    for (name, help, v) in counters {
        r.counter(name, help, none(), v);
    }
    for reason in ALL_FAIL_REASONS {
        r.counter(
            "interstate_hub_delivery_failures",
            "Messages the hub reported failed, by reason.",
            labels([("reason", reason.code())]),
            s.failed_by_reason[fail_reason_index(reason)],
        );
    }
    r.gauge(
        "interstate_hub_links",
        "Links open now (the hub's own process excluded).",
        none(),
        u64::from(s.links),
    );
    r.gauge(
        "interstate_hub_machines",
        "Machine ids registered on the bus now.",
        none(),
        h.hub.machines().count() as u64,
    );
    if !detailed {
        return;
    }
    for l in h.hub.links() {
        let link = l.link.to_string();
        let pid = l.peer.pid.to_string();
        let lbl = || {
            labels([
                ("link", link.as_str()),
                ("pid", pid.as_str()),
                ("executable", l.executable),
            ])
        };
        let c = l.counters;
        let per_link: [(&str, &str, u64); 5] = [
            (
                "interstate_link_frames_in",
                "Frames the hub read from the link.",
                c.frames_in,
            ),
            (
                "interstate_link_bytes_in",
                "Bytes of those frames (length prefixes excluded).",
                c.bytes_in,
            ),
            (
                "interstate_link_messages_in",
                "Messages from the link routed to their target.",
                c.messages_in,
            ),
            (
                "interstate_link_messages_out",
                "Messages routed to the link.",
                c.messages_out,
            ),
            (
                "interstate_link_delivery_failures",
                "Failure reports the hub queued for the link.",
                c.failures,
            ),
        ];
        for (name, help, v) in per_link {
            r.counter(name, help, lbl(), v);
        }
        r.gauge(
            "interstate_link_machines",
            "Machine ids the link registered.",
            lbl(),
            l.machines as u64,
        );
        let queued = h
            .links
            .get(l.link as usize)
            .and_then(Option::as_ref)
            .map_or(0, |lc| lc.conn.pending());
        r.gauge(
            "interstate_link_queue_bytes",
            "Bytes waiting in the link's write queue (0 for the hub's own process).",
            lbl(),
            queued as u64,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_times_one_message_until_an_ack_covers_it() {
        let mut m = NodeMetrics::default();
        let t = interstate_core::Instant::from_millis(1_000);
        m.sent_remote(t, "a", "b", 5);
        // Another message while one is timed: not timed.
        m.sent_remote(t, "a", "c", 1);
        // An ack of another pair, or of an earlier message: nothing.
        m.acked("a", "c", 9);
        m.acked("a", "b", 4);
        assert_eq!(m.ack_latency.count(), 0);
        // A cumulative ack past it: one sample.
        m.acked("a", "b", 7);
        assert_eq!(m.ack_latency.count(), 1);
        // The next probe starts a millisecond of turns after the last one, not sooner.
        m.sent_remote(t, "a", "c", 2);
        m.acked("a", "c", 2);
        assert_eq!(m.ack_latency.count(), 1);
        m.sent_remote(t + PROBE_EVERY, "a", "c", 3);
        m.acked("a", "c", 3);
        assert_eq!(m.ack_latency.count(), 2);
    }

    #[test]
    fn a_probe_unacknowledged_for_a_minute_of_turns_is_given_up() {
        let mut m = NodeMetrics::default();
        let t = interstate_core::Instant::from_millis(1_000);
        m.sent_remote(t, "a", "b", 5);
        // Within the minute: the probe stays, the new message is not timed.
        let almost = interstate_core::Instant::from_millis(1_000 + 59_999);
        m.sent_remote(almost, "a", "c", 1);
        assert_eq!(m.probes_given_up, 0);
        m.acked("a", "c", 1);
        assert_eq!(m.ack_latency.count(), 0);
        // A minute later by the turn's clock: given up, and the new message is timed.
        m.sent_remote(t + PROBE_GIVEN_UP_AFTER, "a", "c", 2);
        assert_eq!(m.probes_given_up, 1);
        m.acked("a", "c", 2);
        assert_eq!(m.ack_latency.count(), 1);
    }

    #[test]
    fn failures_count_by_reason() {
        let mut m = NodeMetrics::default();
        m.failed(FailReason::TargetGone);
        m.failed(FailReason::TargetGone);
        m.failed(FailReason::UnknownTarget);
        let mut r = Report::default();
        node_families(&mut r, &NodeStats::default(), &m);
        let v = |reason| r.value("interstate_node_delivery_failures", &[("reason", reason)]);
        assert_eq!(v("target-gone"), Some(2));
        assert_eq!(v("unknown-target"), Some(1));
        assert_eq!(v("queue-full"), Some(0));
    }
}

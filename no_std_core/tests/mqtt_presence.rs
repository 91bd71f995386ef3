//! Which nodes are there (`interstate_core::mqtt::presence`), on a virtual clock: the status
//! payloads, the rule for wills, runs and the grace, and a simulated broker between a
//! sending bridge (A) and a receiving one (B) that restarts gracefully (sessions, queued
//! messages and retained statuses kept, every client's last will published as it shuts
//! down), is killed (everything lost), or outlives B's bridge (killed, perhaps started
//! again). Every message must end exactly one way (answered delivered, or reported failed),
//! none delivered twice or after its sender was told it failed; a broker restart shorter
//! than half the grace fails nothing.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use interstate_core::mqtt::presence::{
    parse_status, resumes_run, sent_to_this_run, status_lost, status_up, Change, NodeStatus,
    Presence,
};
use interstate_core::{Duration, Instant};
use proptest::prelude::*;

const GRACE: u64 = 10_000;

fn at(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

#[test]
fn status_payloads_read_back() {
    assert_eq!(
        parse_status(status_up(7, 1234).as_bytes()),
        Some(NodeStatus::Up {
            run: 7,
            connection: 1234
        })
    );
    assert_eq!(
        parse_status(status_lost(1234).as_bytes()),
        Some(NodeStatus::Lost { connection: 1234 })
    );
    assert_eq!(parse_status(b"down"), Some(NodeStatus::Stopped));
    // An older bridge: one number per connection, or none.
    assert_eq!(
        parse_status(b"up:55"),
        Some(NodeStatus::Up {
            run: 55,
            connection: 55
        })
    );
    assert_eq!(
        parse_status(b"up"),
        Some(NodeStatus::Up {
            run: 0,
            connection: 0
        })
    );
    for junk in [
        &b"upx"[..],
        b"up:a",
        b"down:",
        b"down:x",
        b"",
        b"\xff",
        b"up:1:2:3",
    ] {
        assert_eq!(parse_status(junk), None, "{junk:?}");
    }
}

#[test]
fn a_will_within_the_grace_keeps_everything_and_the_same_run_back_fails_nothing() {
    let mut p: Presence<u8, 4> = Presence::new(Duration::from_millis(GRACE));
    let up = |run, connection| NodeStatus::Up { run, connection };
    assert_eq!(
        p.status(1, up(5, 100), at(0)),
        Ok(Change::Up { back: false })
    );
    assert!(p.is_up(1) && p.counts(1));
    assert_eq!(
        p.status(1, NodeStatus::Lost { connection: 100 }, at(1_000)),
        Ok(Change::Absent)
    );
    assert!(!p.is_up(1) && p.is_absent(1) && p.counts(1));
    assert_eq!(p.run_of(1), Some(5));
    assert_eq!(p.next_deadline(), Some(at(11_000)));
    assert_eq!(p.expired(at(10_999)), None);
    // The broker (restarted) hands the retained will again: nothing new.
    assert_eq!(
        p.status(1, NodeStatus::Lost { connection: 100 }, at(2_000)),
        Ok(Change::Nothing)
    );
    assert_eq!(
        p.next_deadline(),
        Some(at(11_000)),
        "the grace is not renewed"
    );
    assert_eq!(
        p.status(1, up(5, 200), at(3_000)),
        Ok(Change::Up { back: true })
    );
    assert!(p.is_up(1));
    assert_eq!(p.next_deadline(), None);
    assert_eq!(p.expired(at(20_000)), None);
}

#[test]
fn a_will_older_than_the_current_connection_is_ignored() {
    let mut p: Presence<u8, 4> = Presence::new(Duration::from_millis(GRACE));
    p.status(
        1,
        NodeStatus::Up {
            run: 5,
            connection: 100,
        },
        at(0),
    )
    .unwrap();
    p.status(
        1,
        NodeStatus::Up {
            run: 5,
            connection: 200,
        },
        at(1),
    )
    .unwrap();
    assert_eq!(
        p.status(1, NodeStatus::Lost { connection: 100 }, at(2)),
        Ok(Change::Nothing)
    );
    assert!(p.is_up(1));
    // So is an up older than what was seen.
    assert_eq!(
        p.status(
            1,
            NodeStatus::Up {
                run: 4,
                connection: 150
            },
            at(3)
        ),
        Ok(Change::Nothing)
    );
    assert_eq!(p.run_of(1), Some(5));
}

#[test]
fn the_grace_passing_a_new_run_or_a_clean_stop_take_the_node_down() {
    let mut p: Presence<u8, 4> = Presence::new(Duration::from_millis(GRACE));
    let up = |run, connection| NodeStatus::Up { run, connection };
    // Absent for the whole grace: down.
    p.status(1, up(5, 100), at(0)).unwrap();
    p.status(1, NodeStatus::Lost { connection: 100 }, at(1_000))
        .unwrap();
    assert_eq!(p.expired(at(11_000)), Some(1));
    assert_eq!(p.expired(at(11_000)), None, "once");
    assert!(!p.counts(1));
    assert_eq!(p.run_of(1), None);
    // Back in a new run (it was away for more than half the grace).
    assert_eq!(p.status(1, up(6, 300), at(12_000)), Ok(Change::NewRun));
    assert!(p.is_up(1));
    // Restarted within the grace: a new run.
    p.status(1, NodeStatus::Lost { connection: 300 }, at(13_000))
        .unwrap();
    assert_eq!(p.status(1, up(7, 400), at(13_500)), Ok(Change::NewRun));
    // A clean stop: down at once.
    assert_eq!(
        p.status(1, NodeStatus::Stopped, at(14_000)),
        Ok(Change::Down)
    );
    assert_eq!(
        p.status(1, NodeStatus::Stopped, at(14_001)),
        Ok(Change::Nothing)
    );
    // A will of a node never seen up: down, nothing to wait for.
    assert_eq!(
        p.status(2, NodeStatus::Lost { connection: 9 }, at(0)),
        Ok(Change::Down)
    );
    assert!(!p.counts(2));
}

#[test]
fn a_node_resumes_its_run_only_with_its_session_and_a_short_absence() {
    let grace = Duration::from_millis(GRACE);
    let ms = Duration::from_millis;
    assert!(
        !resumes_run(true, true, ms(0), grace),
        "a bridge's first connection"
    );
    assert!(resumes_run(false, true, ms(5_000), grace));
    assert!(!resumes_run(false, true, ms(5_001), grace));
    assert!(
        !resumes_run(false, false, ms(10), grace),
        "the broker lost its session"
    );
    assert!(sent_to_this_run(0, 9) && sent_to_this_run(9, 0) && sent_to_this_run(9, 9));
    assert!(!sent_to_this_run(8, 9));
}

// ---- The simulated broker and two bridges ----

const A: &str = "a";
const B: &str = "b";

#[derive(Clone, Debug)]
enum Pkt {
    Status {
        node: &'static str,
        payload: Vec<u8>,
    },
    Msg {
        seq: u64,
        stamp: u64,
    },
    Answer {
        seq: u64,
        ok: bool,
    },
}

#[derive(Default)]
struct Broker {
    up: bool,
    retained: BTreeMap<&'static str, Vec<u8>>,
    /// Each client's session: what is queued for it (present while it has a session).
    sessions: BTreeMap<&'static str, VecDeque<Pkt>>,
    connected: BTreeMap<&'static str, u64>,
}

impl Broker {
    /// A QoS 1 publication from `from`: to the other client's session (statuses), to the
    /// inbox's owner (messages to B, answers to A).
    fn publish(&mut self, from: &'static str, pkt: Pkt) {
        let to = match &pkt {
            Pkt::Status { node, payload } => {
                self.retained.insert(node, payload.clone());
                if from == A {
                    B
                } else {
                    A
                }
            }
            Pkt::Msg { .. } => B,
            Pkt::Answer { .. } => A,
        };
        if let Some(q) = self.sessions.get_mut(to) {
            q.push_back(pkt);
        }
    }

    /// The connection of `client` ended without a DISCONNECT: its will.
    fn will(&mut self, client: &'static str) {
        if let Some(c) = self.connected.remove(client) {
            let payload = status_lost(c).as_bytes().to_vec();
            self.publish(
                client,
                Pkt::Status {
                    node: client,
                    payload,
                },
            );
        }
    }
}

struct Bridge {
    name: &'static str,
    alive: bool,
    connected: bool,
    first: bool,
    run: u64,
    connection: u64,
    last_heard: u64,
    retry_at: u64,
    backoff: u64,
    /// Publications made while disconnected (the session's store), sent after the CONNACK.
    store: Vec<Pkt>,
}

impl Bridge {
    fn new(name: &'static str, now: u64) -> Bridge {
        Bridge {
            name,
            alive: true,
            connected: false,
            first: true,
            run: now + 1,
            connection: 0,
            last_heard: now,
            retry_at: now,
            backoff: 100,
            store: Vec::new(),
        }
    }

    fn lost(&mut self, now: u64) {
        if self.connected {
            self.connected = false;
            self.last_heard = now;
            self.backoff = 100;
            self.retry_at = now + self.backoff;
        }
    }

    fn publish(&mut self, broker: &mut Broker, pkt: Pkt) {
        if self.connected {
            broker.publish(self.name, pkt);
        } else {
            self.store.push(pkt);
        }
    }

    /// Connects if due; returns whether the node lost the answers queued for it (a new
    /// session) after having had one.
    fn try_connect(&mut self, broker: &mut Broker, now: u64) -> Option<bool> {
        if !self.alive || self.connected || now < self.retry_at {
            return None;
        }
        if !broker.up {
            self.retry_at = now + self.backoff;
            self.backoff = (self.backoff * 2).min(5_000);
            return None;
        }
        self.connection = (now + 1).max(self.connection + 1);
        let session_present = broker.sessions.contains_key(self.name);
        broker.sessions.entry(self.name).or_default();
        broker.connected.insert(self.name, self.connection);
        self.connected = true;
        let resumed = resumes_run(
            self.first,
            session_present,
            Duration::from_millis(now - self.last_heard),
            Duration::from_millis(GRACE),
        );
        let session_lost = !self.first && !session_present;
        if !resumed {
            self.run = now.max(self.run + 1);
        }
        self.first = false;
        self.last_heard = now;
        for pkt in std::mem::take(&mut self.store) {
            broker.publish(self.name, pkt);
        }
        // The subscription brings the retained statuses; then this node's own.
        let others: Vec<(&'static str, Vec<u8>)> = broker
            .retained
            .iter()
            .filter(|(n, _)| **n != self.name)
            .map(|(n, p)| (*n, p.clone()))
            .collect();
        for (node, payload) in others {
            broker
                .sessions
                .get_mut(self.name)
                .unwrap()
                .push_back(Pkt::Status { node, payload });
        }
        let payload = status_up(self.run, self.connection).as_bytes().to_vec();
        broker.publish(
            self.name,
            Pkt::Status {
                node: self.name,
                payload,
            },
        );
        Some(session_lost)
    }
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    /// The broker stops (wills published, everything kept) and starts again after `down` ms.
    Graceful { down: u64 },
    /// The broker is killed (nothing kept) and starts again after `down` ms.
    Killed { down: u64 },
    /// B's bridge is killed; started again after `back` ms (a new process), or never.
    BridgeKilled { back: Option<u64> },
}

#[derive(Default, Debug)]
struct Outcome {
    sent: u64,
    delivered: BTreeMap<u64, u64>,
    duplicates: u64,
    acked: BTreeSet<u64>,
    failed: BTreeMap<u64, u64>,
    failed_twice: u64,
    /// Messages the receiver passed on after their sender was told they failed.
    delivered_after_report: u64,
    pending: usize,
    /// Whether B's machines still counted on A at the end.
    b_counts: bool,
}

/// A sends `count` messages, one every 10 ms, to B; `fault` happens at `fault_at`.
fn simulate(count: u64, fault: Fault, fault_at: u64) -> Outcome {
    let mut broker = Broker {
        up: true,
        ..Default::default()
    };
    let mut a = Bridge::new(A, 0);
    let mut b = Bridge::new(B, 1);
    let mut presence: Presence<&'static str, 4> = Presence::new(Duration::from_millis(GRACE));
    // A's side: whether B's status arrived on its current connection; what waits to be
    // published; what waits for B's answer.
    let mut fresh = false;
    let mut queued: VecDeque<u64> = VecDeque::new();
    let mut awaiting: BTreeSet<u64> = BTreeSet::new();
    // B's side: the last number passed on (its memory for the run of its process).
    let mut last: Option<u64> = None;
    let mut out = Outcome::default();
    let mut next = 1;
    let mut restart_at = None;
    let mut b_down = false;
    let fail_all = |awaiting: &mut BTreeSet<u64>, out: &mut Outcome, now: u64| {
        for s in std::mem::take(awaiting) {
            if out.failed.insert(s, now).is_some() {
                out.failed_twice += 1;
            }
        }
    };
    let end = fault_at + 120_000;
    let mut now = 0;
    while now < end {
        now += 10;
        // The fault.
        if now == fault_at {
            match fault {
                Fault::Graceful { down } | Fault::Killed { down } => {
                    if matches!(fault, Fault::Graceful { .. }) {
                        // mosquitto publishes every client's will as it shuts down, to the
                        // sessions it keeps.
                        broker.will(A);
                        broker.will(B);
                    } else {
                        broker = Broker::default();
                    }
                    broker.up = false;
                    broker.connected.clear();
                    a.lost(now);
                    b.lost(now);
                    // Statuses are learnt again on the next connection: until then A's
                    // messages wait, rather than go stamped with a run B may have left.
                    fresh = false;
                    restart_at = Some(now + down);
                }
                Fault::BridgeKilled { back } => {
                    broker.will(B);
                    b.alive = false;
                    b.connected = false;
                    restart_at = back.map(|d| now + d);
                }
            }
        }
        if restart_at == Some(now) {
            match fault {
                Fault::BridgeKilled { .. } => {
                    b = Bridge::new(B, now);
                    last = None;
                }
                _ => broker.up = true,
            }
        }
        // Connections.
        if let Some(lost_session) = a.try_connect(&mut broker, now) {
            fresh = false;
            if lost_session {
                // The answers queued for A are gone: what waits for them is not confirmed.
                fail_all(&mut awaiting, &mut out, now);
            }
        }
        b.try_connect(&mut broker, now);
        // B takes what is queued for it.
        if b.connected {
            let q = std::mem::take(broker.sessions.get_mut(B).unwrap());
            for pkt in q {
                if let Pkt::Msg { seq, stamp } = pkt {
                    let ok = if !sent_to_this_run(stamp, b.run) {
                        false
                    } else if last.is_some_and(|l| seq <= l) {
                        // Not above the last one passed on: a duplicate, dropped.
                        out.duplicates += 1;
                        continue;
                    } else {
                        if out.delivered.insert(seq, now).is_some() {
                            out.duplicates += 1;
                        }
                        if out.failed.contains_key(&seq) {
                            out.delivered_after_report += 1;
                        }
                        last = Some(seq);
                        true
                    };
                    b.publish(&mut broker, Pkt::Answer { seq, ok });
                }
            }
        }
        // A takes what is queued for it.
        let mut down = false;
        if a.connected {
            let q = std::mem::take(broker.sessions.get_mut(A).unwrap());
            for pkt in q {
                match pkt {
                    Pkt::Status { node, payload } => {
                        let status = parse_status(&payload).expect("a status");
                        match presence.status(node, status, at(now)).unwrap() {
                            Change::Nothing => {}
                            Change::Up { .. } => {
                                fresh = true;
                                b_down = false;
                            }
                            Change::NewRun => {
                                fail_all(&mut awaiting, &mut out, now);
                                fresh = true;
                                b_down = false;
                            }
                            Change::Absent => fresh = false,
                            Change::Down => {
                                down = true;
                                fresh = false;
                            }
                        }
                    }
                    Pkt::Answer { seq, ok } => {
                        if awaiting.remove(&seq) {
                            if ok {
                                out.acked.insert(seq);
                            } else if out.failed.insert(seq, now).is_some() {
                                out.failed_twice += 1;
                            }
                        }
                    }
                    Pkt::Msg { .. } => unreachable!("A has no inbox for messages here"),
                }
            }
        }
        if presence.expired(at(now)).is_some() {
            down = true;
            fresh = false;
        }
        // A's machine sends one message every 10 ms.
        if next <= count {
            queued.push_back(next);
            next += 1;
            out.sent += 1;
        }
        if down {
            // What waits for B fails; its machines leave A's bus (the port closes: what
            // waits there fails, and so does what is sent to it meanwhile).
            fail_all(&mut awaiting, &mut out, now);
            b_down = true;
        }
        if b_down {
            for s in queued.drain(..) {
                out.failed.insert(s, now);
            }
        }
        while fresh && presence.is_up(B) {
            let Some(seq) = queued.pop_front() else { break };
            let stamp = presence.run_of(B).unwrap_or(0);
            awaiting.insert(seq);
            a.publish(&mut broker, Pkt::Msg { seq, stamp });
        }
    }
    out.pending = awaiting.len() + queued.len();
    out.b_counts = presence.counts(B);
    out
}

fn check_exactly_one_way(o: &Outcome) {
    assert_eq!(o.duplicates, 0, "{o:?}");
    assert_eq!(o.failed_twice, 0, "{o:?}");
    assert_eq!(o.delivered_after_report, 0, "{o:?}");
    assert_eq!(o.pending, 0, "everything answered: {o:?}");
    for seq in 1..=o.sent {
        let acked = o.acked.contains(&seq);
        let failed = o.failed.contains_key(&seq);
        assert!(
            acked ^ failed,
            "message {seq} acked {acked} failed {failed}: {o:?}"
        );
        if acked {
            assert!(
                o.delivered.contains_key(&seq),
                "acked but not delivered: {seq}"
            );
        }
        // Delivered and reported failed: only when delivered before the report (its answer
        // was lost), never after.
        if let (Some(d), Some(f)) = (o.delivered.get(&seq), o.failed.get(&seq)) {
            assert!(
                d <= f,
                "message {seq} delivered at {d} after its failure at {f}"
            );
        }
    }
}

#[test]
fn a_graceful_broker_restart_shorter_than_half_the_grace_fails_nothing() {
    let o = simulate(1_000, Fault::Graceful { down: 1_500 }, 4_000);
    check_exactly_one_way(&o);
    assert!(o.failed.is_empty(), "{o:?}");
    assert_eq!(o.acked.len(), 1_000);
    assert!(o.b_counts, "B's machines stayed");
}

#[test]
fn a_broker_restart_longer_than_half_the_grace_fails_what_waited_and_delivers_none_of_it_after() {
    let o = simulate(1_000, Fault::Graceful { down: 7_000 }, 4_000);
    check_exactly_one_way(&o);
    assert!(o.b_counts);
}

#[test]
fn a_killed_broker_loses_messages_that_are_all_reported() {
    let o = simulate(1_000, Fault::Killed { down: 1_000 }, 4_000);
    check_exactly_one_way(&o);
}

#[test]
fn a_killed_bridge_is_down_after_the_grace_and_what_waited_fails() {
    let o = simulate(300, Fault::BridgeKilled { back: None }, 2_000);
    check_exactly_one_way(&o);
    assert!(!o.b_counts, "B's machines left");
    let failed_at = o.failed.values().copied().min().unwrap();
    assert!(
        failed_at >= 2_000 + GRACE,
        "not before the grace: {failed_at}"
    );
}

#[test]
fn a_bridge_restarted_within_the_grace_is_a_new_run_and_drops_what_was_sent_to_the_old() {
    let o = simulate(1_000, Fault::BridgeKilled { back: Some(500) }, 4_000);
    check_exactly_one_way(&o);
    assert!(!o.failed.is_empty(), "{o:?}");
    assert!(o.b_counts);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_message_ends_exactly_one_way(
        count in 1u64..600,
        fault_at in 100u64..8_000,
        kind in 0u8..4,
        down in 10u64..20_000,
    ) {
        let fault_at = fault_at / 10 * 10;
        let down = down / 10 * 10;
        let fault = match kind {
            0 => Fault::Graceful { down },
            1 => Fault::Killed { down },
            2 => Fault::BridgeKilled { back: Some(down) },
            _ => Fault::BridgeKilled { back: None },
        };
        let o = simulate(count, fault, fault_at);
        check_exactly_one_way(&o);
        if let Fault::Graceful { down } = fault {
            // Reconnection backoff: 100, 200, 400 ... ms after the loss.
            if down * 2 + 800 < GRACE / 2 {
                prop_assert!(o.failed.is_empty(), "{:?}", o);
            }
        }
    }
}

//! Direct peer rings on the simulated bus (`sim`, `sim/direct.rs`): two clients that reach
//! the hub over shared memory get a ring pair of their own, set up through the hub, and the
//! promises of `docs/guarantees.md` hold as on the hub's path: every test ends with
//! `sim::check`. The process tests of the same rules are in `cli/tests/` (see
//! `docs/guarantees.md`).

mod sim;

use interstate_core::wire::{Correlation, Deliver, FailReason, Frame, LEN_PREFIX};
use interstate_core::Duration;
use sim::{check, Sim, SimConfig};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const SETTLE: Duration = Duration::from_millis(60_000);

fn direct(pairs: usize) -> SimConfig {
    SimConfig {
        direct_pairs: pairs,
        ..SimConfig::default()
    }
}

fn bus(config: SimConfig, machines: &[&[&str]]) -> Sim {
    let mut s = Sim::new(config);
    for m in machines {
        s.add_process(m, &[]);
    }
    assert!(s.settle(SETTLE), "{}", s.describe());
    s
}

fn delivered_to(s: &Sim, to: &str) -> Vec<u64> {
    s.rec
        .delivered
        .iter()
        .filter(|d| d.to == to)
        .map(|d| d.n)
        .collect()
}

fn pairs(s: &Sim) -> usize {
    s.hub.as_ref().map_or(0, |h| h.direct_pairs().count())
}

/// Messages both ways: the first crosses the hub and makes it offer a pair; from the
/// switch-over on, messages go through the ring and the hub routes none of them.
#[test]
fn two_shared_memory_clients_switch_to_their_own_ring_and_the_hub_routes_no_more() {
    let mut s = bus(direct(1), &[&["a"], &["b"]]);
    let mut to_b = Vec::new();
    let mut to_a = Vec::new();
    for _ in 0..200 {
        to_b.push(s.send(0, "a", "b").unwrap());
        to_a.push(s.send(1, "b", "a").unwrap());
        s.run_for(ms(1));
    }
    assert!(s.settle(SETTLE), "{}", s.describe());
    check(&s).unwrap();
    assert_eq!(delivered_to(&s, "b"), to_b, "every message once, in order");
    assert_eq!(delivered_to(&s, "a"), to_a, "every message once, in order");
    assert_eq!(pairs(&s), 1);
    let routed = s.rec.routed.len();
    assert!(routed <= 8, "the hub routed only the first few: {routed}");
    assert!(s.rec.ring_reads >= 390, "ring reads: {}", s.rec.ring_reads);
    assert!(s.rec.ring_refusals.is_empty(), "{:?}", s.rec.ring_refusals);
}

/// A stream from the start, the hub's link slow and the ring instant: the messages that
/// were on their way through the hub when the pair opened arrive before the ring's first
/// ones (the ring is read only after the other side's DirectOpen came through the hub).
#[test]
fn messages_in_flight_through_the_hub_are_not_overtaken_by_the_rings_first_ones() {
    let mut s = bus(direct(1), &[&["a"], &["b"]]);
    s.set_delay(0, ms(20));
    s.set_delay(1, ms(20));
    let mut sent = Vec::new();
    for _ in 0..200 {
        for _ in 0..5 {
            sent.push(s.send(0, "a", "b").unwrap());
        }
        s.run_for(ms(1));
    }
    assert!(s.settle(SETTLE), "{}", s.describe());
    check(&s).unwrap();
    assert_eq!(delivered_to(&s, "b"), sent, "in the order sent, each once");
    assert!(s.rec.routed.len() >= 5, "some crossed the hub first");
    assert!(
        s.rec.ring_reads > 500,
        "most went by the ring: {}",
        s.rec.ring_reads
    );
}

/// A peer SIGKILLed mid-stream: its ids leave the registry, the hub closes the pair, and the
/// sender hears a failure for everything not acknowledged. Nothing is lost silently.
#[test]
fn a_peer_killed_mid_stream_through_the_ring_has_its_messages_reported_failed() {
    let mut s = bus(direct(1), &[&["src"], &["dst"]]);
    for i in 0..200 {
        s.send(0, "src", "dst");
        s.run_for(ms(1));
        if i == 100 {
            assert_eq!(pairs(&s), 1, "the pair is busy when the peer dies");
            s.kill(1);
        }
    }
    assert!(s.settle(SETTLE), "{}", s.describe());
    let summary = check(&s).unwrap();
    let settled =
        summary.delivered_once + summary.failed_once + summary.delivered_and_reported_failed;
    assert_eq!(settled, 200, "{summary:?}");
    let reasons: Vec<_> = s.rec.failed.iter().map(|f| f.reason).collect();
    assert!(reasons.contains(&FailReason::TargetGone), "{reasons:?}");
    assert_eq!(pairs(&s), 0, "the pair closed with its process");
}

/// The hub restarts while the pair is busy: both clients drop the ring with their hub link,
/// send again what was not acknowledged through the new hub, and get a new pair there.
/// Every message once, in order, none failed.
#[test]
fn a_hub_restart_while_a_pair_is_busy_loses_nothing_and_pairs_them_again() {
    let mut s = bus(direct(1), &[&["src"], &["dst"]]);
    let mut sent = Vec::new();
    for i in 0..2_000 {
        sent.push(s.send(0, "src", "dst").unwrap());
        s.run_for(ms(1));
        if i == 1_000 {
            assert_eq!(pairs(&s), 1);
            s.restart_hub(ms(300));
        }
    }
    assert!(s.settle(SETTLE), "{}", s.describe());
    check(&s).unwrap();
    assert_eq!(delivered_to(&s, "dst"), sent, "every event once, in order");
    assert!(s.rec.failed.is_empty(), "{:?}", s.rec.failed);
    assert_eq!(s.rec.connects, [2, 2], "both reconnected");
    assert_eq!(pairs(&s), 1, "paired again on the new hub");
}

/// A monitor attaches mid-stream: the hub closes the pair (monitors see what crosses the
/// hub), what the ring held unacknowledged goes again through the hub, and no pair opens
/// while the monitor is there. Every message once, in order.
#[test]
fn a_monitor_attaching_sends_the_pair_back_through_the_hub_in_order() {
    let mut s = bus(direct(1), &[&["src"], &["dst"], &[]]);
    let mut sent = Vec::new();
    let mut attached = s.now;
    for i in 0..300 {
        for _ in 0..3 {
            sent.push(s.send(0, "src", "dst").unwrap());
        }
        s.run_for(ms(1));
        if i == 100 {
            assert_eq!(pairs(&s), 1);
            s.subscribe_monitor(2);
            attached = s.now;
        }
    }
    assert!(s.settle(SETTLE), "{}", s.describe());
    check(&s).unwrap();
    assert_eq!(delivered_to(&s, "dst"), sent, "every event once, in order");
    assert!(s.rec.failed.is_empty(), "{:?}", s.rec.failed);
    assert_eq!(pairs(&s), 0, "no pair while a monitor is attached");
    let late = s.rec.routed.iter().filter(|r| r.1 > attached).count();
    assert!(
        late >= 400,
        "after the monitor, the hub routes them: {late}"
    );
}

/// A process that does not take direct pairs, or has no room for another, stays on the
/// hub's path: three processes taking one pair each get one pair, and the rest crosses the
/// hub.
#[test]
fn a_process_without_room_or_consent_stays_on_the_hubs_path() {
    let mut s = bus(direct(1), &[&["a"], &["b"], &["c"]]);
    for _ in 0..100 {
        s.send(0, "a", "b");
        s.send(0, "a", "c");
        s.send(2, "c", "b");
        s.run_for(ms(1));
    }
    assert!(s.settle(SETTLE), "{}", s.describe());
    check(&s).unwrap();
    assert!(s.rec.failed.is_empty(), "{:?}", s.rec.failed);
    assert_eq!(pairs(&s), 1, "one pair: each process has room for one");
    assert!(s.rec.routed.len() >= 190, "the others cross the hub");

    let mut s = bus(SimConfig::default(), &[&["a"], &["b"]]);
    for _ in 0..50 {
        s.send(0, "a", "b");
        s.run_for(ms(1));
    }
    assert!(s.settle(SETTLE), "{}", s.describe());
    check(&s).unwrap();
    assert_eq!(pairs(&s), 0, "no pair without consent");
    assert_eq!(s.rec.ring_reads, 0);
}

/// A forged frame on a ring (a sender id the other process does not own, then a control
/// frame) closes the pair on the reader's side: nothing from the ring is taken for it, and
/// what the honest sender had in the ring goes again through the hub, in order.
#[test]
fn a_ring_carrying_a_forged_sender_closes_the_pair_and_nothing_is_lost() {
    let mut s = bus(direct(2), &[&["a"], &["b"], &["victim"]]);
    let mut sent = Vec::new();
    for _ in 0..20 {
        sent.push(s.send(0, "a", "b").unwrap());
        s.run_for(ms(1));
    }
    assert_eq!(pairs(&s), 1);
    let forged = Frame::Deliver(Deliver {
        from: "victim",
        to: "b",
        event: "E999999",
        payload: &[],
        seq: 1,
        correlation: Correlation::None,
    });
    let mut buf = vec![0u8; forged.encoded_len()];
    let n = forged.encode(&mut buf).unwrap();
    assert!(s.inject_ring(0, 1, &buf[LEN_PREFIX..n]));
    for _ in 0..20 {
        sent.push(s.send(0, "a", "b").unwrap());
        s.run_for(ms(1));
    }
    assert!(s.settle(SETTLE), "{}", s.describe());
    check(&s).unwrap();
    assert_eq!(delivered_to(&s, "b"), sent, "every event once, in order");
    assert!(!s.rec.delivered.iter().any(|d| d.n == 999_999), "forged");
    assert_eq!(s.rec.ring_refusals.len(), 1, "{:?}", s.rec.ring_refusals);
    assert!(s.rec.ring_refusals[0].1.contains("not the other process"));
    assert_eq!(
        pairs(&s),
        0,
        "the pair stays closed: the refusing link gets no offers"
    );
}

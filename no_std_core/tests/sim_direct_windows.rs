//! Direct peer rings on the simulated bus, the narrow windows of a pair's switch-over: the
//! hub has offered a pair (`DirectOffer`) and a side's `DirectOpen` has not yet reached the
//! other one, when the receiver dies, loses its link, a message fails, or the hub restarts.
//! Each test drives the disruption at every millisecond of the switch-over (the links slow,
//! so that the offer, each side's open and the close are all in flight at some point) and
//! checks, after the bus settles, that the promises of `docs/guarantees.md` held (`check`:
//! nothing lost silently, nothing delivered or reported twice, in order) and that no pair is
//! left open to a process that is gone or no longer holds it.

mod sim;

use std::collections::BTreeMap;

use interstate_core::wire::FailReason;
use interstate_core::Duration;
use sim::{check, Sim, SimConfig};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const SETTLE: Duration = Duration::from_millis(60_000);

/// Each link's delay each way: the offer reaches the clients 10 ms after the first message
/// left, each open the other side 10 ms after that.
const LINK_DELAY: u64 = 5;

/// The switch-over's span, swept a millisecond at a time.
const WINDOW: u64 = 30;

/// Each disruption time of the switch-over, with the rings as fast as can be and slower
/// than the hub's links (so that a close through the hub may overtake what a ring holds).
fn sweep() -> impl Iterator<Item = (u64, u64)> {
    [0, 7]
        .into_iter()
        .flat_map(|ring| (0..WINDOW).map(move |at| (at, ring)))
}

/// Two processes, `a` and `b`, whose rings take `ring_delay` ms.
fn bus(durable: &[&str], ring_delay: u64) -> Sim {
    let mut s = Sim::new(SimConfig {
        direct_pairs: 1,
        direct_delay: ms(ring_delay),
        durable: durable.iter().map(|d| d.to_string()).collect(),
        ..SimConfig::default()
    });
    s.add_process(&["a"], &[]);
    s.add_process(&["b"], &[]);
    assert!(s.settle(SETTLE), "{}", s.describe());
    s.set_delay(0, ms(LINK_DELAY));
    s.set_delay(1, ms(LINK_DELAY));
    s
}

fn delivered(s: &Sim, from: &str, to: &str) -> Vec<u64> {
    s.rec
        .delivered
        .iter()
        .filter(|d| d.from == from && d.to == to)
        .map(|d| d.n)
        .collect()
}

/// Every pair the hub keeps is held by two live processes, and every pair a live process
/// holds is one the hub keeps: none is left open to a process that is gone, or that
/// dropped it.
fn pairs_agree(s: &Sim) -> Result<(), String> {
    let mut held: BTreeMap<u32, usize> = BTreeMap::new();
    for pr in s.procs.iter().flatten() {
        for pair in pr.rings.iter().flatten() {
            *held.entry(*pair).or_default() += 1;
        }
    }
    let hub: Vec<u32> = s
        .hub
        .as_ref()
        .map(|h| h.direct_pairs().map(|p| p.0).collect())
        .unwrap_or_default();
    for pair in &hub {
        if held.get(pair) != Some(&2) {
            return Err(format!(
                "the hub keeps pair {pair}, held by {:?} processes",
                held.get(pair)
            ));
        }
    }
    for pair in held.keys() {
        if !hub.contains(pair) {
            return Err(format!("a process holds pair {pair}, the hub does not"));
        }
    }
    Ok(())
}

/// Both ways, a message a millisecond, from 0 (`a`) to 1 (`b`) and back; `disrupt` runs
/// `at` ms after the first message left; the stream goes on 200 ms after it, then the bus
/// settles.
fn stream_with(s: &mut Sim, at: u64, disrupt: &mut dyn FnMut(&mut Sim)) -> u8 {
    let mut met = 0;
    for i in 0..(at + 200) {
        s.send(0, "a", "b");
        s.send(1, "b", "a");
        if i == at {
            met = phase(s);
            disrupt(s);
        }
        s.run_for(ms(1));
    }
    assert!(s.settle(SETTLE), "at {at}: {}", s.describe());
    met
}

/// Where the switch-over stands: 0 no pair offered yet, 1 offered and some side's open not
/// yet arrived at the other, 2 open both ways.
fn phase(s: &Sim) -> u8 {
    if s.hub.as_ref().map_or(0, |h| h.direct_pairs().count()) == 0 {
        return 0;
    }
    let open_both_ways = s.procs.iter().flatten().all(|pr| {
        (0..pr.rings.len()).any(|k| pr.rings[k].is_some() && pr.client.direct().readable(k))
    });
    if open_both_ways {
        2
    } else {
        1
    }
}

/// The sweep met every phase of the switch-over (`phases`: the phase at each disruption).
fn swept(phases: &[u8]) {
    for want in 0..3 {
        assert!(phases.contains(&want), "phase {want} not met: {phases:?}");
    }
}

/// Checks one run's outcome: the promises, the pairs, and that a sender that lived on had
/// each of its messages to a receiver that lived on delivered once, in order.
fn outcome(s: &Sim, at: u64, live_senders: &[(&str, &str)]) {
    check(s).unwrap_or_else(|e| panic!("disrupted at {at} ms: {e}\n{}", s.describe()));
    pairs_agree(s).unwrap_or_else(|e| panic!("disrupted at {at} ms: {e}\n{}", s.describe()));
    for (from, to) in live_senders {
        let sent: Vec<u64> = s
            .rec
            .sent
            .iter()
            .filter(|m| m.from == *from && m.to == *to)
            .map(|m| m.n)
            .collect();
        assert_eq!(
            delivered(s, from, to),
            sent,
            "disrupted at {at} ms: {from} to {to}, every message once, in order"
        );
    }
}

/// The receiver (`b`'s process) is SIGKILLed at each point of the switch-over and started
/// again: the hub closes the pair with its link (or finds it closed when the open comes),
/// the sender fails what it had not had acknowledged (through the ring or not) once, as
/// `target-gone`, and pairs again with the new process.
#[test]
fn the_receiver_killed_anywhere_in_the_switch_over_fails_what_it_had_not_acknowledged_once() {
    let mut phases = Vec::new();
    for (at, ring) in sweep() {
        let mut s = bus(&[], ring);
        phases.push(stream_with(&mut s, at, &mut |s| {
            s.kill(1);
            s.restart(1);
        }));
        outcome(&s, at, &[]);
        assert!(
            s.rec
                .failed
                .iter()
                .all(|f| f.reason == FailReason::TargetGone && f.from == "a"),
            "at {at}: {:?}",
            s.rec.failed
        );
        let pairs = s.hub.as_ref().unwrap().direct_pairs().count();
        assert_eq!(pairs, 1, "at {at}: paired again with the new process");
    }
    swept(&phases);
}

/// The receiver loses its hub link at each point of the switch-over (its rings go with it)
/// and the hub notices only later, meanwhile holding the pair and the receiver's ids: the
/// sender's messages written to the ring that no one reads go again through the hub once it
/// closes the pair, and the receiver, back on the bus, takes each once.
#[test]
fn the_receiver_losing_its_link_in_the_switch_over_loses_no_message_written_to_the_ring() {
    let mut phases = Vec::new();
    for (at, ring) in sweep() {
        let mut s = bus(&[], ring);
        phases.push(stream_with(&mut s, at, &mut |s| s.cut(1, ms(20))));
        outcome(&s, at, &[]);
        // Its ids left the registry when the hub noticed: what the sender had outstanding
        // then may fail (target-gone), the rest is delivered once.
        only_target_gone(&s, at);
    }
    swept(&phases);
}

/// The hub restarts at each point of the switch-over: the offer, an open, or a close may be
/// lost with it. Both sides drop their rings with the link, send again what was not
/// acknowledged, and pair up on the new hub: every message once, in order, none failed.
#[test]
fn a_hub_restart_anywhere_in_the_switch_over_loses_nothing_and_fails_nothing() {
    let mut phases = Vec::new();
    for (at, ring) in sweep() {
        let mut s = bus(&[], ring);
        phases.push(stream_with(&mut s, at, &mut |s| s.restart_hub(ms(20))));
        outcome(&s, at, &[("a", "b"), ("b", "a")]);
        assert!(s.rec.failed.is_empty(), "at {at}: {:?}", s.rec.failed);
        let pairs = s.hub.as_ref().unwrap().direct_pairs().count();
        assert_eq!(pairs, 1, "at {at}: paired again on the new hub");
    }
    swept(&phases);
}

/// A message of the sender to an id no one holds fails at the hub at each point of the
/// switch-over: the report holds that (sender, target) pair on the sender's link until the
/// sender confirms it, which concerns none of the messages to the pair's other side (they
/// go on through the ring, or through the hub before the switch-over); only that message
/// fails, everything else is delivered once, in order.
#[test]
fn a_failure_reported_to_the_sender_in_the_switch_over_fails_only_that_message() {
    let mut phases = Vec::new();
    for (at, ring) in sweep() {
        let mut s = bus(&[], ring);
        phases.push(stream_with(&mut s, at, &mut |s| {
            // A message of `a` to an id that is not there: reported failed on `a`'s link,
            // in the middle of the switch-over.
            let n = s.send(0, "a", "nobody").unwrap();
            assert!(n > 0);
        }));
        outcome(&s, at, &[("a", "b"), ("b", "a")]);
        let failed: Vec<_> = s
            .rec
            .failed
            .iter()
            .map(|f| (f.to.as_str(), f.reason))
            .collect();
        assert_eq!(
            failed,
            [("nobody", FailReason::UnknownTarget)],
            "at {at}: only the message to no one fails"
        );
    }
    swept(&phases);
}

/// The sender (`a`'s process) is SIGKILLed at each point of the switch-over and started
/// again: what it had written to the ring and its open may be lost with it (a killed
/// sender's messages may be), but nothing is delivered twice or out of order, the other
/// side's messages to it fail once at most, and the pair closes with its link.
#[test]
fn the_sender_killed_anywhere_in_the_switch_over_leaves_no_pair_open_and_nothing_twice() {
    let mut phases = Vec::new();
    for (at, ring) in sweep() {
        let mut s = bus(&[], ring);
        phases.push(stream_with(&mut s, at, &mut |s| {
            s.kill(0);
            s.restart(0);
        }));
        outcome(&s, at, &[]);
        assert!(
            s.rec
                .failed
                .iter()
                .all(|f| f.reason == FailReason::TargetGone && f.from == "b"),
            "at {at}: {:?}",
            s.rec.failed
        );
    }
    swept(&phases);
}

/// Kills process `p` (hosting the durable `id`) and starts it again after `away`, its
/// duplicate filter restored as its journal would (the highest number it took from each
/// sender), and, as a sender, its unacknowledged messages, next number and outbox put back
/// as its journal holds them (see `sim_durable.rs`).
fn crash_and_restore_durable(s: &mut Sim, p: usize, id: &str, peer: (usize, &str), away: u64) {
    let taken = s.proc(p).accepted.clone();
    let high = s
        .rec
        .delivered
        .iter()
        .filter(|d| d.proc == p && d.from == peer.1)
        .map(|d| d.seq)
        .max();
    let peer_pid = s.proc(peer.0).pid;
    let mut unacknowledged = Vec::new();
    s.proc(p)
        .client
        .outstanding()
        .held_from(id, &mut |b| unacknowledged.push(b.to_vec()));
    let seq = s.next_seq(p, id);
    let outbox = s.proc(p).outbox.clone();
    s.kill(p);
    s.run_for(ms(away));
    s.restart(p);
    if let Some(seq) = seq {
        s.set_seq(p, id, seq);
    }
    let restored = s.proc_mut(p);
    restored.accepted = taken;
    if let Some(high) = high {
        assert!(restored
            .client
            .received_mut()
            .restore_delivered(id, peer.1, peer_pid, high));
    }
    for m in &unacknowledged {
        restored.client.outstanding_mut().push(m, false).unwrap();
    }
    restored.outbox = outbox;
}

/// Both sides durable (`a` and `b`, each journalled), the receiver's and then the sender's
/// process SIGKILLed at each point of the switch-over and mid-stream over the ring, and
/// restarted within the hub's hold: every message once, in order, none reported failed, as
/// for durable processes on the hub's path; they pair up again after.
#[test]
fn durable_sides_killed_in_the_switch_over_or_over_the_ring_lose_nothing_and_fail_nothing() {
    let mut disruptions: Vec<u64> = (0..WINDOW).collect();
    disruptions.extend([60, 120]);
    for victim in [1usize, 0] {
        for (&at, ring) in disruptions.iter().flat_map(|at| [(at, 0), (at, 7)]) {
            let mut s = bus(&["a", "b"], ring);
            let (id, peer) = if victim == 1 {
                ("b", (0, "a"))
            } else {
                ("a", (1, "b"))
            };
            stream_with(&mut s, at, &mut |s| {
                if at >= 60 {
                    assert_eq!(s.hub.as_ref().unwrap().direct_pairs().count(), 1);
                }
                crash_and_restore_durable(s, victim, id, peer, 40)
            });
            outcome(&s, at, &[("a", "b"), ("b", "a")]);
            assert!(
                s.rec.failed.is_empty(),
                "victim {victim} at {at}: {:?}",
                s.rec.failed
            );
            assert!(
                s.rec.ring_reads > 0,
                "victim {victim} at {at}: the ring was used"
            );
            let pairs = s.hub.as_ref().unwrap().direct_pairs().count();
            assert_eq!(pairs, 1, "victim {victim} at {at}: paired again");
        }
    }
}

/// The sender loses its hub link at each point of the switch-over (its rings go with it; the
/// hub notices later): what it wrote to the ring and had not had acknowledged it sends again
/// through its new link, and the receiver, which may have read some of it from the ring,
/// takes each once.
#[test]
fn the_sender_losing_its_link_in_the_switch_over_has_each_message_taken_once() {
    let mut phases = Vec::new();
    for (at, ring) in sweep() {
        let mut s = bus(&[], ring);
        phases.push(stream_with(&mut s, at, &mut |s| s.cut(0, ms(20))));
        outcome(&s, at, &[]);
        only_target_gone(&s, at);
    }
    swept(&phases);
}

/// The receiver hangs (reads and writes nothing) for 50 ms at each point of the
/// switch-over, then goes on: nothing fails, every message once, in order.
#[test]
fn a_receiver_hanging_in_the_switch_over_loses_nothing_and_fails_nothing() {
    let mut phases = Vec::new();
    for (at, ring) in sweep() {
        let mut s = bus(&[], ring);
        for i in 0..(at + 200) {
            s.send(0, "a", "b");
            s.send(1, "b", "a");
            if i == at {
                phases.push(phase(&s));
                s.proc_mut(1).frozen = true;
            }
            if i == at + 50 {
                s.proc_mut(1).frozen = false;
            }
            s.run_for(ms(1));
        }
        assert!(s.settle(SETTLE), "at {at}: {}", s.describe());
        outcome(&s, at, &[("a", "b"), ("b", "a")]);
        assert!(s.rec.failed.is_empty(), "at {at}: {:?}", s.rec.failed);
    }
    swept(&phases);
}

/// Every failure reported is `target-gone` (the receiver's ids left the registry while the
/// sender had messages outstanding to it).
fn only_target_gone(s: &Sim, at: u64) {
    assert!(
        s.rec
            .failed
            .iter()
            .all(|f| f.reason == FailReason::TargetGone),
        "at {at}: {:?}",
        s.rec.failed
    );
}

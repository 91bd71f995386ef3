//! Durable ids on the simulated bus: a durable receiver that is a client of a hub that
//! lives on, killed mid-stream and started again within the hub's hold, gets what its
//! earlier process took but had not acknowledged again, drops it as a duplicate (its filter
//! restored as from its journal) and acknowledges it: its senders see no failure. Past the
//! hold, what it never acknowledged fails as `target-gone`, as for any receiver.
//!
//! A durable *sender* killed mid-stream and restored from its journal (its next sequence
//! number, its outbox, and the messages it had sent and not had acknowledged, put back in
//! its outstanding buffer) sends those again with their numbers; the receiver, which
//! carries a durable sender's numbers over to its new process, drops those it took before:
//! every message once, none failed.

mod sim;

use interstate_core::wire::FailReason;
use interstate_core::Duration;
use sim::{check, Note, Sim, SimConfig};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const SETTLE: Duration = Duration::from_millis(60_000);

fn durable_bus(durable: &[&str], machines: &[&[&str]]) -> Sim {
    let config = SimConfig {
        durable: durable.iter().map(|s| s.to_string()).collect(),
        ..SimConfig::default()
    };
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

/// Kills process 0 (hosting the durable `dst`) and starts it again after `away`, its
/// duplicate filter restored as its journal would: the events it took, and the highest
/// number it took from each sender.
fn crash_and_restore(s: &mut Sim, away: Duration, senders: &[(&str, usize)]) {
    let taken = s.proc(0).accepted.clone();
    let highs: Vec<(String, u32, u64)> = senders
        .iter()
        .filter_map(|&(from, p)| {
            let high = s
                .rec
                .delivered
                .iter()
                .filter(|d| d.proc == 0 && d.from == from)
                .map(|d| d.seq)
                .max()?;
            Some((from.to_string(), s.proc(p).pid, high))
        })
        .collect();
    s.kill(0);
    s.run_for(away);
    s.restart(0);
    let restored = s.proc_mut(0);
    restored.accepted = taken;
    for (from, pid, high) in highs {
        assert!(restored
            .client
            .received_mut()
            .restore_delivered("dst", &from, pid, high));
    }
}

#[test]
fn a_durable_receiver_killed_and_restarted_within_the_hold_gets_every_event_once_and_no_failure() {
    let mut s = durable_bus(&["dst"], &[&["dst"], &["src"], &["other"]]);
    // `src` sends again as soon as it reads the registry entry, before the Ping behind it:
    // the hub forwards what follows its Resending. `other` sends again after the Ping.
    s.proc_mut(1).transmit_each_frame = true;
    let mut sent = Vec::new();
    let mut other = Vec::new();
    for i in 0..600 {
        sent.push(s.send(1, "src", "dst").unwrap());
        if i % 3 == 0 {
            other.push(s.send(2, "other", "dst").unwrap());
        }
        s.run_for(ms(1));
        if i % 150 == 75 {
            // Away for a while: the senders keep sending into the held id meanwhile.
            crash_and_restore(&mut s, ms(300 + i as u64), &[("src", 1), ("other", 2)]);
        }
    }
    assert!(s.settle(SETTLE), "{}", s.describe());
    check(&s).unwrap();
    let got = delivered_to(&s, "dst");
    let mut want: Vec<u64> = sent.iter().chain(other.iter()).copied().collect();
    want.sort_unstable();
    let mut sorted = got.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, want, "every event once");
    let from_src: Vec<u64> = got.iter().copied().filter(|n| sent.contains(n)).collect();
    assert_eq!(from_src, sent, "in order");
    let from_other: Vec<u64> = got.iter().copied().filter(|n| other.contains(n)).collect();
    assert_eq!(from_other, other, "in order");
    assert!(s.rec.failed.is_empty(), "{:?}", s.rec.failed);
    assert!(s.hub.as_ref().unwrap().stats().held_dropped > 0);
    assert!(
        s.rec
            .notes
            .iter()
            .any(|n| matches!(n, Note::Duplicate(0, ..))),
        "some retransmissions were of events taken before the crash"
    );
}

#[test]
fn past_the_hold_a_durable_receivers_unacknowledged_events_fail_as_target_gone() {
    let mut s = durable_bus(&["dst"], &[&["dst"], &["src"]]);
    for _ in 0..50 {
        s.send(1, "src", "dst").unwrap();
        s.run_for(ms(1));
    }
    s.kill(0);
    for _ in 0..20 {
        s.send(1, "src", "dst").unwrap();
        s.run_for(ms(1));
    }
    // Held: nothing failed yet.
    s.run_for(ms(20_000));
    assert!(s.rec.failed.is_empty(), "{:?}", s.rec.failed);
    s.run_for(ms(11_000));
    assert!(s.settle(SETTLE), "{}", s.describe());
    check(&s).unwrap();
    let failed: Vec<_> = s.rec.failed.iter().map(|f| f.reason).collect();
    assert!(failed.len() >= 20, "the ones sent while it was away fail");
    assert!(
        failed.iter().all(|r| *r == FailReason::TargetGone),
        "{failed:?}"
    );
    // Each delivered or failed (one the receiver took but never acknowledged may be both,
    // as for any receiver that dies for good).
    let mut settled = delivered_to(&s, "dst");
    settled.extend(s.rec.failed.iter().map(|f| f.n));
    for m in &s.rec.sent {
        assert!(
            settled.contains(&m.n),
            "{} neither delivered nor failed",
            m.n
        );
    }
}

#[test]
fn a_non_durable_receiver_is_removed_at_once_as_before() {
    let mut s = durable_bus(&[], &[&["dst"], &["src"]]);
    for _ in 0..20 {
        s.send(1, "src", "dst").unwrap();
    }
    s.run_for(ms(1));
    s.kill(0);
    s.run_for(ms(100));
    assert!(!s.hub.as_ref().unwrap().is_held("dst"));
    assert!(s.settle(SETTLE));
    check(&s).unwrap();
}

/// What a durable sender's journal holds of process `p` (hosting `id`): its next sequence
/// number, its outbox (numbered as it leaves) and its unacknowledged messages.
struct SenderRecord {
    seq: Option<u64>,
    outbox: std::collections::VecDeque<(String, String, u64, interstate_core::wire::Correlation)>,
    sent: Vec<Vec<u8>>,
}

fn record_sender(s: &Sim, p: usize, id: &str) -> SenderRecord {
    let mut sent = Vec::new();
    s.proc(p)
        .client
        .outstanding()
        .held_from(id, &mut |b| sent.push(b.to_vec()));
    SenderRecord {
        seq: s.next_seq(p, id),
        outbox: s.proc(p).outbox.clone(),
        sent,
    }
}

/// Kills durable sender `p` (`id`) `stale` after its last record (it goes on sending from
/// its outbox meanwhile, as a node does between two records), and starts it again after
/// `away`, restored from that record.
fn crash_sender(s: &mut Sim, p: usize, id: &str, stale: Duration, away: Duration) -> usize {
    let record = record_sender(s, p, id);
    s.run_for(stale);
    s.kill(p);
    s.run_for(away);
    s.restart(p);
    if let Some(seq) = record.seq {
        s.set_seq(p, id, seq);
    }
    let pr = s.proc_mut(p);
    for m in &record.sent {
        pr.client.outstanding_mut().push(m, false).unwrap();
    }
    pr.outbox = record.outbox;
    record.sent.len()
}

#[test]
fn a_durable_sender_killed_and_restored_sends_every_message_once_and_none_fails() {
    for durable_receiver in [false, true] {
        let durable: &[&str] = if durable_receiver {
            &["src", "dst"]
        } else {
            &["src"]
        };
        let mut s = durable_bus(durable, &[&["src"], &["dst"]]);
        let mut sent = Vec::new();
        let mut resent = 0;
        for i in 0..600u64 {
            sent.push(s.send(0, "src", "dst").unwrap());
            s.run_for(ms(1));
            if i % 100 == 50 {
                // Killed at once after a record, or a while after it (sends left since).
                let stale = ms(i % 200 / 100 * 3);
                resent += crash_sender(&mut s, 0, "src", stale, ms(50 + i));
            }
        }
        assert!(s.settle(SETTLE), "{}", s.describe());
        assert!(resent > 0, "some messages were unacknowledged at a crash");
        let got = delivered_to(&s, "dst");
        assert_eq!(got, sent, "every message once, in order");
        assert!(s.rec.failed.is_empty(), "{:?}", s.rec.failed);
        assert!(
            s.rec
                .notes
                .iter()
                .any(|n| matches!(n, Note::Duplicate(1, ..))),
            "some messages sent again had been taken before the crash"
        );
        assert!(
            !s.rec
                .notes
                .iter()
                .any(|n| matches!(n, Note::DroppedUnseen(..))),
            "{:?}",
            s.rec.notes
        );
    }
}

#[test]
fn a_non_durable_senders_new_process_keeps_its_own_numbers() {
    // The same id, not durable, in a new process that numbers from 1: nothing it sends is
    // taken for a duplicate of its predecessor's.
    let mut s = durable_bus(&[], &[&["src"], &["dst"]]);
    for _ in 0..50 {
        s.send(0, "src", "dst").unwrap();
        s.run_for(ms(1));
    }
    assert!(s.settle(SETTLE), "{}", s.describe());
    s.kill(0);
    s.run_for(ms(100));
    s.restart(0);
    s.set_seq(0, "src", 1);
    let mut again = Vec::new();
    for _ in 0..20 {
        again.push(s.send(0, "src", "dst").unwrap());
        s.run_for(ms(1));
    }
    assert!(s.settle(SETTLE), "{}", s.describe());
    let got = delivered_to(&s, "dst");
    assert_eq!(&got[got.len() - 20..], &again[..]);
    assert!(s.rec.failed.is_empty(), "{:?}", s.rec.failed);
}

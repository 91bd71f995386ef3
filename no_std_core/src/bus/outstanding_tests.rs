//! Unit tests of the outstanding buffer (see `outstanding.rs`).

extern crate std;
use super::*;
use crate::wire::Deliver;
use std::string::{String, ToString};
use std::vec;
use std::vec::Vec;

fn body(from: &str, to: &str, seq: u64) -> Vec<u8> {
    body_with(from, to, b"x", seq)
}

fn body_with(from: &str, to: &str, payload: &[u8], seq: u64) -> Vec<u8> {
    let mut buf = vec![0u8; 1024];
    let n = Frame::Deliver(Deliver {
        from,
        to,
        event: "E",
        payload,
        seq,
        correlation: Default::default(),
    })
    .encode(&mut buf)
    .unwrap();
    buf[4..n].to_vec()
}

fn seq_of(b: &[u8]) -> u64 {
    match Frame::decode(b) {
        Ok(Frame::Deliver(d)) => d.seq,
        _ => panic!("not a Deliver"),
    }
}

fn new(capacity: usize) -> Outstanding<Vec<u8>> {
    Outstanding::new(vec![0; capacity])
}

fn all(o: &mut Outstanding<Vec<u8>>) -> Vec<u64> {
    let mut sent = Vec::new();
    o.transmit(&mut |_, _| true, &mut |b| {
        sent.push(seq_of(b));
        true
    });
    sent
}

fn fail_all(o: &mut Outstanding<Vec<u8>>, to: Option<&str>) -> usize {
    o.fail_where(&mut |_, t, _| to.is_none_or(|x| x == t), &mut |_| {})
}

#[test]
fn released_only_when_acknowledged_in_order() {
    let mut o = new(4096);
    for s in 1..=3 {
        o.push(&body("a", "b", s), false).unwrap();
    }
    assert_eq!(all(&mut o), vec![1, 2, 3]);
    o.ack("a", "b", 2);
    assert_eq!(o.len(), 1);
    o.rewind();
    assert_eq!(
        all(&mut o),
        vec![3],
        "only the unacknowledged message is sent again"
    );
    o.ack("a", "b", 3);
    assert!(o.is_empty());
}

#[test]
fn held_from_lists_one_senders_unacknowledged_messages_in_order() {
    let mut o = new(4096);
    for s in 1..=4 {
        o.push(&body("a", "b", s), s % 2 == 0).unwrap();
        o.push(&body("c", "b", 10 + s), false).unwrap();
    }
    o.ack("a", "b", 2);
    let mut held = Vec::new();
    o.held_from("a", &mut |b| held.push(seq_of(b)));
    assert_eq!(held, vec![3, 4], "acknowledged ones are not held");
    let mut other = Vec::new();
    o.held_from("c", &mut |b| other.push(b.to_vec()));
    assert_eq!(
        other,
        (11..=14).map(|s| body("c", "b", s)).collect::<Vec<_>>()
    );
    o.fail_where(&mut |_, _, seq| seq == 3, &mut |_| {});
    held.clear();
    o.held_from("a", &mut |b| held.push(seq_of(b)));
    assert_eq!(held, vec![4], "failed ones are not held");
}

#[test]
fn encoded_once_straight_into_the_buffer() {
    let mut o = new(4096);
    let d = Deliver {
        from: "a",
        to: "b",
        event: "E",
        payload: b"payload",
        seq: 7,
        correlation: Default::default(),
    };
    let stored = o.push_deliver(&d, false).unwrap().to_vec();
    assert_eq!(
        stored,
        body_with("a", "b", b"payload", 7),
        "the same bytes as encode"
    );
    assert_eq!(stored.len(), d.body_len());
    let mut sent = Vec::new();
    o.transmit(&mut |_, _| true, &mut |b| {
        sent.push(b.to_vec());
        true
    });
    assert_eq!(sent, vec![stored]);
    o.ack("a", "b", 7);
    assert!(o.is_empty());
}

#[test]
fn held_targets_keep_their_order_and_others_pass() {
    let mut o = new(4096);
    o.push(&body("a", "x", 1), false).unwrap();
    o.push(&body("a", "y", 2), false).unwrap();
    o.push(&body("a", "x", 3), false).unwrap();
    let mut sent = Vec::new();
    o.transmit(&mut |_, t| t != "x", &mut |b| {
        sent.push(seq_of(b));
        true
    });
    assert_eq!(sent, vec![2]);
    assert_eq!(all(&mut o), vec![1, 3]);
}

#[test]
fn full_buffer_refuses_and_failures_are_reported_once() {
    let mut o = new(64);
    let b = body("a", "b", 1);
    let mut n = 0;
    while o.push(&b, true).is_ok() {
        n += 1;
    }
    assert!(n >= 1);
    let mut reported = 0;
    let failed = o.fail_where(&mut |_, to, _| to == "b", &mut |u| {
        assert_eq!((u.from, u.to, u.event, u.seq), ("a", "b", "E", 1));
        reported += 1;
    });
    assert_eq!((failed, reported), (n, n));
    assert!(o.is_empty());
    assert_eq!(fail_all(&mut o, None), 0);
}

/// Failure reports come one per message: failing n messages one by one looks at O(n)
/// entries in all, not O(n^2), also when messages to another target, still outstanding,
/// sit between them. (Quadratic, 20 000 failures kept a node deaf to the bus for
/// seconds.)
#[test]
fn failing_messages_one_by_one_takes_linear_work() {
    for n in [400u64, 4000] {
        let mut o = new(64 << 20);
        for seq in 1..=n {
            o.push(&body("a", "gone", seq), true).unwrap();
            o.push(&body("a", "alive", seq), true).unwrap();
        }
        let before = o.examined();
        for seq in 1..=n {
            let u = o.fail_one("a", "gone", seq).expect("outstanding");
            assert_eq!((u.to, u.seq), ("gone", seq));
        }
        assert_eq!(o.len(), n as usize, "the other target's messages stay");
        assert!(o.fail_one("a", "gone", 1).is_none(), "failed once only");
        let examined = o.examined() - before;
        assert!(
            examined <= 5 * n as usize,
            "{examined} entries examined for {n} failures"
        );
    }
    // Out of order works too (wrapping around from the hint).
    let mut o = new(4096);
    for seq in 1..=4 {
        o.push(&body("a", "b", seq), true).unwrap();
    }
    for seq in [3, 1, 4, 2] {
        assert_eq!(o.fail_one("a", "b", seq).map(|u| u.seq), Some(seq));
    }
    assert!(o.is_empty());
}

/// Acknowledging as messages arrive looks at each entry about once, also with another
/// receiver's messages, unacknowledged, between them.
#[test]
fn acknowledging_one_by_one_takes_linear_work() {
    let n = 4000u64;
    let mut o = new(64 << 20);
    for seq in 1..=n {
        o.push(&body("a", "fast", seq), true).unwrap();
    }
    let before = o.examined();
    for seq in 1..=n {
        o.ack("a", "fast", seq);
    }
    assert!(o.is_empty());
    assert!(o.examined() - before <= 3 * n as usize);
}

/// The header read without decoding agrees with the decoder, and refuses what it refuses.
#[test]
fn deliver_spans_agree_with_the_decoder() {
    let long = "f".repeat(200);
    for (from, to, payload, seq) in [
        ("a", "b", &b"x"[..], 1u64),
        ("", "t", &b""[..], 0),
        ("sender", "receiver", &[7u8; 300][..], u64::MAX),
        (&long[..], "t", &b"{}"[..], 1 << 40),
    ] {
        let b = body_with(from, to, payload, seq);
        let (f, t, s) = deliver_spans(&b).expect("a Deliver");
        assert_eq!(
            (&b[f.0..f.0 + f.1], &b[t.0..t.0 + t.1], s),
            (from.as_bytes(), to.as_bytes(), seq)
        );
        for cut in 0..b.len() {
            assert!(deliver_spans(&b[..cut]).is_none(), "cut at {cut}");
        }
    }
    let mut ack = vec![0u8; 64];
    let n = Frame::Ack {
        from: "a",
        to: "b",
        seq: 1,
    }
    .encode(&mut ack)
    .unwrap();
    assert!(deliver_spans(&ack[4..n]).is_none());
}

/// A push never fails after `has_room` said yes (the node relies on it), and a buffer
/// whose receiver keeps up (acknowledging as it goes) stays usable to its full size.
#[test]
fn room_is_what_push_finds() {
    let mut o = new(10_000);
    let b = body("a", "b", 1);
    let mut seq = 0;
    let mut acked = 0;
    for round in 0..5_000u64 {
        if o.has_room(b.len()) {
            seq += 1;
            o.push(&body("a", "b", seq), true)
                .expect("has_room said yes");
        } else {
            assert!(o.push(&body("a", "b", seq + 1), true).is_err());
            // Full: at least 80% held (but for the room one more message would need).
            let held = o.bytes_held();
            let need = ENTRY_HEADER + b.len() + 2;
            assert!(5 * held >= 4 * (10_000 - need), "{held} bytes held");
        }
        if round % 3 == 0 && acked < seq {
            acked += 1;
            o.ack("a", "b", acked);
        }
    }
    o.ack("a", "b", seq);
    assert!(o.is_empty());
}

/// The ring against a plain list, through random pushes (of sizes that make entries wrap
/// around the end of a small buffer), transmissions, acknowledgements, failures and
/// rewinds: the same messages held, sent in the same order, failed once.
#[test]
fn the_ring_behaves_like_a_list() {
    let mut rng = crate::test_rng(0x2545_F491_4F6C_DD1D);
    let mut next = move |n: u64| rng() % n;
    for capacity in [300usize, 301, 512, 1000] {
        let mut o = new(capacity);
        // (to, seq, sent, acknowledged) of every message held, oldest first.
        let mut model: Vec<(String, u64, bool, bool)> = Vec::new();
        let mut seq = 0u64;
        for _ in 0..20_000 {
            match next(6) {
                0 | 1 => {
                    seq += 1;
                    let to = ["b", "c"][next(2) as usize].to_string();
                    let pad = "x".repeat(next(60) as usize);
                    let b = body_with("a", &to, pad.as_bytes(), seq);
                    let room = o.has_room(b.len());
                    assert_eq!(o.push(&b, false).is_ok(), room, "has_room and push agree");
                    if room {
                        model.push((to, seq, false, false));
                    }
                }
                2 => {
                    let sent = all(&mut o);
                    let expect: Vec<u64> =
                        model.iter().filter(|m| !m.2 && !m.3).map(|m| m.1).collect();
                    assert_eq!(sent, expect, "sent in order, once");
                    model.iter_mut().for_each(|m| m.2 = true);
                }
                3 => {
                    // The receiver acknowledges a prefix of what was sent to it.
                    let to = ["b", "c"][next(2) as usize];
                    let sent: Vec<u64> = model
                        .iter()
                        .filter(|m| m.0 == to && m.2)
                        .map(|m| m.1)
                        .collect();
                    if let Some(&upto) = sent.get(next(sent.len() as u64 + 1) as usize) {
                        o.ack("a", to, upto);
                        for m in model.iter_mut().filter(|m| m.0 == to && m.1 <= upto) {
                            m.3 = true;
                        }
                        // Released in order, from the oldest.
                        let keep = model.iter().position(|m| !m.3).unwrap_or(model.len());
                        model.drain(..keep);
                    }
                }
                4 if !model.is_empty() => {
                    let i = next(model.len() as u64) as usize;
                    let (to, s, _, acked) = model[i].clone();
                    let u = o.fail_one("a", &to, s).map(|u| (u.to.to_string(), u.seq));
                    if acked {
                        assert!(u.is_none(), "an acknowledged message does not fail");
                    } else {
                        model.remove(i);
                        assert_eq!(u.expect("outstanding"), (to.clone(), s));
                        assert!(o.fail_one("a", &to, s).is_none(), "failed once");
                        let keep = model.iter().position(|m| !m.3).unwrap_or(model.len());
                        model.drain(..keep);
                    }
                }
                _ => {
                    o.rewind();
                    model.iter_mut().filter(|m| !m.3).for_each(|m| m.2 = false);
                }
            }
            assert_eq!(o.len(), model.len());
            assert!(o.bytes_held() <= capacity);
        }
        let failed = fail_all(&mut o, None);
        assert_eq!(failed, model.iter().filter(|m| !m.3).count());
        assert!(o.is_empty());
    }
}

/// A request keeps its correlation in the buffer: when it fails, its requester learns
/// which request it was.
#[test]
fn a_failed_request_is_reported_with_its_correlation() {
    let mut o = new(4096);
    let d = Deliver {
        from: "a",
        to: "w",
        event: "WORK",
        payload: b"x",
        seq: 3,
        correlation: Correlation::Request(77),
    };
    o.push_deliver(&d, true).unwrap();
    o.push(&body("a", "w", 4), true).unwrap();
    let mut got = Vec::new();
    o.fail_where(&mut |_, to, _| to == "w", &mut |u| {
        got.push((u.seq, u.correlation))
    });
    assert_eq!(
        got,
        vec![(3, Correlation::Request(77)), (4, Correlation::None)]
    );
}

#[test]
fn an_acknowledged_message_is_not_failed() {
    let mut o = new(4096);
    o.push(&body("a", "b", 1), true).unwrap();
    o.push(&body("a", "c", 1), true).unwrap();
    o.ack("a", "b", 1);
    assert!(o.fail_one("a", "b", 1).is_none());
    assert_eq!(fail_all(&mut o, None), 1);
}

#[test]
fn a_push_can_be_taken_back() {
    let mut o = new(200);
    o.push(&body("a", "b", 1), true).unwrap();
    let m = o.mark();
    // Big enough to pad out the end and wrap.
    let big = body_with("a", "b", &[1; 100], 2);
    o.push(&big, false).unwrap();
    o.rollback(m);
    assert_eq!(o.len(), 1);
    assert!(!o.has_unsent());
    o.ack("a", "b", 1);
    assert!(o.is_empty());
    let m = o.mark();
    o.push(&big, false).unwrap();
    o.rollback(m);
    assert!(o.is_empty() && o.bytes_held() == 0);
}

/// A late acknowledgement changes nothing for what is sent next.
#[test]
fn a_late_acknowledgement_changes_nothing() {
    let mut o = new(4096);
    o.push(&body("a", "r0", 2), true).unwrap();
    o.ack("a", "r0", 2);
    o.push(&body("a", "r0", 3), true).unwrap();
    o.ack("a", "r0", 1);
    assert_eq!(o.len(), 1);
    o.ack("a", "r0", 3);
    assert!(o.is_empty());
}

/// The acknowledgement as it was first written: every held entry of the pair up to `seq`
/// marked, from the head, then released in order. [`Outstanding::ack`] releases a run from
/// the head as it finds it; the two must leave the same buffer.
fn ack_by_marking(o: &mut Outstanding<Vec<u8>>, sender: &str, receiver: &str, seq: u64) {
    let mut at = o.head;
    while at < o.tail {
        let (state, _, size) = o.entry(at);
        if held(state) {
            let (from, to, s) = o.key(at);
            if from == sender.as_bytes() && to == receiver.as_bytes() {
                if s > seq {
                    break;
                }
                o.set_state(at, ACKED);
            }
        }
        at += size;
    }
    o.release();
}

/// The same positions and counts, and the same entries from the head to the tail (what lies
/// behind the head, or in padding, is released: the marking one has marked it, the other
/// not).
fn same_state(a: &Outstanding<Vec<u8>>, b: &Outstanding<Vec<u8>>) -> bool {
    let held = |o: &Outstanding<Vec<u8>>| -> Vec<(u8, Vec<u8>)> {
        let (mut at, mut entries) = (o.head, Vec::new());
        while at < o.tail {
            let (state, body, size) = o.entry(at);
            entries.push((state, body.to_vec()));
            at += size;
        }
        entries
    };
    (
        a.head,
        a.tail,
        a.first_unsent,
        a.entries,
        a.fail_hint,
        a.taken,
        a.released,
    ) == (
        b.head,
        b.tail,
        b.first_unsent,
        b.entries,
        b.fail_hint,
        b.taken,
        b.released,
    ) && held(a) == held(b)
}

/// Acknowledgements releasing as they walk agree with marking then releasing, over random
/// pushes (padding at the buffer's end included), sends, failures, rewinds and
/// acknowledgements of two senders' messages to two receivers, stale and early ones too.
#[test]
fn releasing_while_walking_agrees_with_marking_then_releasing() {
    let mut rng = crate::test_rng(0x9E37_79B9_7F4A_7C15);
    let mut next = move |n: u64| rng() % n;
    let pairs = [("a", "b"), ("a", "c"), ("z", "b"), ("zz", "b")];
    for capacity in [300usize, 301, 512, 1000, 4096] {
        let (mut o, mut r) = (new(capacity), new(capacity));
        let mut seqs = [0u64; 4];
        for _ in 0..20_000 {
            match next(8) {
                0..=2 => {
                    let k = next(4) as usize;
                    seqs[k] += 1;
                    let (from, to) = pairs[k];
                    let pad = "x".repeat(next(60) as usize);
                    let b = body_with(from, to, pad.as_bytes(), seqs[k]);
                    let sent = next(2) == 0;
                    assert_eq!(o.push(&b, sent).is_ok(), r.push(&b, sent).is_ok());
                }
                3 => {
                    let k = next(4) as usize;
                    let (from, to) = pairs[k];
                    let seq = seqs[k].saturating_sub(next(6)) + next(2);
                    o.ack(from, to, seq);
                    ack_by_marking(&mut r, from, to, seq);
                }
                4 => {
                    assert_eq!(all(&mut o), all(&mut r));
                }
                5 => {
                    let k = next(4) as usize;
                    let (from, to) = pairs[k];
                    let seq = seqs[k].saturating_sub(next(8));
                    let failed = o.fail_one(from, to, seq).map(|u| u.seq);
                    assert_eq!(failed, r.fail_one(from, to, seq).map(|u| u.seq));
                }
                6 if next(4) == 0 => {
                    o.rewind();
                    r.rewind();
                }
                _ => {
                    // The receiver acknowledges everything it was sent.
                    let k = next(4) as usize;
                    let (from, to) = pairs[k];
                    o.ack(from, to, seqs[k]);
                    ack_by_marking(&mut r, from, to, seqs[k]);
                }
            }
            assert!(same_state(&o, &r), "the two buffers differ");
        }
    }
}

/// Acknowledging a run of one pair's messages from the head looks at each entry once, the
/// releasing included.
#[test]
fn acknowledging_a_run_looks_at_each_entry_once() {
    let n = 1000u64;
    let mut o = new(1 << 20);
    for seq in 1..=n {
        o.push(&body("a", "b", seq), true).unwrap();
    }
    let before = o.examined();
    o.ack("a", "b", n / 2);
    // The run, and the first message past it, where the walk stops.
    assert_eq!(o.examined() - before, n as usize / 2 + 1);
    assert_eq!(o.released(), n / 2);
    o.ack("a", "b", n);
    assert!(o.is_empty());
}

//! Unit tests of the duplicate filter and delivery bookkeeping (see `received.rs`).

extern crate std;
use super::*;
use std::format;
use std::string::{String, ToString};
use std::vec;
use std::vec::Vec;

type R = Received<Vec<PairSlot>, Vec<OwnerSlot>>;

fn new() -> R {
    Received::new(
        vec![PairSlot::default(); 1024],
        vec![OwnerSlot::default(); 1024],
    )
}

fn acc(r: &mut R, receiver: &str, sender: &str, seq: u64, handed: bool) -> bool {
    r.accept(receiver, sender, seq, handed) == Accepted::New
}

fn acks(r: &mut R) -> Vec<(String, String, u64)> {
    let mut out = Vec::new();
    r.emit(&mut |rx, tx, s| {
        out.push((rx.to_string(), tx.to_string(), s));
        true
    });
    out
}

#[test]
fn a_port_is_acknowledged_only_for_what_it_handed_over() {
    let mut r = new();
    assert!(acc(&mut r, "port", "s", 10, false));
    assert!(acc(&mut r, "port", "s", 11, false));
    assert!(
        acks(&mut r).is_empty(),
        "nothing read yet, nothing acknowledged"
    );
    r.handed("port", "s", 10);
    assert_eq!(acks(&mut r), vec![("port".into(), "s".into(), 10)]);
    // A duplicate of an unread message is dropped, and not acknowledged either.
    assert!(!acc(&mut r, "port", "s", 11, false));
    assert!(acks(&mut r).is_empty());
}

#[test]
fn a_new_owner_of_a_sender_id_starts_afresh() {
    let mut r = new();
    r.sender_registered("s", 100, 0);
    assert!(acc(&mut r, "k", "s", u64::MAX, true));
    // The same process again (its link broke and came back): duplicates still dropped.
    r.sender_departed("s", 5);
    r.sender_registered("s", 100, 5);
    assert!(!acc(&mut r, "k", "s", 7, true));
    // Another process under the id: its numbers are its own.
    r.sender_departed("s", 6);
    r.sender_registered("s", 200, 6);
    assert!(acc(&mut r, "k", "s", 7, true));
    assert!(acc(&mut r, "k", "s", 8, true));
    // The first process takes the id back: its state comes back with it.
    r.sender_registered("s", 100, 7);
    assert!(!acc(&mut r, "k", "s", 9, true), "still below u64::MAX");
    r.sender_registered("s", 200, 8);
    assert!(
        !acc(&mut r, "k", "s", 8, true),
        "a duplicate of the second owner's"
    );
    assert!(acc(&mut r, "k", "s", 9, true));
}

#[test]
fn state_from_before_the_registry_named_the_sender_is_its_own() {
    let mut r = new();
    assert!(acc(&mut r, "k", "s", 5, true));
    r.sender_registered("s", 100, 0);
    assert!(!acc(&mut r, "k", "s", 5, true));
    assert!(acc(&mut r, "k", "s", 6, true));
}

#[test]
fn departed_senders_are_forgotten_after_a_while() {
    let mut r = new();
    for i in 0..100 {
        let s = format!("send-{i}");
        r.sender_registered(&s, i, 0);
        assert!(acc(&mut r, "k", &s, 1, true));
        r.sender_departed(&s, 1000);
    }
    r.sender_registered("stays", 1, 0);
    assert!(acc(&mut r, "k", "stays", 1, true));
    acks(&mut r);
    assert_eq!(r.forget_departed(30_000, 60_000), 0, "not yet");
    assert_eq!(r.forget_departed(61_000, 60_000), 100);
    assert_eq!(r.senders(), 1);
    // Every kept pair is still found after the removals moved slots.
    assert!(!acc(&mut r, "k", "stays", 1, true));
    // A port's unread message keeps its sender's state until it is read.
    r.sender_registered("p", 9, 0);
    assert!(acc(&mut r, "port", "p", 1, false));
    r.sender_departed("p", 61_000);
    assert_eq!(r.forget_departed(200_000, 60_000), 0);
    r.handed("port", "p", 1);
    acks(&mut r);
    assert_eq!(r.forget_departed(200_000, 60_000), 1);
}

#[test]
fn duplicates_are_dropped_and_reacknowledged() {
    let mut r = new();
    assert!(acc(&mut r, "b", "a", 5, true));
    assert!(!acc(&mut r, "b", "a", 5, true));
    assert!(acc(&mut r, "b", "a", 6, true));
    assert_eq!(acks(&mut r), vec![("b".into(), "a".into(), 6)]);
    assert!(!acc(&mut r, "b", "a", 6, true));
    assert_eq!(acks(&mut r), vec![("b".into(), "a".into(), 6)]);
}

/// The table is bounded: when it is full of live state, a new pair is refused (the
/// message stays with its sender), never silently let through as new twice; state that
/// no one needs makes room.
#[test]
fn a_full_table_refuses_rather_than_forgets_live_state() {
    let mut r: R = Received::new(
        vec![PairSlot::default(); 16],
        vec![OwnerSlot::default(); 16],
    );
    let mut taken = 0;
    for i in 0..16 {
        let s = format!("s{i}");
        r.sender_registered(&s, 1, 0);
        if acc(&mut r, "k", &s, 1, true) {
            taken += 1;
        }
    }
    assert_eq!(taken, 14, "an eighth is kept free");
    assert_eq!(r.accept("k", "s15", 1, true), Accepted::NoRoom);
    for i in 0..taken {
        assert_eq!(
            r.accept("k", &format!("s{i}"), 1, true),
            Accepted::Duplicate
        );
    }
    // A departed sender whose state owes nothing makes room.
    acks(&mut r);
    r.sender_departed("s0", 10);
    assert!(acc(&mut r, "k", "s15", 1, true));
}

/// The table against a plain map, through random accepts, registrations, departures and
/// sweeps: the same answers.
#[test]
fn the_table_behaves_like_a_map() {
    let mut rng = crate::test_rng(0x9E37_79B9_7F4A_7C15);
    let mut next = move |n: u64| rng() % n;
    let mut r: R = Received::new(
        vec![PairSlot::default(); 64],
        vec![OwnerSlot::default(); 64],
    );
    let mut model: std::collections::HashMap<(String, String), u64> = Default::default();
    for _ in 0..50_000 {
        let rx = format!("r{}", next(4));
        let tx = format!("t{}", next(8));
        match next(10) {
            0 => {
                // Senders never depart here, so nothing may be forgotten.
                r.forget_departed(next(1_000_000), 1000);
            }
            _ => {
                let seq = next(50);
                let seen = model.get(&(rx.clone(), tx.clone())).copied();
                let got = r.accept(&rx, &tx, seq, true);
                let expect = match seen {
                    Some(d) if seq <= d => Accepted::Duplicate,
                    _ => Accepted::New,
                };
                assert_eq!(got, expect, "{rx} {tx} {seq}");
                if got == Accepted::New {
                    model.insert((rx, tx), seq);
                }
                if next(5) == 0 {
                    acks(&mut r);
                }
            }
        }
    }
}

#[test]
fn a_restored_receiver_drops_and_acknowledges_what_its_journal_says_it_took() {
    let mut r = new();
    assert!(r.restore_delivered("counter", "src", 41, 100));
    assert!(!r.is_dirty(), "nothing owed on a restore");
    // The sender, the same process, sends again what it never had acknowledged.
    assert_eq!(r.accept("counter", "src", 99, true), Accepted::Duplicate);
    assert_eq!(r.accept("counter", "src", 100, true), Accepted::Duplicate);
    assert_eq!(
        acks(&mut r),
        [("counter".to_string(), "src".to_string(), 100)]
    );
    assert_eq!(r.accept("counter", "src", 101, true), Accepted::New);
    // The registry names the same process: nothing changes.
    r.sender_registered("src", 41, 5);
    assert_eq!(r.accept("counter", "src", 101, true), Accepted::Duplicate);
}

#[test]
fn a_restored_state_is_not_another_processes_and_a_full_table_says_so() {
    let mut r = new();
    assert!(r.restore_delivered("counter", "src", 41, 100));
    // The sender id is owned by another process now: its numbers are its own.
    r.sender_registered("src", 42, 5);
    assert_eq!(r.accept("counter", "src", 7, true), Accepted::New);
    let mut small: R = Received::new(vec![PairSlot::default(); 8], vec![OwnerSlot::default(); 8]);
    let restored = (0..8)
        .filter(|i| small.restore_delivered("m", &format!("s{i}"), 1, 5))
        .count();
    assert_eq!(restored, 7, "an eighth of the table stays free");
}

#[test]
fn a_durable_senders_numbers_carry_over_to_its_restarted_process() {
    let mut r = new();
    r.sender_registered_as("src", 41, true, 0);
    for seq in 1..=10 {
        assert_eq!(r.accept("dst", "src", seq, true), Accepted::New);
    }
    // Restarted (a new process, the hub held the id): it sends again from 8, what it
    // had not had acknowledged, then goes on.
    r.sender_registered_as("src", 77, true, 5);
    assert_eq!(r.accept("dst", "src", 8, true), Accepted::Duplicate);
    assert_eq!(r.accept("dst", "src", 10, true), Accepted::Duplicate);
    assert_eq!(r.accept("dst", "src", 11, true), Accepted::New);
    assert_eq!(acks(&mut r), [("dst".to_string(), "src".to_string(), 11)]);
    // A receiver restored from its journal knows the sender was durable.
    let mut restored = new();
    assert!(restored.restore_delivered_as("dst", "src", 41, true, 10));
    restored.sender_registered_as("src", 77, true, 5);
    assert_eq!(restored.accept("dst", "src", 10, true), Accepted::Duplicate);
    assert_eq!(restored.accept("dst", "src", 11, true), Accepted::New);
}

#[test]
fn a_non_durable_owner_before_or_after_keeps_its_own_numbers() {
    // A non-durable earlier owner (a squatter with huge numbers) does not pass them on.
    let mut r = new();
    r.sender_registered_as("src", 41, false, 0);
    assert_eq!(r.accept("dst", "src", 1_000, true), Accepted::New);
    r.sender_registered_as("src", 77, true, 5);
    assert_eq!(r.accept("dst", "src", 1, true), Accepted::New);
    // Nor does a durable owner pass its numbers to a non-durable next owner.
    r.sender_registered_as("src", 78, false, 6);
    assert_eq!(r.accept("dst", "src", 1, true), Accepted::New);
    // A journal that did not know the sender as durable carries nothing over.
    let mut restored = new();
    assert!(restored.restore_delivered("dst", "src", 41, 10));
    restored.sender_registered_as("src", 77, true, 5);
    assert_eq!(restored.accept("dst", "src", 10, true), Accepted::New);
}

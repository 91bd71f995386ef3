//! The duplicate filter remembers the slots of the last message (`Received::accept`): its
//! verdicts must be those of a lookup every time, whatever came between two messages.

use interstate_core::bus::{Accepted, OwnerSlot, PairSlot, Received};

type R = Received<Vec<PairSlot>, Vec<OwnerSlot>>;

fn table(slots: usize) -> R {
    Received::new(
        vec![PairSlot::default(); slots],
        vec![OwnerSlot::default(); slots],
    )
}

#[test]
fn senders_in_turn_keep_their_own_numbers() {
    let mut r = table(64);
    let senders = ["sub-1", "sub-2", "sub-3", "sub-10", "other"];
    for seq in 1..=20 {
        for s in senders {
            assert_eq!(r.accept("rx", s, seq, true), Accepted::New, "{s} {seq}");
            // A resend of the same message, at once and after another sender's.
            assert_eq!(r.accept("rx", s, seq, true), Accepted::Duplicate);
        }
        for s in senders {
            assert_eq!(r.accept("rx", s, seq, true), Accepted::Duplicate);
        }
    }
    // Another receiver of the same sender has numbers of its own.
    assert_eq!(r.accept("rx2", "sub-1", 1, true), Accepted::New);
    assert_eq!(r.accept("rx", "sub-1", 21, true), Accepted::New);
}

#[test]
fn a_sender_named_or_moved_to_another_process_is_looked_up_again() {
    let mut r = table(64);
    assert_eq!(r.accept("rx", "s", 1, true), Accepted::New);
    assert_eq!(r.accept("rx", "s", 2, true), Accepted::New);
    // The registry names its process: the state kept so far is that process's.
    r.sender_registered("s", 7, 0);
    assert_eq!(r.accept("rx", "s", 2, true), Accepted::Duplicate);
    assert_eq!(r.accept("rx", "s", 3, true), Accepted::New);
    // A new process owns the id: its numbers start again, the earlier ones are put aside.
    r.sender_registered("s", 9, 10);
    assert_eq!(r.accept("rx", "s", 1, true), Accepted::New);
    assert_eq!(r.accept("rx", "s", 1, true), Accepted::Duplicate);
    // The earlier process back: its numbers count again.
    r.sender_registered("s", 7, 20);
    assert_eq!(r.accept("rx", "s", 3, true), Accepted::Duplicate);
    assert_eq!(r.accept("rx", "s", 4, true), Accepted::New);
}

#[test]
fn slots_moved_by_a_full_table_are_not_taken_for_the_remembered_one() {
    // Eight slots: the table makes room (dropping pairs that owe nothing) again and again,
    // and the remaining entries move within it.
    let mut r = table(8);
    let mut next = [1u64; 40];
    for round in 0..200usize {
        let k = (round * 7) % 40;
        let sender = format!("s{k}");
        let verdict = r.accept("rx", &sender, next[k], true);
        if verdict == Accepted::New {
            // Acknowledged at once, so that its pair owes nothing and may be dropped.
            r.emit(&mut |_, _, _| true);
            // The same message again, right after: a duplicate, never new.
            assert_eq!(r.accept("rx", &sender, next[k], true), Accepted::Duplicate);
            next[k] += 1;
        } else {
            assert_eq!(verdict, Accepted::NoRoom, "{sender} {}", next[k]);
        }
    }
}

/// A port's reader hands messages on in its own order, between accepts of other senders'
/// messages (`Received::handed` through the same hints): each acknowledgement is of what
/// was handed, for its own pair.
#[test]
fn messages_handed_after_other_senders_are_acknowledged_for_their_own_pair() {
    let mut r = table(64);
    let mut acks = Vec::new();
    let take = |r: &mut R| {
        let mut got = Vec::new();
        r.emit(&mut |receiver, sender, seq| {
            got.push((receiver.to_string(), sender.to_string(), seq));
            true
        });
        got.sort();
        got
    };
    for seq in 1..=5u64 {
        assert_eq!(r.accept("port", "s1", seq, false), Accepted::New);
        assert_eq!(r.accept("port", "s2", seq, false), Accepted::New);
        assert_eq!(r.accept("other", "s1", seq, false), Accepted::New);
        // Not handed yet: nothing to acknowledge.
        assert!(take(&mut r).is_empty());
        r.handed("port", "s2", seq);
        acks.push(take(&mut r));
        r.handed("other", "s1", seq);
        r.handed("port", "s1", seq);
        acks.push(take(&mut r));
        // Handed again, or a number never delivered: nothing more.
        r.handed("port", "s1", seq);
        r.handed("port", "s2", seq + 1);
        assert!(take(&mut r).is_empty());
    }
    for (i, got) in acks.iter().enumerate() {
        let seq = i as u64 / 2 + 1;
        let want: Vec<(String, String, u64)> = if i % 2 == 0 {
            vec![("port".into(), "s2".into(), seq)]
        } else {
            vec![
                ("other".into(), "s1".into(), seq),
                ("port".into(), "s1".into(), seq),
            ]
        };
        assert_eq!(got, &want, "{i}");
    }
}

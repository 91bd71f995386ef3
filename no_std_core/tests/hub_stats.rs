//! The hub's counting rules (per link, failures by reason, links opened) and the stats
//! request's routing, driven with the recording I/O and a virtual clock.

use interstate_core::hub::{fail_reason_index, Handled, Hub, HubConfig, LinkId, FAIL_REASONS};
use interstate_core::wire::{Deliver, FailReason, Frame};
use interstate_core::Instant;

mod recorder;
use recorder::{body, join, Recorder, UID};

fn hub() -> Hub<8, 16> {
    Hub::new(HubConfig::new(UID, 1), "hub")
}

fn deliver(from: &str, to: &str, seq: u64) -> Vec<u8> {
    body(&Frame::Deliver(Deliver {
        from,
        to,
        event: "E",
        payload: b"p",
        seq,
        correlation: Default::default(),
    }))
}

fn counters(h: &Hub<8, 16>, link: LinkId) -> interstate_core::hub::LinkCounters {
    h.links()
        .find(|l| l.link == link)
        .expect("the link is open")
        .counters
}

#[test]
fn routed_messages_count_on_the_sender_and_the_target_link() {
    let (mut h, mut io) = (hub(), Recorder::default());
    let a = join(&mut h, &mut io, 10, &["a"]);
    let b = join(&mut h, &mut io, 11, &["b"]);
    let frames_before = counters(&h, a).frames_in;
    for seq in 1..=3 {
        let m = deliver("a", "b", seq);
        assert_eq!(h.handle_frame(Instant::ZERO, a, &m, &mut io), Handled::Done);
    }
    let m = deliver("b", "a", 1);
    assert_eq!(h.handle_frame(Instant::ZERO, b, &m, &mut io), Handled::Done);

    let (ca, cb) = (counters(&h, a), counters(&h, b));
    assert_eq!((ca.messages_in, ca.messages_out), (3, 1));
    assert_eq!((cb.messages_in, cb.messages_out), (1, 3));
    assert_eq!(ca.frames_in, frames_before + 3);
    assert_eq!(h.stats().delivered, 4);
    assert_eq!(h.stats().failed, 0);
    assert_eq!(ca.failures, 0);
}

#[test]
fn bytes_in_are_the_body_lengths_handed_in() {
    let (mut h, mut io) = (hub(), Recorder::default());
    let a = join(&mut h, &mut io, 10, &["a"]);
    let _b = join(&mut h, &mut io, 11, &["b"]);
    let before = counters(&h, a);
    let m = deliver("a", "b", 1);
    h.handle_frame(Instant::ZERO, a, &m, &mut io);
    let after = counters(&h, a);
    assert_eq!(after.frames_in - before.frames_in, 1);
    assert_eq!(after.bytes_in - before.bytes_in, m.len() as u64);
}

#[test]
fn failures_count_by_reason_and_on_the_sender_link() {
    let (mut h, mut io) = (hub(), Recorder::default());
    let a = join(&mut h, &mut io, 10, &["a"]);
    // No such target; then a message as an id the link does not own.
    h.handle_frame(Instant::ZERO, a, &deliver("a", "nobody", 1), &mut io);
    h.handle_frame(Instant::ZERO, a, &deliver("mallory", "a", 1), &mut io);
    let s = h.stats();
    assert_eq!(s.failed, 2);
    let mut expected = [0u64; FAIL_REASONS];
    expected[fail_reason_index(FailReason::UnknownTarget)] = 1;
    expected[fail_reason_index(FailReason::NotOwner)] = 1;
    assert_eq!(s.failed_by_reason, expected);
    assert_eq!(s.failed_by_reason.iter().sum::<u64>(), s.failed);
    let c = counters(&h, a);
    assert_eq!((c.failures, c.messages_in, c.messages_out), (2, 0, 0));
}

#[test]
fn a_stalled_message_is_not_counted_as_routed_until_it_goes() {
    let (mut h, mut io) = (hub(), Recorder::default());
    let a = join(&mut h, &mut io, 10, &["a"]);
    let b = join(&mut h, &mut io, 11, &["b"]);
    io.full.push(b);
    let m = deliver("a", "b", 1);
    assert_eq!(
        h.handle_frame(Instant::ZERO, a, &m, &mut io),
        Handled::Stalled(b)
    );
    assert_eq!(counters(&h, b).messages_out, 0);
    assert_eq!(h.stats().delivered, 0);
    io.full.clear();
    assert_eq!(h.handle_frame(Instant::ZERO, a, &m, &mut io), Handled::Done);
    assert_eq!(counters(&h, b).messages_out, 1);
    assert_eq!(counters(&h, a).messages_in, 1);
    assert_eq!(h.stats().delivered, 1);
}

#[test]
fn links_opened_counts_reconnects_while_links_counts_the_open_ones() {
    let (mut h, mut io) = (hub(), Recorder::default());
    let a = join(&mut h, &mut io, 10, &["a"]);
    h.link_closed(a, &mut io);
    let _again = join(&mut h, &mut io, 10, &["a"]);
    assert_eq!(h.stats().links_opened, 2);
    assert_eq!(h.stats().links, 1);
    // The hub's own process is listed first, then the open link.
    let links: Vec<LinkId> = h.links().map(|l| l.link).collect();
    assert_eq!(links.len(), 2);
    assert_eq!(links[0], 0);
}

#[test]
fn a_stats_request_is_passed_on_to_the_other_links_and_answers_come_back() {
    let (mut h, mut io) = (hub(), Recorder::default());
    let asker = join(&mut h, &mut io, 10, &[]);
    let n1 = join(&mut h, &mut io, 11, &["n1"]);
    let n2 = join(&mut h, &mut io, 12, &["n2"]);
    io.clear();
    let ask = body(&Frame::StatsRequest { link: 0 });
    assert_eq!(
        h.handle_frame(Instant::ZERO, asker, &ask, &mut io),
        Handled::Done
    );
    // Passed on to both nodes with the asker's link, not back to the asker.
    for n in [n1, n2] {
        assert!(matches!(io.frames(n)[..], [Frame::StatsRequest { link }] if link == asker));
    }
    assert!(io.frames(asker).is_empty());
    assert_eq!(io.stats_asked, vec![(asker, 2)]);
    assert_eq!(h.stats().stats_requests, 1);

    // n1 answers: the asker gets it, marked with n1's link.
    let answer = body(&Frame::Stats {
        link: asker,
        expect: 0,
        report: b"{}",
    });
    h.handle_frame(Instant::ZERO, n1, &answer, &mut io);
    assert!(matches!(
        io.frames(asker)[..],
        [Frame::Stats { link, expect: 0, report: b"{}" }] if link == n1
    ));
}

#[test]
fn an_answer_for_a_link_that_never_asked_or_left_is_dropped() {
    let (mut h, mut io) = (hub(), Recorder::default());
    let other = join(&mut h, &mut io, 10, &[]);
    let node = join(&mut h, &mut io, 11, &["n"]);
    io.clear();
    let unasked = body(&Frame::Stats {
        link: other,
        expect: 0,
        report: b"{}",
    });
    h.handle_frame(Instant::ZERO, node, &unasked, &mut io);
    let to_nowhere = body(&Frame::Stats {
        link: 7,
        expect: 0,
        report: b"{}",
    });
    h.handle_frame(Instant::ZERO, node, &to_nowhere, &mut io);
    // Link 0 is the hub's own process: it answers through the platform, never by a frame.
    let to_hub = body(&Frame::Stats {
        link: 0,
        expect: 0,
        report: b"{}",
    });
    h.handle_frame(Instant::ZERO, node, &to_hub, &mut io);
    assert!(io.sent.is_empty());
    assert_eq!(h.stats().stats_dropped, 3);

    // An asker that left: its answers are dropped too.
    let ask = body(&Frame::StatsRequest { link: 0 });
    h.handle_frame(Instant::ZERO, other, &ask, &mut io);
    h.link_closed(other, &mut io);
    io.clear();
    h.handle_frame(Instant::ZERO, node, &unasked, &mut io);
    assert!(io.sent.is_empty());
    assert_eq!(h.stats().stats_dropped, 4);
}

#[test]
fn the_reserved_kind_28_is_never_encoded_as_a_frame() {
    let mut buf = [0u8; 64];
    assert!(Frame::ReservedCorrelatedDeliver.encode(&mut buf).is_err());
    // Kinds 29 and 30 round-trip.
    let n = Frame::StatsRequest { link: 3 }.encode(&mut buf).unwrap();
    assert_eq!(buf[4], 29);
    assert_eq!(
        Frame::decode(&buf[4..n]).unwrap(),
        Frame::StatsRequest { link: 3 }
    );
    let stats = Frame::Stats {
        link: 2,
        expect: 5,
        report: b"{\"a\":1}",
    };
    let n = stats.encode(&mut buf).unwrap();
    assert_eq!(buf[4], 30);
    assert_eq!(Frame::decode(&buf[4..n]).unwrap(), stats);
}

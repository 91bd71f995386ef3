//! The hub's publish/subscribe table: subscriptions held while their machine is registered,
//! told to every watching link (a snapshot, then each change), refused with a status frame
//! beyond the per-link quota or the table's size (a flood never grows the hub), and the
//! reserved `xstate.` namespace kept out of publications. Driven with a virtual clock and a
//! recording I/O, as `hub_rules.rs`.

use interstate_core::hub::{Handled, Hub, HubConfig, LinkId, SUBSCRIPTIONS_PER_LINK};
use interstate_core::topic::{Subscription, TopicStatus};
use interstate_core::wire::{Deliver, FailReason, Frame};
use interstate_core::Instant;

mod recorder;
use recorder::{body, join, Recorder, UID};

/// Room for a full link's quota and a little more.
const SLOTS: usize = SUBSCRIPTIONS_PER_LINK + 8;
type TestHub = Hub<8, 16, 4, [Subscription; SLOTS]>;

fn hub() -> Box<TestHub> {
    Box::new(Hub::new(HubConfig::new(UID, 1), "hub"))
}

fn send(hub: &mut TestHub, io: &mut Recorder, link: LinkId, f: Frame<'_>) -> Handled {
    hub.handle_frame(Instant::ZERO, link, &body(&f), io)
}

fn subscribe(
    hub: &mut TestHub,
    io: &mut Recorder,
    link: LinkId,
    machine: &str,
    filter: &str,
) -> TopicStatus {
    io.clear();
    send(hub, io, link, Frame::TopicSubscribe { machine, filter });
    io.frames(link)
        .into_iter()
        .find_map(|f| match f {
            Frame::TopicResult { status, .. } => Some(status),
            _ => None,
        })
        .expect("a subscription is always answered")
}

/// The TopicEntry frames sent to `link`: (machine, filter, on).
fn entries(io: &Recorder, link: LinkId) -> Vec<(String, String, bool)> {
    io.frames(link)
        .into_iter()
        .filter_map(|f| match f {
            Frame::TopicEntry {
                machine,
                filter,
                on,
            } => Some((machine.to_string(), filter.to_string(), on)),
            _ => None,
        })
        .collect()
}

#[test]
fn watchers_get_a_snapshot_then_every_change_and_a_leaving_machine_takes_its_subscriptions() {
    let (mut h, mut io) = (hub(), Recorder::default());
    let a = join(&mut h, &mut io, 10, &["a1", "a2"]);
    let w = join(&mut h, &mut io, 11, &[]);
    assert_eq!(
        subscribe(&mut h, &mut io, a, "a1", "plant/+/alarm"),
        TopicStatus::Ok
    );
    // Asked again: still one subscription, still Ok.
    assert_eq!(
        subscribe(&mut h, &mut io, a, "a1", "plant/+/alarm"),
        TopicStatus::Ok
    );
    io.clear();
    send(&mut h, &mut io, w, Frame::TopicWatch { on: true });
    let frames = io.frames(w);
    assert_eq!(
        entries(&io, w),
        [("a1".into(), "plant/+/alarm".into(), true)]
    );
    assert_eq!(frames.last(), Some(&Frame::TopicSnapshotEnd));
    io.clear();
    assert_eq!(
        subscribe(&mut h, &mut io, a, "a2", "plant/#"),
        TopicStatus::Ok
    );
    assert_eq!(entries(&io, w), [("a2".into(), "plant/#".into(), true)]);
    assert_eq!(h.subscriptions().count_subscribers("plant/1/alarm"), 2);
    // Unsubscribing tells the watchers.
    io.clear();
    send(
        &mut h,
        &mut io,
        a,
        Frame::TopicUnsubscribe {
            machine: "a2",
            filter: "plant/#",
        },
    );
    assert_eq!(entries(&io, w), [("a2".into(), "plant/#".into(), false)]);
    // An unregistered machine's subscriptions end; so do a closed link's.
    assert_eq!(subscribe(&mut h, &mut io, a, "a2", "x"), TopicStatus::Ok);
    io.clear();
    send(&mut h, &mut io, a, Frame::Unregister { machine: "a1" });
    assert_eq!(
        entries(&io, w),
        [("a1".into(), "plant/+/alarm".into(), false)]
    );
    io.clear();
    h.link_closed(a, &mut io);
    assert_eq!(entries(&io, w), [("a2".into(), "x".into(), false)]);
    assert!(h.subscriptions().is_empty());
    // A watcher that stops watching hears nothing more.
    let b = join(&mut h, &mut io, 12, &["b"]);
    send(&mut h, &mut io, w, Frame::TopicWatch { on: false });
    io.clear();
    assert_eq!(subscribe(&mut h, &mut io, b, "b", "y"), TopicStatus::Ok);
    assert!(entries(&io, w).is_empty());
}

#[test]
fn a_flood_of_subscriptions_is_refused_with_a_status_and_never_grows_the_table() {
    let (mut h, mut io) = (hub(), Recorder::default());
    let a = join(&mut h, &mut io, 10, &["a"]);
    let b = join(&mut h, &mut io, 11, &["b"]);
    for i in 0..SUBSCRIPTIONS_PER_LINK {
        let f = format!("flood/{i}");
        assert_eq!(
            subscribe(&mut h, &mut io, a, "a", &f),
            TopicStatus::Ok,
            "{f}"
        );
    }
    for i in 0..4 {
        let f = format!("more/{i}");
        assert_eq!(subscribe(&mut h, &mut io, a, "a", &f), TopicStatus::TooMany);
        assert!(io
            .logs
            .iter()
            .any(|(l, m)| *l == a && m.contains("as many subscriptions")));
    }
    assert_eq!(h.subscriptions().len(), SUBSCRIPTIONS_PER_LINK);
    // Another link fills the rest of the table; then the table is full for everyone.
    for i in 0..SLOTS - SUBSCRIPTIONS_PER_LINK {
        let f = format!("b/{i}");
        assert_eq!(subscribe(&mut h, &mut io, b, "b", &f), TopicStatus::Ok);
    }
    assert_eq!(
        subscribe(&mut h, &mut io, b, "b", "one/more"),
        TopicStatus::HubFull
    );
    assert_eq!(h.subscriptions().len(), SLOTS);
    // Nothing closed a link: a refusal is an answer, not a protocol error.
    assert!(io.closed.is_empty(), "{:?}", io.closed);
}

#[test]
fn a_subscription_needs_a_valid_filter_and_an_owned_machine() {
    let (mut h, mut io) = (hub(), Recorder::default());
    let a = join(&mut h, &mut io, 10, &["a"]);
    join(&mut h, &mut io, 11, &["b"]);
    for bad in ["", "a/#/b", "a+", "x\0y"] {
        assert_eq!(
            subscribe(&mut h, &mut io, a, "a", bad),
            TopicStatus::BadFilter,
            "{bad:?}"
        );
    }
    assert_eq!(
        subscribe(&mut h, &mut io, a, "b", "x"),
        TopicStatus::NotOwner
    );
    assert_eq!(
        subscribe(&mut h, &mut io, a, "nobody", "x"),
        TopicStatus::NotOwner
    );
    assert!(h.subscriptions().is_empty());
}

#[test]
fn a_publication_cannot_carry_an_event_of_the_reserved_namespace() {
    let (mut h, mut io) = (hub(), Recorder::default());
    let a = join(&mut h, &mut io, 10, &["a"]);
    let b = join(&mut h, &mut io, 11, &["b"]);
    io.clear();
    // A publication's event field is `TOPIC \0 EVENT`: the event is checked, not the topic.
    let forged = Deliver {
        from: "a",
        to: "b",
        event: "plant/1\0xstate.error.delivery",
        payload: b"{}",
        seq: 5,
        correlation: Default::default(),
    };
    send(&mut h, &mut io, a, Frame::Deliver(forged));
    assert!(io.frames(b).is_empty());
    assert!(matches!(
        io.frames(a).first(),
        Some(Frame::DeliveryFailed(f)) if f.reason == FailReason::Reserved
    ));
    io.clear();
    let fine = Deliver {
        event: "xstate.plant/1\0ALARM",
        seq: 6,
        ..forged
    };
    let mut h2 = hub();
    let a2 = join(&mut h2, &mut io, 10, &["a"]);
    let b2 = join(&mut h2, &mut io, 11, &["b"]);
    io.clear();
    send(&mut h2, &mut io, a2, Frame::Deliver(fine));
    assert_eq!(io.frames(b2).len(), 1, "a topic may start with xstate.");
}

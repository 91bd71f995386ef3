//! Publications on the simulated bus (`sim`): the core's `Hub` (holding the subscriptions)
//! and `bus::Client`s whose hosts fan each publication out from their copy of the table as
//! a node does, one message per subscriber with one sequence number. Each test ends with
//! `sim::check`, which checks every promise of `docs/guarantees.md` for each (publisher,
//! subscriber) pair: delivered once or reported failed once, never twice, in order.

mod sim;

use interstate_core::wire::FailReason;
use interstate_core::Duration;
use sim::{check, Sim, SimConfig};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const SETTLE: Duration = Duration::from_millis(60_000);

fn delivered_to(s: &Sim, to: &str) -> Vec<u64> {
    s.rec
        .delivered
        .iter()
        .filter(|d| d.to == to)
        .map(|d| d.n)
        .collect()
}

/// A publisher and three subscribers in two processes (one subscribed twice through two
/// matching filters, one not matching): each matching subscriber has each publication once,
/// in order, across a hub restart in mid-stream (the subscriptions are asked for again with
/// the registrations, the publisher's copy of the table comes back with the snapshot).
#[test]
fn a_publication_reaches_each_subscriber_once_in_order_across_a_hub_restart() {
    let mut s = Sim::new(SimConfig::default());
    let publisher = s.add_process(&[], &["pub"]);
    let a = s.add_process(&["s1", "s2"], &[]);
    let b = s.add_process(&["s3", "other"], &[]);
    s.subscribe(a, "s1", "plant/+/alarm");
    s.subscribe(a, "s2", "plant/#");
    s.subscribe(b, "s3", "plant/1/alarm");
    s.subscribe(b, "s3", "+/1/#");
    s.subscribe(b, "other", "office/#");
    assert!(s.settle(SETTLE), "{}", s.describe());
    let mut subscribers = s
        .proc(publisher)
        .topics
        .table()
        .count_subscribers("plant/1/alarm");
    assert_eq!(subscribers, 3);
    for i in 0..40 {
        s.publish(publisher, "pub", "plant/1/alarm").expect("room");
        s.run_for(ms(1));
        if i == 20 {
            s.restart_hub(ms(30));
        }
    }
    assert!(s.settle(SETTLE), "{}", s.describe());
    subscribers = s
        .proc(publisher)
        .topics
        .table()
        .count_subscribers("plant/1/alarm");
    assert_eq!(subscribers, 3, "the copy is back after the restart");
    for sub in ["s1", "s2", "s3"] {
        assert_eq!(delivered_to(&s, sub).len(), 40, "{sub}: {}", s.describe());
    }
    assert!(delivered_to(&s, "other").is_empty());
    assert!(s.rec.failed.is_empty(), "{:?}", s.rec.failed);
    let summary = check(&s).unwrap_or_else(|e| panic!("{e}\n{}", s.describe()));
    assert_eq!((summary.sent, summary.delivered_once), (120, 120));
}

/// A subscriber killed with publications in flight: each one it did not acknowledge comes
/// back to the publisher once, naming it (`target-gone`); the other subscriber has them all.
#[test]
fn a_publication_to_a_killed_subscriber_is_reported_failed_naming_it() {
    let mut s = Sim::new(SimConfig::default());
    let publisher = s.add_process(&[], &["pub"]);
    let a = s.add_process(&["alive"], &[]);
    let b = s.add_process(&["doomed"], &[]);
    s.subscribe(a, "alive", "t");
    s.subscribe(b, "doomed", "t");
    assert!(s.settle(SETTLE), "{}", s.describe());
    s.set_delay(b, ms(20));
    for _ in 0..10 {
        s.publish(publisher, "pub", "t").expect("room");
    }
    s.run_for(ms(5));
    s.kill(b);
    assert!(s.settle(SETTLE), "{}", s.describe());
    assert_eq!(delivered_to(&s, "alive").len(), 10);
    assert!(delivered_to(&s, "doomed").is_empty());
    let failed: Vec<_> = s
        .rec
        .failed
        .iter()
        .map(|f| (f.to.as_str(), f.reason))
        .collect();
    assert_eq!(failed.len(), 10, "{failed:?}");
    assert!(failed
        .iter()
        .all(|f| *f == ("doomed", FailReason::TargetGone)));
    check(&s).unwrap_or_else(|e| panic!("{e}\n{}", s.describe()));
    // The dead subscriber's subscription ended with it: later publications skip it.
    assert_eq!(s.proc(publisher).topics.table().count_subscribers("t"), 1);
}

/// A publisher whose outstanding buffer holds fewer messages than one publication has
/// subscribers: its fan-out stops on backpressure and resumes at the next subscriber once
/// acknowledgements free room, skipping and repeating no one.
#[test]
fn a_fan_out_stopped_by_backpressure_resumes_without_skipping_or_repeating() {
    let config = SimConfig {
        outstanding: 400,
        ..SimConfig::default()
    };
    let mut s = Sim::new(config);
    let publisher = s.add_process(&[], &["pub"]);
    let subs: Vec<String> = (0..12).map(|i| format!("sub{i}")).collect();
    let ids: Vec<&str> = subs.iter().map(String::as_str).collect();
    let p1 = s.add_process(&ids[..6], &[]);
    let p2 = s.add_process(&ids[6..], &[]);
    for (i, id) in ids.iter().enumerate() {
        s.subscribe(if i < 6 { p1 } else { p2 }, id, "load/#");
    }
    assert!(s.settle(SETTLE), "{}", s.describe());
    for _ in 0..15 {
        s.publish(publisher, "pub", "load/x").expect("room");
    }
    assert!(s.settle(SETTLE), "{}", s.describe());
    for id in &ids {
        assert_eq!(delivered_to(&s, id).len(), 15, "{id}");
    }
    assert!(s.rec.failed.is_empty());
    // The buffer was full: the fan-out did stop on backpressure.
    assert!(s.rec.peak_outstanding > 300, "{}", s.rec.peak_outstanding);
    assert!(s.rec.peak_outstanding <= 400);
    check(&s).unwrap_or_else(|e| panic!("{e}\n{}", s.describe()));
}

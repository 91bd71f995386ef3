//! The hub's counters on the simulated bus (`sim`): what it counts per link and by failure
//! reason agrees with what the processes saw, with and without a process killed mid-stream.

mod sim;

use interstate_core::hub::{fail_reason_index, LinkCounters};
use interstate_core::wire::FailReason;
use interstate_core::Duration;
use sim::{check, Sim, SimConfig};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const SETTLE: Duration = Duration::from_millis(60_000);

fn bus(machines: &[&[&str]]) -> Sim {
    let mut s = Sim::new(SimConfig::default());
    for m in machines {
        s.add_process(m, &[]);
    }
    assert!(s.settle(SETTLE), "{}", s.describe());
    s
}

/// The counters of the link that hosts `id`.
fn link_of(s: &Sim, id: &str) -> LinkCounters {
    let hub = s.hub.as_ref().expect("the hub is up");
    let link = hub.route(id).expect("registered");
    hub.links()
        .find(|l| l.link == link)
        .expect("its link is open")
        .counters
}

/// Three senders into one receiver: every message routed once, counted in on its sender's
/// link and out on the receiver's; the totals agree with the deliveries.
#[test]
fn routed_messages_agree_with_the_deliveries_per_link() {
    let mut s = bus(&[&["sink"], &["a"], &["b"], &["c"]]);
    for i in 0..200 {
        for (p, id) in [(1, "a"), (2, "b"), (3, "c")] {
            s.send(p, id, "sink").expect("room in the outbox");
        }
        if i % 10 == 0 {
            s.run_for(ms(3));
        }
    }
    assert!(s.settle(SETTLE), "{}", s.describe());
    let summary = check(&s).unwrap();
    assert_eq!(summary.delivered_once, 600, "{summary:?}");
    let stats = s.hub.as_ref().unwrap().stats();
    assert_eq!(stats.delivered, 600);
    assert_eq!(stats.failed, 0);
    for id in ["a", "b", "c"] {
        let c = link_of(&s, id);
        assert_eq!(
            (c.messages_in, c.messages_out, c.failures),
            (200, 0, 0),
            "{id}"
        );
    }
    let sink = link_of(&s, "sink");
    assert_eq!((sink.messages_in, sink.messages_out), (0, 600));
    // Every frame the hub read was counted on its link: at least the messages and the
    // acknowledgements.
    let frames: u64 = s
        .hub
        .as_ref()
        .unwrap()
        .links()
        .map(|l| l.counters.frames_in)
        .sum();
    assert!(frames >= 600, "{frames}");
}

/// A receiver killed mid-stream: the hub's failures by reason add up to its failures, all
/// reported on the sender's link, as `target-gone` or `unknown-target`.
#[test]
fn failures_by_reason_add_up_when_a_receiver_is_killed() {
    let mut s = bus(&[&["src"], &["dst"]]);
    for i in 0..200 {
        s.send(0, "src", "dst");
        s.run_for(ms(1));
        if i == 100 {
            s.kill(1);
        }
    }
    assert!(s.settle(SETTLE), "{}", s.describe());
    check(&s).unwrap();
    let stats = s.hub.as_ref().unwrap().stats();
    assert!(stats.failed > 0);
    assert_eq!(stats.failed_by_reason.iter().sum::<u64>(), stats.failed);
    let gone = stats.failed_by_reason[fail_reason_index(FailReason::TargetGone)];
    let unknown = stats.failed_by_reason[fail_reason_index(FailReason::UnknownTarget)];
    assert_eq!(gone + unknown, stats.failed, "{stats:?}");
    let src = link_of(&s, "src");
    assert_eq!(src.failures, stats.failed);
    assert_eq!(src.messages_in, stats.delivered);
    assert_eq!(stats.links, 1);
    assert_eq!(stats.links_opened, 2);
}

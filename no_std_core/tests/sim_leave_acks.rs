//! Acknowledgements the policy holds never let a departure overtake them, on the simulated
//! bus and its virtual clock. A receiver owes acknowledgements for what it took, and the
//! policy (`bus::policy::AckTimer`) holds them: fewer than `ACK_PIGGYBACK` owed, its delay not
//! passed, with or without replies of its own to ride on. It then leaves, each way an id can
//! leave on purpose: unregistered (a machine taken off the bus), a port closed after it read
//! its messages, stopped on an error, the process shut down. Its senders must see every
//! message it took acknowledged, none failed: the client emits what it owes before any frame
//! announcing the departure (`Client::unregister`, `Client::stopped`, `Client::emit_acks_now`
//! before `Goodbye`), on the hub's link, which the hub forwards in order.

mod sim;

use interstate_core::bus::policy::ACK_PIGGYBACK;
use interstate_core::Duration;
use sim::{check, Sim, SimConfig};

const SETTLE: Duration = Duration::from_millis(60_000);
/// Messages sent to the receiver: fewer than a pending write carries acknowledgements for.
const SENT: usize = 5;
const _: () = assert!(SENT < ACK_PIGGYBACK);

#[derive(Clone, Copy, Debug)]
enum Leave {
    Unregister,
    ClosePort,
    Stopped,
    Shutdown,
}

/// Sender `a` (process 0) sends [`SENT`] messages to `r` (a machine of process 1) or to
/// `port` (a port of process 1, which reads them); `replies`: process 1 answers each (from
/// `port`), so that it has writes its acknowledgements could ride on. Returns the bus once the
/// receiver has every message and still owes their acknowledgements.
fn receiver_holding_acks(config: SimConfig, to_port: bool, replies: bool) -> Sim {
    let mut s = Sim::new(config);
    s.add_process(&["a"], &[]);
    s.add_process(&["r"], &["port"]);
    assert!(s.settle(SETTLE), "{}", s.describe());
    let target = if to_port { "port" } else { "r" };
    for _ in 0..SENT {
        s.send(0, "a", target).expect("room in the outbox");
    }
    let arrived = s.drive_until(SETTLE, &mut |s| {
        let pr = s.proc(1);
        s.rec.delivered.len() + pr.port_queue.len() == SENT
    });
    assert!(arrived, "{}", s.describe());
    if to_port {
        while s.read_port(1).is_some() {}
    }
    if replies {
        // From the id that stays: what a leaving id sent itself is not this test's.
        for _ in 0..SENT {
            s.send(1, "port", "a").expect("room in the outbox");
        }
        // One instant: the replies are written, the acknowledgements not carried.
        let now = s.now;
        s.drive_until(Duration::ZERO, &mut |s| s.now > now);
    }
    assert_eq!(s.rec.delivered.iter().filter(|d| d.proc == 1).count(), SENT);
    let pr = s.proc(1);
    assert!(
        pr.client.received().is_dirty() && pr.client.received().owed() > 0,
        "the policy holds the receiver's acknowledgements when it leaves{}",
        s.describe()
    );
    assert!(
        !s.proc(0).client.outstanding().is_empty(),
        "the sender waits for them"
    );
    s
}

fn leave(s: &mut Sim, how: Leave) {
    match how {
        Leave::Unregister => s.unregister(1, "r"),
        Leave::ClosePort => s.unregister(1, "port"),
        Leave::Stopped => s.stopped(1, "r", "a step failed"),
        Leave::Shutdown => s.shutdown(1),
    }
}

/// After the receiver left: every message to it delivered and acknowledged to its sender,
/// none reported failed.
fn every_delivered_message_acknowledged(s: &mut Sim, how: Leave) {
    let settled = s.drive_until(SETTLE, &mut |s| {
        s.proc(0).client.outstanding().is_empty() && s.quiescent()
    });
    assert!(settled, "{how:?}: {}", s.describe());
    let to_receiver = |to: &str| to == "r" || to == "port";
    let failed: Vec<_> = s.rec.failed.iter().filter(|f| to_receiver(&f.to)).collect();
    assert!(
        failed.is_empty(),
        "{how:?}: delivered, yet reported failed: {failed:?}"
    );
    let delivered = s.rec.delivered.iter().filter(|d| d.proc == 1).count();
    assert_eq!(delivered, SENT, "{how:?}");
    check(s).unwrap();
}

fn each_way(config: impl Fn() -> SimConfig) {
    for replies in [false, true] {
        for how in [
            Leave::Unregister,
            Leave::ClosePort,
            Leave::Stopped,
            Leave::Shutdown,
        ] {
            let to_port = matches!(how, Leave::ClosePort);
            if to_port && replies {
                continue;
            }
            let mut s = receiver_holding_acks(config(), to_port, replies);
            if s.config.direct_pairs > 0 {
                let paired = |p: usize| s.proc(p).rings.iter().any(Option::is_some);
                assert!(paired(0) && paired(1), "a ring pair{}", s.describe());
            }
            leave(&mut s, how);
            every_delivered_message_acknowledged(&mut s, how);
        }
    }
}

#[test]
fn a_receiver_leaving_with_held_acknowledgements_has_every_delivered_message_acknowledged() {
    each_way(SimConfig::default);
}

/// The same over direct rings: the acknowledgements forced out before a departure go on the
/// hub's link, where the departure goes, not on the ring the hub's `RegistryRemoved` could
/// overtake.
#[test]
fn the_same_when_the_two_hold_a_direct_ring_pair() {
    each_way(|| SimConfig {
        direct_pairs: 1,
        // A ring slower than the hub's links: an acknowledgement left in it would be read
        // after the departure.
        direct_delay: Duration::from_millis(5),
        ..SimConfig::default()
    });
}

//! Latency under load on the simulated bus: a sender's credit (`bus::credit`) pushes a flood
//! back once its messages' sojourn has stood above the target, so the hub's queue for a slow
//! receiver holds milliseconds of traffic instead of all its bytes, the receiver is kept
//! busy, and a paced sender into the same receiver is not stuck behind the flood. Mirrors
//! the process test `cli/tests/load.rs` (its mixed run) on a virtual clock; ends with
//! `sim::check` (nothing lost, nothing twice, in order).

mod sim;

use interstate_core::bus::credit::{MIN_CREDIT, SOJOURN_INTERVAL, SOJOURN_TARGET};
use std::collections::HashMap;

use interstate_core::Duration;
use sim::{check, Sim, SimConfig};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const SETTLE: Duration = Duration::from_millis(60_000);
/// The receiver takes this many frames a millisecond.
const READS_PER_MS: usize = 20;
/// Run length, and the start-up left out of the figures (the first cut comes after a
/// target's sojourn held for an interval).
const RUN_MS: u64 = 2_000;
const WARM_UP_MS: u64 = 200;

struct Figures {
    /// Sojourn (taken by the sender's client to delivered) of the flood's and the paced
    /// sender's messages taken after the warm-up: the largest of each.
    flood_max: Duration,
    paced_max: Duration,
    /// Messages delivered to the receiver after the warm-up.
    delivered: usize,
    /// The most bytes the hub held for one connection.
    peak_hub_queue: usize,
}

/// A flooder (`f`, its application's outbox kept full) and a paced sender (`p`, one message
/// every 10 ms) into one receiver (`r`) that reads `READS_PER_MS` frames a millisecond.
fn flood_beside_a_paced_sender(config: SimConfig) -> (Sim, Figures) {
    let mut s = Sim::new(config);
    let flooder = s.add_process(&["f"], &[]);
    let paced = s.add_process(&["p"], &[]);
    let reader = s.add_process(&["r"], &[]);
    assert!(s.settle(SETTLE), "{}", s.describe());
    s.proc_mut(reader).reads_per_ms = Some(READS_PER_MS);
    let start = s.now;
    for t in 0..RUN_MS {
        while s.send(flooder, "f", "r").is_some() {}
        if t % 10 == 0 {
            s.send(paced, "p", "r").expect("room in the paced outbox");
        }
        s.run_for(ms(1));
    }
    s.proc_mut(reader).reads_per_ms = None;
    assert!(s.settle(SETTLE), "{}", s.describe());

    let warm = start + ms(WARM_UP_MS);
    let end = start + ms(RUN_MS);
    let mut f = Figures {
        flood_max: Duration::ZERO,
        paced_max: Duration::ZERO,
        delivered: 0,
        peak_hub_queue: s.rec.peak_hub_queue,
    };
    let sent_at: HashMap<u64, _> = s.rec.sent.iter().map(|x| (x.n, x.at)).collect();
    for d in &s.rec.delivered {
        let sent = sent_at[&d.n];
        if d.at >= warm && d.at < end {
            f.delivered += 1;
        }
        if sent < warm || sent >= end {
            continue;
        }
        let sojourn = d.at - sent;
        let max = if d.from == "p" {
            &mut f.paced_max
        } else {
            &mut f.flood_max
        };
        *max = (*max).max(sojourn);
    }
    (s, f)
}

#[test]
fn a_flood_into_a_slow_receiver_is_pushed_back_by_time_and_a_paced_sender_is_not_stuck() {
    // Queues large enough to hold a third of a second of this receiver's traffic: without
    // the credit, the flooder fills the hub's queue for the receiver (bytes are the only
    // bound) and every message waits that long.
    let config = SimConfig {
        delay: Duration::ZERO,
        outstanding: 256 * 1024,
        hub_queue: 256 * 1024,
        ..SimConfig::default()
    };
    let (s, f) = flood_beside_a_paced_sender(config);
    eprintln!(
        "flood max {:?}, paced max {:?}, delivered {} after the warm-up, hub queue peak {} B",
        f.flood_max, f.paced_max, f.delivered, f.peak_hub_queue
    );
    // Nothing lost or delivered twice: backpressure, not drops.
    check(&s).expect("every promise holds");

    // The flood's sojourn stays within a few targets: the credit is cut once it stood
    // above the target for an interval, to what meets the target, never below the floor.
    let floor_ms = (MIN_CREDIT / 40) as u64 / READS_PER_MS as u64;
    let bound = SOJOURN_TARGET.as_millis() * 2 + SOJOURN_INTERVAL.as_millis() + floor_ms;
    assert!(
        f.flood_max <= ms(bound),
        "the flood's sojourn reached {:?} (bound {bound} ms)",
        f.flood_max
    );
    // The paced sender's messages wait behind what the flood has in flight, not behind a
    // full queue.
    assert!(
        f.paced_max <= ms(bound),
        "a paced message waited {:?} (bound {bound} ms)",
        f.paced_max
    );
    // The hub held a small part of what it could have.
    assert!(
        f.peak_hub_queue < 256 * 1024 / 8,
        "the hub's queue for the receiver peaked at {} bytes",
        f.peak_hub_queue
    );
    // And the receiver was kept busy: the credit does not starve it.
    let capacity = (RUN_MS - WARM_UP_MS) as usize * READS_PER_MS;
    assert!(
        f.delivered * 10 >= capacity * 9,
        "{} delivered after the warm-up, of the receiver's {capacity}",
        f.delivered
    );
}

/// Ids long enough that a message takes about as many bytes as a 64-byte payload between
/// short ids (the bench's): about 120 bytes in the outstanding buffer, so that fewer than
/// `ACK_BATCH` fit in a new sender's credit.
const FLOODER: &str = "a-sender-whose-id-is-long-enough-to-make-its-messages-take-room";
const RECEIVER: &str = "a-receiver-whose-id-is-long-enough-to-make-messages-take-room";

/// A single sender flooding one receiver that keeps up (it reads whatever arrives), through
/// the hub, 1 ms each way: its throughput over `RUN_MS` after the warm-up, in messages a
/// millisecond, and the largest credit it had.
fn one_way_flood() -> (Sim, f64) {
    let config = SimConfig {
        outbox: 4096,
        ..SimConfig::default()
    };
    let mut s = Sim::new(config);
    let sender = s.add_process(&[FLOODER], &[]);
    let _receiver = s.add_process(&[RECEIVER], &[]);
    assert!(s.settle(SETTLE), "{}", s.describe());
    let start = s.now;
    for _ in 0..RUN_MS {
        while s.send(sender, FLOODER, RECEIVER).is_some() {}
        s.run_for(ms(1));
    }
    assert!(s.settle(SETTLE), "{}", s.describe());
    let (warm, end) = (start + ms(WARM_UP_MS), start + ms(RUN_MS));
    let delivered = s
        .rec
        .delivered
        .iter()
        .filter(|d| d.at >= warm && d.at < end)
        .count();
    (s, delivered as f64 / (RUN_MS - WARM_UP_MS) as f64)
}

#[test]
fn a_single_sender_flooding_a_receiver_that_keeps_up_keeps_its_throughput() {
    // The receiver keeps up, so nothing stands in a queue: the sender's credit grows to its
    // whole buffer and stays there. Its messages are long enough that a new sender's credit
    // holds fewer than `ACK_BATCH`: the receiver acknowledges by bytes (`ACK_BYTES`), not
    // only every `ACK_BATCH` deliveries or after `ACK_DELAY`.
    let (s, per_ms) = one_way_flood();
    check(&s).expect("every promise holds");
    let sender = s.procs[0].as_ref().expect("the sender");
    let credit = sender.client.credit().limit();
    eprintln!("one way: {per_ms:.1} messages/ms, credit at the end {credit} B");
    // A round trip (there and the acknowledgement back) is 4 ms: the whole outstanding
    // buffer (64 KiB, messages of about 150 bytes) would carry about 110 a millisecond.
    assert!(
        per_ms >= 50.0,
        "the sender carried {per_ms:.1} messages/ms (credit at the end {credit} B)"
    );
}

//! Fair service at the hub on the simulated bus (`interstate_core::hub::fair`, read as a node
//! reads its links): two senders stalled behind one full receiver take turns refilling its
//! queue once it drains, instead of the lower link refilling it every time while the other
//! waits for the first one's whole flood; and everything still arrives once, in order.

mod sim;

use interstate_core::Duration;
use sim::{check, Sim, SimConfig};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const SETTLE: Duration = Duration::from_millis(60_000);
const PER_SENDER: usize = 200;

/// Two senders each have their whole flood at the hub while the receiver reads nothing (its
/// queue fills and both stall); then it reads again. Counted over the first half of what it
/// gets after that, each sender has a fair share of it.
#[test]
fn senders_stalled_behind_one_receiver_take_turns() {
    let config = SimConfig {
        hub_queue: 1024,
        outstanding: 64 * 1024,
        outbox: PER_SENDER,
        ..SimConfig::default()
    };
    let mut s = Sim::new(config);
    let sink = s.add_process(&["sink"], &[]);
    let a = s.add_process(&["a"], &[]);
    let b = s.add_process(&["b"], &[]);
    assert!(s.settle(SETTLE), "{}", s.describe());
    s.proc_mut(sink).frozen = true;
    for _ in 0..PER_SENDER {
        assert!(s.send(a, "a", "sink").is_some());
        assert!(s.send(b, "b", "sink").is_some());
    }
    // Long enough for both floods to reach the hub and stall behind the full queue, short
    // of the idle timeout that would close the hung receiver.
    s.run_for(ms(500));
    assert!(
        s.rec.delivered.is_empty(),
        "the receiver has read nothing yet"
    );
    s.proc_mut(sink).frozen = false;
    assert!(s.settle(SETTLE), "{}", s.describe());
    check(&s).unwrap();
    let got: Vec<&str> = s
        .rec
        .delivered
        .iter()
        .filter(|d| d.to == "sink")
        .map(|d| d.from.as_str())
        .collect();
    assert_eq!(got.len(), 2 * PER_SENDER, "everything arrives");
    let first_half = &got[..PER_SENDER];
    let from_a = first_half.iter().filter(|f| **f == "a").count();
    let from_b = first_half.len() - from_a;
    assert!(
        from_a >= PER_SENDER / 4 && from_b >= PER_SENDER / 4,
        "the first {PER_SENDER} delivered: {from_a} from a, {from_b} from b"
    );
}

//! The end of a durable relay's stream (`durable.rs`, `direct_durable.rs`): the relay
//! machine forwards each TICK to the test's port `sink` as an INC carrying its number.

use std::time::{Duration, Instant};

use interstate::bus::{Node, DELIVERY_ERROR_EVENT};
use serde_json::Value;

use super::{Bus, STEP_LIMIT};

/// Takes what waits at the test's port: INC numbers into `got`, failure reports counted.
pub fn drain(node: &mut Node, got: &mut Vec<u64>, failed: &mut u64) {
    while let Some(m) = node.recv_port() {
        if m.event == DELIVERY_ERROR_EVENT {
            *failed += 1;
            continue;
        }
        assert_eq!((m.port.as_str(), m.event.as_str()), ("sink", "INC"));
        let v: Value = serde_json::from_slice(&m.payload).expect("INC carries JSON");
        got.push(v["n"].as_u64().expect("INC carries its number"));
    }
}

/// Drives `node` until an INC of each of the `sent` TICKs arrived and nothing it sent is
/// unacknowledged, a while longer for late duplicates, then checks: every INC taken once,
/// in order, no failure reported to the port, and the relay `relay` counted `sent` TICKs
/// and no failure.
pub fn finish(bus: &mut Bus, node: &mut Node, got: &mut Vec<u64>, failed: &mut u64, sent: u64) {
    let end = Instant::now() + STEP_LIMIT * 2;
    while node.unacknowledged() > 0 || (got.len() as u64) < sent {
        assert!(
            Instant::now() < end,
            "{} of {sent} taken{}",
            got.len(),
            bus.dump()
        );
        node.run_once(Some(Duration::from_millis(2))).unwrap();
        drain(node, got, failed);
    }
    // Late duplicates would show up now.
    for _ in 0..50 {
        node.run_once(Some(Duration::from_millis(2))).unwrap();
        drain(node, got, failed);
    }
    let want: Vec<u64> = (1..=sent).collect();
    assert_eq!(*got, want, "every INC taken once, in order");
    assert_eq!(*failed, 0, "no failure reported to the TICKs' sender");
    let (st, out, err) = bus.run(&["status", "relay", "--json"]);
    assert!(st.success(), "status failed: {err}{}", bus.dump());
    let s: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(s["context"]["ticks"].as_u64(), Some(sent), "{s}");
    assert_eq!(s["context"]["failed"].as_u64(), Some(0), "{s}");
}

//! Durable machines over a direct ring pair, with real processes on a shared-memory bus: a
//! durable receiver (`interstate run --state-dir --client`) and a durable sender, each
//! SIGKILLed mid-stream while the test's process streams to it (or takes its stream)
//! through a ring pair of their own, and started again within the hub's hold. What
//! `docs/guarantees.md` promises for durable processes holds over a ring as through the hub:
//! every message once, in order, none lost, none reported failed.
//!
//! Each test checks from the hub's counters that a pair opened in every cycle (the killed
//! process's pair closes with its link, its next process pairs up again), so that the
//! stream it asserts on was carried by rings. The simulated runs of the same rules are in
//! `no_std_core/tests/sim_direct_windows.rs`. Waits poll with a deadline; nothing asserts on
//! timing.

mod support;

use std::time::{Duration, Instant};

use interstate::bus::{Node, NodeConfig, Role, Transport, DELIVERY_ERROR_EVENT};
use serde_json::Value;
use support::relay::drain;
use support::{Bus, P, STEP_LIMIT};

/// Counts INC events and remembers the number of the last.
const COUNTER: &str = r#"{"id":"counter","initial":"counting","context":{"count":0,"last":0},
  "states":{"counting":{"on":{"INC":{"actions":{"type":"assign",
    "assignment":{"count":{"$add":1},"last":{"$event":"n"}}}}}}}}"#;

/// Forwards each TICK's data to the port `sink` as INC, and counts failures reported to it.
const RELAY: &str = r#"{"id":"relay","initial":"relaying","context":{"ticks":0,"failed":0},
  "states":{"relaying":{"on":{
    "TICK":{"actions":[{"type":"assign","assignment":{"ticks":{"$add":1}}},
      {"type":"sendTo","to":"sink","event":"INC","data":{"from":"event"}}]},
    "xstate.error.delivery":{"actions":{"type":"assign","assignment":{"failed":{"$add":1}}}}}}}}"#;

/// How many times the durable side is killed.
const CYCLES: u64 = 5;

/// The test's process: ports `src` and `sink`, a client over shared memory that takes
/// direct pairs (the default over shared memory).
fn test_node(bus: &Bus) -> Node {
    let mut c = NodeConfig::new(&bus.name);
    c.dir = bus.dir.clone();
    c.role = Role::Client;
    c.transport = Transport::SHARED_MEMORY;
    c.backoff = (
        interstate_core::Duration::from_millis(10),
        interstate_core::Duration::from_millis(100),
    );
    assert!(c.direct_pairs > 0, "direct pairs are taken over shm");
    let mut node = Node::new(c).expect("the test's node joins the bus");
    node.set_logger(|_| {});
    node.open_port("src").unwrap();
    node.open_port("sink").unwrap();
    node
}

/// A counter of the hub's process from `interstate stats --json`.
fn hub_counter(bus: &mut Bus, name: &str) -> Option<u64> {
    let (status, out, _) = bus.run(&["stats", "--json"]);
    if !status.success() {
        return None;
    }
    let v: Value = serde_json::from_str(&out).ok()?;
    let hub = v["processes"]
        .as_array()?
        .iter()
        .find(|p| p["source"]["role"] == "hub")?;
    let family = hub["metrics"]
        .as_array()?
        .iter()
        .find(|f| f["name"] == name || f["name"] == format!("{name}_total"))?;
    family["samples"][0]["value"].as_u64()
}

/// `interstate run CHART --id ID --state-dir STATE --client` on the test's bus.
fn start_durable(bus: &mut Bus, chart: &str, id: &str, state: &str, cycle: u64) -> P {
    let args = [
        "run",
        chart,
        "--id",
        id,
        "--state-dir",
        state,
        "--durability",
        if cycle % 2 == 0 {
            "fsync"
        } else {
            "group:16:2"
        },
        "--client",
    ];
    let cmd = bus.command(&support::interstate_bin(), &args);
    bus.spawn(&format!("{id} (cycle {cycle})"), cmd)
}

/// Runs the test's node until `id` is registered by process `p`.
fn wait_registered(
    bus: &mut Bus,
    node: &mut Node,
    id: &str,
    p: P,
    on_turn: &mut dyn FnMut(&mut Node),
) {
    let pid = bus.pid(p);
    let end = Instant::now() + STEP_LIMIT;
    while node.registry().pid_of(id) != Some(pid) {
        assert!(Instant::now() < end, "{id} not registered{}", bus.dump());
        node.run_once(Some(Duration::from_millis(2))).unwrap();
        on_turn(node);
    }
}

/// The durable receiver `counter` is SIGKILLed mid-stream, with messages in its ring read
/// and not yet acknowledged, and started again within the hub's hold: the hub closes the
/// pair with its link and holds its id; the sender sends again, through the hub, what the
/// ring held unacknowledged, and the restarted machine (its filter restored from its journal)
/// drops what it took before. Every event once, in order, none reported failed.
#[test]
fn a_durable_receiver_killed_mid_stream_over_a_ring_takes_every_event_once() {
    let mut bus = Bus::on("ddr", "shm");
    let _hub = bus.start_hub();
    let chart = bus.write("counter.json", COUNTER);
    let state = bus.path("state");
    let mut node = test_node(&bus);
    let (mut sent, mut failed) = (0u64, 0u64);
    let count_failures = |node: &mut Node, failed: &mut u64| {
        while let Some(m) = node.recv_port() {
            assert_eq!(m.event, DELIVERY_ERROR_EVENT);
            *failed += 1;
        }
    };
    for cycle in 0..=CYCLES {
        let p = start_durable(&mut bus, &chart, "counter", &state, cycle);
        wait_registered(&mut bus, &mut node, "counter", p, &mut |n| {
            count_failures(n, &mut failed)
        });
        // A stream, 64 at most unacknowledged; once this process's pair is open, killed a
        // while later (a number of sends on), with messages in the ring.
        let mut kill_at = None;
        let mut asked_at = u64::MAX;
        let end = Instant::now() + STEP_LIMIT * 3;
        loop {
            assert!(Instant::now() < end, "cycle {cycle}: stuck{}", bus.dump());
            if node.unacknowledged() < 64 {
                let payload = format!("{{\"n\":{}}}", sent + 1);
                if node
                    .send_from_port("src", "counter", "INC", payload.as_bytes())
                    .is_ok()
                {
                    sent += 1;
                }
            }
            node.run_once(Some(Duration::from_millis(1))).unwrap();
            count_failures(&mut node, &mut failed);
            if kill_at.is_none() && sent % 50 == 0 && asked_at != sent {
                asked_at = sent;
                let opened = hub_counter(&mut bus, "interstate_hub_direct_pairs_opened");
                if opened.is_some_and(|n| n > cycle) {
                    kill_at = Some(sent + 100 + 37 * cycle);
                }
            }
            if cycle < CYCLES && kill_at.is_some_and(|k| sent >= k) {
                bus.kill(p);
                break;
            }
            if cycle == CYCLES && kill_at.is_some() {
                break;
            }
        }
        eprintln!(
            "cycle {cycle}: {sent} sent, {} unacknowledged at the kill",
            node.unacknowledged()
        );
    }
    let end = Instant::now() + STEP_LIMIT * 2;
    while node.unacknowledged() > 0 {
        assert!(Instant::now() < end, "never acknowledged{}", bus.dump());
        node.run_once(Some(Duration::from_millis(2))).unwrap();
        count_failures(&mut node, &mut failed);
    }
    let (st, out, err) = bus.run(&["status", "counter", "--json"]);
    assert!(st.success(), "status failed: {err}{}", bus.dump());
    let s: Value = serde_json::from_str(out.trim()).unwrap();
    let opened = hub_counter(&mut bus, "interstate_hub_direct_pairs_opened");
    eprintln!("durable receiver over rings: {sent} sent, pairs opened {opened:?}, status {s}");
    assert_eq!(failed, 0, "no event is reported failed across the kills");
    assert_eq!(s["context"]["last"].as_u64(), Some(sent), "{s}");
    assert_eq!(s["context"]["count"].as_u64(), Some(sent), "each once: {s}");
    assert!(opened.is_some_and(|n| n > CYCLES), "a pair in every cycle");
}

/// The durable sender `relay` forwards a stream to the test's port through their ring pair
/// and is SIGKILLed mid-stream, with INCs written to the ring and not acknowledged (the
/// test's process reads its port only now and then): its restarted process sends them
/// again, with their numbers, through the hub and then its new pair, and the test's
/// duplicate filter drops those it took before. Every INC once, in order, none failed.
#[test]
fn a_durable_sender_killed_mid_stream_over_a_ring_has_every_message_taken_once() {
    let mut bus = Bus::on("dds", "shm");
    let _hub = bus.start_hub();
    let chart = bus.write("relay.json", RELAY);
    let state = bus.path("state");
    let mut node = test_node(&bus);
    let (mut sent, mut failed) = (0u64, 0u64);
    let mut got = Vec::new();
    let mut turns = 0u64;
    let mut p = None;
    for cycle in 0..=CYCLES {
        let relay = start_durable(&mut bus, &chart, "relay", &state, cycle);
        p = Some(relay);
        wait_registered(&mut bus, &mut node, "relay", relay, &mut |n| {
            drain(n, &mut got, &mut failed)
        });
        if cycle == CYCLES {
            break;
        }
        let mut kill_at = None;
        let mut asked_at = u64::MAX;
        let end = Instant::now() + STEP_LIMIT * 3;
        loop {
            assert!(Instant::now() < end, "cycle {cycle}: stuck{}", bus.dump());
            if node.unacknowledged() < 32 {
                let payload = format!("{{\"n\":{}}}", sent + 1);
                if node
                    .send_from_port("src", "relay", "TICK", payload.as_bytes())
                    .is_ok()
                {
                    sent += 1;
                }
            }
            node.run_once(Some(Duration::from_millis(1))).unwrap();
            turns += 1;
            // Not read every turn: the relay's INCs wait unacknowledged meanwhile.
            if turns % 3 == 0 {
                drain(&mut node, &mut got, &mut failed);
            }
            if kill_at.is_none() && sent % 50 == 0 && asked_at != sent {
                asked_at = sent;
                let opened = hub_counter(&mut bus, "interstate_hub_direct_pairs_opened");
                if opened.is_some_and(|n| n > cycle) {
                    kill_at = Some(sent + 100 + 41 * cycle);
                }
            }
            if kill_at.is_some_and(|k| sent >= k) {
                bus.kill(relay);
                break;
            }
        }
        eprintln!("cycle {cycle}: {sent} TICKs sent, {} INCs taken", got.len());
    }
    support::relay::finish(&mut bus, &mut node, &mut got, &mut failed, sent);
    let opened = hub_counter(&mut bus, "interstate_hub_direct_pairs_opened");
    eprintln!("durable sender over rings: {sent} messages, pairs opened {opened:?}");
    assert!(opened.is_some_and(|n| n >= CYCLES), "a pair in every cycle");
    if let Some(p) = p {
        bus.kill(p);
    }
}

//! Steady-state message delivery between two nodes (two event loops, a Unix socket between
//! them, statecharts on both ends) allocates nothing: a counting global allocator proves it.
//! The direct sends once more over shared memory (frames staged straight into the ring and
//! decoded in the lent read buffer, the event loop's fast path).
//! Each round trip is a send, a reply to it (`ctx.reply` of a plain event: a send to its
//! sender), a request (`ctx.request`, with its entry in the pending table) and its reply
//! (correlated, matched and settled): the hot paths of sends, replies and requests. Twice:
//! with direct sends, then with the pings and pongs published (the pings to a topic two
//! machines of the other node subscribe to, the pongs to one the pinger subscribes to): the
//! fan-out in the hub's process and in a client's, and the receivers' topic split.
//!
//! Once more over shared memory with the pinger and the ponger both clients of a third node
//! that only serves the bus: they get a direct ring pair of their own, and the steady state
//! over the rings (messages and acknowledgements written to and read from the pair, on both
//! sides) allocates nothing either.
//!
//! One test in this file only: the allocator counts every thread while armed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use interstate::bus::{add_json_machine, Node, NodeConfig, Role, Transport};
use interstate::Behaviors;

#[path = "support/counting_alloc_process.rs"]
mod counting_alloc_process;
use counting_alloc_process::{ALLOCATIONS, ARMED};

const PINGER: &str = r#"{"id":"pinger","initial":"on","states":{"on":{"on":{"ANSWER":{"actions":"ping"},"PONG":{"actions":"ask"},"START":{"actions":"ping"},"STOP":"off"}},"off":{"type":"final"}}}"#;
const PONGER: &str = r#"{"id":"ponger","initial":"on","states":{"on":{"on":{"PING":{"actions":"pong"},"ASK":{"actions":"answer"},"STOP":"off"}},"off":{"type":"final"}}}"#;

/// A second subscriber of the pings, beside the ponger.
const LISTENER: &str = r#"{"id":"listener","subscribe":"noalloc/+","initial":"on","states":{"on":{"on":{"PING":{"actions":"heard"},"STOP":"off"}},"off":{"type":"final"}}}"#;

fn config(dir: &std::path::Path, role: Role, transport: Transport) -> NodeConfig {
    let mut c = NodeConfig::new("noalloc");
    c.dir = dir.to_path_buf();
    c.role = role;
    c.transport = transport;
    c
}

#[test]
fn steady_state_delivery_between_two_nodes_allocates_nothing() {
    steady_state(false, Transport::UnixSocket);
    steady_state(true, Transport::UnixSocket);
    steady_state(false, Transport::SHARED_MEMORY);
    steady_state_over(false, Transport::SHARED_MEMORY, true);
}

fn steady_state(published: bool, transport: Transport) {
    steady_state_over(published, transport, false);
}

/// Runs the ping-pong, the pings direct or `published`, over `transport`, and checks that
/// its steady state allocates nothing. With `pair`, the pinger is a client too, of a node
/// that only serves the bus: over shared memory the two clients pair up, and the ping-pong
/// runs through their direct rings.
fn steady_state_over(published: bool, transport: Transport, pair: bool) {
    let shm = matches!(transport, Transport::SharedMemory { .. });
    let dir = std::env::temp_dir().join(format!(
        "interstate-noalloc-{}-{published}-{shm}-{pair}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let round_trips = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let hub_ready = Arc::new(AtomicBool::new(false));

    // With `pair`, a node that only serves the bus; it reports the hub's count of pairs
    // opened and of messages it routed.
    let bus_only = pair.then(|| {
        let (d0, stop0, ready0) = (dir.clone(), stop.clone(), hub_ready.clone());
        let t = std::thread::spawn(move || {
            let mut node = Node::new(config(&d0, Role::Hub, transport)).expect("serve the bus");
            node.set_logger(|_| {});
            ready0.store(true, Ordering::SeqCst);
            while !stop0.load(Ordering::Relaxed) {
                node.run_once(Some(Duration::from_millis(10))).unwrap();
            }
            let m = node.metrics();
            let counter = |name: &str| m.value(name, &[]).unwrap_or(0);
            (
                counter("interstate_hub_direct_pairs_opened"),
                counter("interstate_hub_messages_routed"),
            )
        });
        while !hub_ready.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
        hub_ready.store(false, Ordering::SeqCst);
        t
    });

    // The pinger's process serves the bus (unless a node of its own does: `pair`).
    let pinger_role = if pair { Role::Client } else { Role::Hub };
    let (d1, rt1, stop1, ready1) = (
        dir.clone(),
        round_trips.clone(),
        stop.clone(),
        hub_ready.clone(),
    );
    let hub = std::thread::spawn(move || {
        let mut node = Node::new(config(&d1, pinger_role, transport)).expect("serve the bus");
        node.set_logger(|_| {});
        let behaviors = Behaviors::new()
            .action("ping", move |cx| {
                rt1.fetch_add(1, Ordering::Relaxed);
                let payload = cx.payload();
                let payload: &[u8] = if payload.is_empty() {
                    b"0123456789abcdef"
                } else {
                    payload
                };
                if published {
                    let _ = cx.publish("noalloc/ping", "PING", payload);
                } else {
                    let _ = cx.send("b", "PING", payload);
                }
            })
            .action("ask", |cx| {
                let payload = cx.payload();
                cx.request(
                    "b",
                    "ASK",
                    payload,
                    interstate::Duration::from_millis(30_000),
                )
                .expect("room for the request");
            });
        add_json_machine(&mut node, "a", PINGER, behaviors).expect("add a");
        if published {
            node.subscribe("a", "noalloc/pong").expect("subscribe a");
        }
        ready1.store(true, Ordering::SeqCst);
        node.run_until(Duration::from_secs(10), |n| {
            n.registry().contains("b") && (!published || n.subscribers("noalloc/ping").len() == 2)
        })
        .unwrap();
        node.send_local("a", "START", &[]).unwrap();
        while !stop1.load(Ordering::Relaxed) {
            node.run_once(Some(Duration::from_millis(10))).unwrap();
        }
        node.stats()
    });
    while !hub_ready.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let (d2, stop2) = (dir.clone(), stop.clone());
    let client = std::thread::spawn(move || {
        let mut node = Node::new(config(&d2, Role::Client, transport)).expect("join the bus");
        node.set_logger(|_| {});
        let behaviors = Behaviors::new()
            .action("pong", move |cx| {
                let payload = cx.payload();
                if published {
                    let _ = cx.publish("noalloc/pong", "PONG", payload);
                } else {
                    cx.reply("PONG", payload).expect("a sender to answer");
                }
            })
            .action("answer", |cx| {
                let payload = cx.payload();
                cx.reply("ANSWER", payload).expect("a sender to answer");
            });
        add_json_machine(&mut node, "b", PONGER, behaviors).expect("add b");
        if published {
            node.subscribe("b", "noalloc/ping").expect("subscribe b");
            let heard = Behaviors::new().action("heard", |_| {});
            add_json_machine(&mut node, "listener", LISTENER, heard).expect("add the listener");
        }
        while !stop2.load(Ordering::Relaxed) {
            node.run_once(Some(Duration::from_millis(10))).unwrap();
        }
        node.stats()
    });

    let wait_for = |n: u64| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while round_trips.load(Ordering::Relaxed) < n {
            assert!(
                Instant::now() < deadline,
                "the ping-pong stalled at {}",
                round_trips.load(Ordering::Relaxed)
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    // Warm-up: connections, registrations, the first entries of every map.
    wait_for(2_000);
    let start = round_trips.load(Ordering::Relaxed);
    ARMED.store(true, Ordering::SeqCst);
    wait_for(start + 20_000);
    ARMED.store(false, Ordering::SeqCst);
    let measured = round_trips.load(Ordering::Relaxed) - start;
    let allocations = ALLOCATIONS.load(Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    let hub_stats = hub.join().unwrap();
    let client_stats = client.join().unwrap();
    let bus_only = bus_only.map(|t| t.join().unwrap());
    let _ = std::fs::remove_dir_all(&dir);

    assert!(measured >= 20_000, "{measured} round trips measured");
    assert!(
        // Two messages each way per round trip (a send or publication and a request, and
        // their answers), for every round trip measured.
        hub_stats.received >= 2 * measured && client_stats.received >= 2 * measured,
        "{hub_stats:?} {client_stats:?}"
    );
    if published {
        // Each ping reached both subscribers (and the request came beside them).
        assert!(client_stats.received >= 3 * measured, "{client_stats:?}");
    }
    assert_eq!(hub_stats.late_replies, 0, "{hub_stats:?}");
    // When the client stops first, the one message in flight (to each subscriber) is
    // reported back as undeliverable: correct, and the only failure allowed.
    assert!(
        hub_stats.delivery_failures + client_stats.delivery_failures <= 2,
        "{hub_stats:?} {client_stats:?}"
    );
    if let Some((opened, routed)) = bus_only {
        // The two clients paired up, and the hub routed only what crossed it before.
        assert!(opened >= 1, "no direct pair opened");
        assert!(
            routed < measured,
            "the hub routed {routed} messages of {measured} round trips: not over the rings"
        );
    }
    assert_eq!(
        allocations, 0,
        "{allocations} allocations during {measured} round trips (send, reply, request, reply) \
         between two nodes (pings and pongs published: {published}, over a direct ring \
         pair: {pair})"
    );
    ALLOCATIONS.store(0, Ordering::SeqCst);
}

//! Direct peer rings with real processes: two clients of a hub in shared memory get a ring
//! pair of their own (the default over shared memory), and the guarantees of
//! `docs/guarantees.md` hold as through the hub. The same rules run on the simulated bus in
//! `no_std_core/tests/sim_direct.rs`; the whole bus suite (`cli/tests/bus.rs`) also runs on
//! shared memory, where its clients pair up.
//!
//! Each test checks, from the hub's counters (`interstate stats --json`), that a pair was
//! opened while the stream ran, so that what it asserts was carried by a ring. Waits poll
//! with a deadline; nothing asserts on timing.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

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

/// Polls the hub's counter `name` until `pred` holds; returns it.
fn wait_counter(bus: &mut Bus, name: &str, pred: impl Fn(u64) -> bool) -> u64 {
    let end = Instant::now() + STEP_LIMIT;
    loop {
        let v = hub_counter(bus, name);
        if let Some(v) = v.filter(|v| pred(*v)) {
            return v;
        }
        assert!(
            Instant::now() < end,
            "the hub's {name} stayed at {v:?}{}",
            bus.dump()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A source streams to a sink, both clients in shared memory: they pair up, and every
/// message arrives once, in order, while the hub routes only the first few.
#[test]
fn two_shared_memory_clients_stream_through_their_own_ring() {
    const N: u64 = 5_000;
    let mut bus = Bus::on("pair", "shm");
    bus.start_hub();
    let sink = bus.start_sink("sink1", &["--expect", "5000", "--timeout-ms", "40000"]);
    let src = bus.probe(
        "source src1",
        &[
            "source",
            "src1",
            "sink1",
            "5000",
            "--rate",
            "5000",
            "--timeout-ms",
            "30000",
        ],
    );
    bus.wait_exit(src, Duration::from_secs(40));
    bus.wait_exit(sink, Duration::from_secs(40));
    let fin = last_json(&bus.out(src), "sent").expect("the source's final line");
    let tally = last_json(&bus.out(sink), "distinct").expect("the sink's tally");
    let context = format!("source: {fin}\nsink: {tally}{}", bus.dump());
    assert_eq!((u(&fin, "sent"), u(&fin, "failed")), (N, 0), "{context}");
    assert_eq!(u(&tally, "distinct"), N, "{context}");
    assert_eq!(u(&tally, "duplicates"), 0, "{context}");
    assert_eq!(u(&tally, "out_of_order"), 0, "{context}");
    let opened = hub_counter(&mut bus, "interstate_hub_direct_pairs_opened");
    assert!(
        opened >= Some(1),
        "no pair opened: {opened:?}{}",
        bus.dump()
    );
    let routed = hub_counter(&mut bus, "interstate_hub_messages_routed").unwrap_or(u64::MAX);
    assert!(
        routed < N / 2,
        "the hub routed {routed} of {N}: the ring carried too few{}",
        bus.dump()
    );
}

/// The receiving peer is SIGKILLed while its sender streams to it through their ring: the
/// sender hears a failure for everything not acknowledged, and everything sent after.
#[test]
fn a_peer_sigkilled_mid_stream_over_a_ring_has_its_messages_reported() {
    let mut bus = Bus::on("pairkill", "shm");
    bus.start_hub();
    let victim = bus.start_sink("victim2", &["--timeout-ms", "60000"]);
    let n = 2_000u64;
    let src = bus.probe(
        "source src2",
        &[
            "source",
            "src2",
            "victim2",
            &n.to_string(),
            "--rate",
            "500",
            "--progress-every",
            "50",
            "--linger-ms",
            "1000",
            "--timeout-ms",
            "30000",
        ],
    );
    bus.wait_json(src, "source progress", STEP_LIMIT, |v| {
        v["progress"].as_u64().is_some_and(|p| p >= 50)
    });
    wait_counter(&mut bus, "interstate_hub_direct_pairs_opened", |v| v >= 1);
    bus.kill(victim);
    bus.wait_ps("victim2 gone", |l| ps_pid(l, "victim2").is_none());
    bus.wait_exit(src, Duration::from_secs(40));
    let fin = last_json(&bus.out(src), "sent").expect("the source's final line");
    assert_eq!(u(&fin, "sent"), n, "{fin}");
    assert_eq!(u(&fin, "errors"), 0, "{fin}");
    let failed = u(&fin, "failed");
    assert!(
        failed >= 1 && failed <= n,
        "messages sent after the peer died must come back as failures: {fin}{}",
        bus.dump()
    );
    for (reason, _) in fin["reasons"].as_object().expect("reasons") {
        assert!(
            ["unknown-target", "target-gone"].contains(&reason.as_str()),
            "unexpected failure reason {reason}: {fin}"
        );
    }
    wait_counter(&mut bus, "interstate_hub_direct_pairs_closed", |v| v >= 1);
}

/// The hub is SIGKILLed while a pair streams, and restarted: both clients drop their ring
/// with the hub, send again what was not acknowledged, and pair up on the new hub. Every
/// message arrives once, in order.
#[test]
fn a_hub_restart_while_a_pair_is_busy_loses_nothing() {
    const N: u64 = 20_000;
    let mut bus = Bus::on("pairrestart", "shm");
    let hub = bus.start_hub();
    let sink = bus.start_sink(
        "sink3",
        &[
            "--expect",
            "20000",
            "--linger-ms",
            "300",
            "--timeout-ms",
            "60000",
        ],
    );
    let src = bus.probe(
        "source src3",
        &[
            "source",
            "src3",
            "sink3",
            "20000",
            "--rate",
            "5000",
            "--progress-every",
            "500",
            "--timeout-ms",
            "40000",
        ],
    );
    bus.wait_json(src, "source progress", STEP_LIMIT, |v| {
        v["progress"].as_u64().is_some_and(|p| p >= 2000)
    });
    wait_counter(&mut bus, "interstate_hub_direct_pairs_opened", |v| v >= 1);
    bus.kill(hub);
    let mid_stream = last_json(&bus.out(src), "sending_done").is_none();
    bus.start_hub();
    if mid_stream {
        // They pair up again on the new hub while the stream goes on.
        wait_counter(&mut bus, "interstate_hub_direct_pairs_opened", |v| v >= 1);
    }
    bus.wait_exit(src, Duration::from_secs(60));
    bus.term(sink);
    bus.wait_exit(sink, STEP_LIMIT);
    let fin = last_json(&bus.out(src), "sent").expect("the source's final line");
    let tally = last_json(&bus.out(sink), "distinct").expect("the sink's tally");
    let context = format!(
        "mid-stream: {mid_stream}\nsource: {fin}\nsink: {tally}{}",
        bus.dump()
    );
    assert_eq!((u(&fin, "sent"), u(&fin, "errors")), (N, 0), "{context}");
    assert_eq!(u(&tally, "duplicates"), 0, "{context}");
    assert_eq!(u(&tally, "out_of_order"), 0, "{context}");
    assert_eq!(u(&tally, "distinct"), N, "{context}");
    assert_eq!(u(&fin, "failed"), 0, "{context}");
}

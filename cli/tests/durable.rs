//! Durable machines across crashes, with real processes: `interstate run --state-dir` is
//! killed at random points under a stream of events (SIGKILL from outside, and aborts inside
//! the journal: half a record written, a record written and not synced, a compacted file
//! synced and not yet renamed over the old one) and started again, many times, under each
//! durability policy. After each restart its state holds every event acknowledged before
//! the crash, each once, and nothing that was never sent; a torn record is reported in its
//! status. The sender is a port in this test process, which numbers its events; it retries
//! nothing itself.
//!
//! `DURABLE_CYCLES=N` runs the first test through N crashes instead of 12.
//!
//! The machine is a client of a hub that lives on: the hub holds its durable id across each
//! crash, and the sender sends the restarted process what was not acknowledged. What it
//! measures: events reported failed to the sender (the soak's `delivered_and_reported_failed`,
//! and any lost): none.

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

/// A small deterministic generator (the seed is printed: a failing run can be repeated).
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn sender(bus: &Bus) -> Node {
    sender_as(bus, Role::Client)
}

/// The test's sender: a port `src` in a node of `role` (a client, or the hub itself).
fn sender_as(bus: &Bus, role: Role) -> Node {
    let mut c = NodeConfig::new(&bus.name);
    c.dir = bus.dir.clone();
    c.role = role;
    c.transport = Transport::UnixSocket;
    c.backoff = (
        interstate_core::Duration::from_millis(10),
        interstate_core::Duration::from_millis(100),
    );
    let mut node = Node::new(c).expect("the sender joins the bus");
    node.set_logger(|_| {});
    node.open_port("src").unwrap();
    node
}

fn status(bus: &mut Bus) -> Value {
    let (st, out, err) = bus.run(&["status", "counter", "--json"]);
    assert!(st.success(), "status failed: {err}{}", bus.dump());
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn start(bus: &mut Bus, chart: &str, state: &str, policy: &str, crash: Option<String>) -> P {
    start_as(bus, chart, state, policy, crash, true)
}

/// `client`: join the test's hub; otherwise serve the bus (the machine in the hub's process).
fn start_as(
    bus: &mut Bus,
    chart: &str,
    state: &str,
    policy: &str,
    crash: Option<String>,
    client: bool,
) -> P {
    let mut args = vec![
        "run",
        chart,
        "--id",
        "counter",
        "--state-dir",
        state,
        "--durability",
        policy,
    ];
    if client {
        args.push("--client");
    }
    let mut cmd = bus.command(&support::interstate_bin(), &args);
    if let Some(c) = &crash {
        cmd.env("INTERSTATE_JOURNAL_CRASH", c);
    }
    // Small files: compactions (and their crash points) come every few dozen steps.
    cmd.env("INTERSTATE_JOURNAL_COMPACT", "4096");
    let p = bus.spawn(&format!("counter ({policy}, crash {crash:?})"), cmd);
    bus.wait_line(p, true, "the machine's join line", STEP_LIMIT, |l| {
        l.contains("joined bus")
    });
    p
}

#[test]
fn a_durable_machine_killed_at_random_points_keeps_every_acknowledged_event_once() {
    let mut bus = Bus::new("durable-kill");
    let _hub = bus.start_hub();
    let chart = bus.write("counter.json", COUNTER);
    let state = bus.path("state");
    let seed = 0x5EED_D00D_u64;
    let mut rng = Rng(seed);
    let mut node = sender(&bus);
    // `DURABLE_CYCLES=N` for a longer run (the default keeps the suite short).
    let cycles: usize = std::env::var("DURABLE_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let policies = ["fsync", "group:16:2", "none"];
    // The number of the last event sent (events are numbered from 1, in order).
    let mut sent = 0u64;
    // Events reported failed to the sender (the soak's `delivered_and_reported_failed`
    // and lost ones alike): the hub holds the durable id across each crash, so none.
    let mut failed = 0u64;
    let mut torn_before = false;
    let mut p = None;
    for cycle in 0..=cycles {
        let policy = policies[cycle % policies.len()];
        let crash = match cycle % 4 {
            _ if cycle == cycles => None,
            1 => Some(format!("torn:{}", 1 + rng.below(150))),
            2 => Some(format!("before-sync:{}", 1 + rng.below(150))),
            3 => Some("before-rename:1".to_string()),
            _ => None,
        };
        let kill_after = 20 + rng.below(300);
        // What the sender has had acknowledged before the crash (in order: what is not
        // outstanding is acknowledged).
        let acked_before = sent - node.unacknowledged() as u64;
        let restarted = start(&mut bus, &chart, &state, policy, crash.clone());
        p = Some(restarted);
        // The restarted machine's state: every event acknowledged before, each once; the
        // sender sends it again what was not (the hub held its id meanwhile).
        let s = status(&mut bus);
        let (count, last) = (
            s["context"]["count"].as_u64().unwrap(),
            s["context"]["last"].as_u64().unwrap(),
        );
        assert_eq!(count, last, "each event taken once, in order: {s}");
        assert!(
            last >= acked_before,
            "cycle {cycle} (seed {seed:#x}): events up to {acked_before} were acknowledged, \
             the restored state has {last}: {s}"
        );
        if cycle > 0 {
            assert!(s["journal"]["restored_from"].is_u64(), "{s}");
        }
        if torn_before {
            let dropped = s["journal"]["dropped"]
                .as_str()
                .unwrap_or_else(|| panic!("a torn record is reported in the status: {s}"));
            assert!(dropped.contains("dropped"), "{dropped}");
        }
        if cycle == cycles {
            break;
        }
        // A stream of events, 32 at most unacknowledged, until the process dies.
        let first_acked = acked_before;
        let mut killed = false;
        let end = Instant::now() + STEP_LIMIT * 3;
        loop {
            assert!(
                Instant::now() < end,
                "cycle {cycle} never ended{}",
                bus.dump()
            );
            let alive = bus.try_status(restarted).is_none();
            if !alive {
                break;
            }
            if node.unacknowledged() < 32 && node.registry().contains("counter") {
                let payload = format!("{{\"n\":{}}}", sent + 1);
                if node
                    .send_from_port("src", "counter", "INC", payload.as_bytes())
                    .is_ok()
                {
                    sent += 1;
                }
            }
            node.run_once(Some(Duration::from_millis(1))).unwrap();
            while let Some(m) = node.recv_port() {
                assert_eq!(m.event, DELIVERY_ERROR_EVENT);
                failed += 1;
            }
            let acked = sent - node.unacknowledged() as u64;
            if !killed && acked >= first_acked + kill_after && crash.is_none() {
                bus.kill(restarted);
                killed = true;
            }
            if !killed && sent > first_acked + 3000 {
                // A crash point not reached: end it from outside.
                bus.kill(restarted);
                killed = true;
            }
        }
        eprintln!(
            "cycle {cycle}: {policy}, crash point {crash:?}, killed from outside: {killed}, \
             sent up to {sent}, unacknowledged at the crash {}",
            node.unacknowledged()
        );
        // Died at its crash point (not killed from outside): half a record was left.
        torn_before = crash.as_deref().is_some_and(|c| c.starts_with("torn")) && !killed;
    }
    // The last process takes what was outstanding: everything, once, none failed.
    let end = Instant::now() + STEP_LIMIT * 2;
    while node.unacknowledged() > 0 {
        assert!(Instant::now() < end, "never acknowledged{}", bus.dump());
        node.run_once(Some(Duration::from_millis(2))).unwrap();
        while let Some(m) = node.recv_port() {
            assert_eq!(m.event, DELIVERY_ERROR_EVENT);
            failed += 1;
        }
    }
    let s = status(&mut bus);
    let last = s["context"]["last"].as_u64().unwrap();
    assert_eq!(s["context"]["count"].as_u64().unwrap(), last, "{s}");
    eprintln!(
        "durable kill test: {cycles} crashes, {last} events taken once each of {sent} sent; \
         reported failed to their sender (delivered_and_reported_failed and lost): {failed}"
    );
    assert_eq!(failed, 0, "no event is reported failed across the crashes");
    assert_eq!(last, sent, "every event sent was taken, once: {s}");
    if let Some(p) = p {
        bus.kill(p);
    }
}

/// The durable machine serves the bus itself: when its process dies the hub dies with it,
/// and its senders keep what it had not acknowledged and send it again to the restarted
/// process (which serves the bus again). The restored machine knows from its journal which
/// of those it took before the crash: they are dropped as duplicates and acknowledged, so
/// every event is taken exactly once and no sender is told of a failure.
#[test]
fn a_restarted_durable_machine_drops_retransmissions_of_what_it_took_and_acknowledges_them() {
    let mut bus = Bus::new("durable-resend");
    let chart = bus.write("counter.json", COUNTER);
    let state = bus.path("state");
    let mut rng = Rng(0xD00D_5EED);
    let mut p = start_as(&mut bus, &chart, &state, "fsync", None, false);
    let mut node = sender(&bus);
    let mut sent = 0u64;
    const CYCLES: usize = 6;
    for cycle in 0..=CYCLES {
        let end = Instant::now() + STEP_LIMIT * 2;
        let kill_at = sent + 50 + rng.below(200);
        // A stream of events, 64 at most unacknowledged; the process killed mid-stream.
        while sent < kill_at {
            assert!(Instant::now() < end, "cycle {cycle}: stuck{}", bus.dump());
            if node.unacknowledged() < 64 && node.registry().contains("counter") {
                let payload = format!("{{\"n\":{}}}", sent + 1);
                if node
                    .send_from_port("src", "counter", "INC", payload.as_bytes())
                    .is_ok()
                {
                    sent += 1;
                }
            }
            node.run_once(Some(Duration::from_millis(1))).unwrap();
            if let Some(m) = node.recv_port() {
                panic!(
                    "cycle {cycle}: a failure report: {} {:?}",
                    m.event,
                    String::from_utf8_lossy(&m.payload)
                );
            }
        }
        if cycle == CYCLES {
            break;
        }
        let caught = node.unacknowledged();
        bus.kill(p);
        p = start_as(&mut bus, &chart, &state, "fsync", None, false);
        // Everything, the caught ones included, is acknowledged by the restarted process.
        while node.unacknowledged() > 0 {
            assert!(
                Instant::now() < end,
                "cycle {cycle}: never acknowledged{}",
                bus.dump()
            );
            node.run_once(Some(Duration::from_millis(2))).unwrap();
            if let Some(m) = node.recv_port() {
                panic!(
                    "cycle {cycle}: a failure report: {} {:?}",
                    m.event,
                    String::from_utf8_lossy(&m.payload)
                );
            }
        }
        let s = status(&mut bus);
        assert_eq!(
            s["context"]["last"].as_u64(),
            Some(sent),
            "cycle {cycle}: {s}"
        );
        assert_eq!(
            s["context"]["count"].as_u64(),
            Some(sent),
            "cycle {cycle}: each taken once ({caught} were unacknowledged at the kill): {s}"
        );
    }
    while node.unacknowledged() > 0 {
        node.run_once(Some(Duration::from_millis(2))).unwrap();
    }
    let s = status(&mut bus);
    assert_eq!(s["context"]["count"].as_u64(), Some(sent), "{s}");
    let (_, plain, _) = bus.run(&["status", "counter"]);
    assert!(plain.contains("durable, restored from record"), "{plain}");
    eprintln!("durable resend test: {CYCLES} kills, {sent} events, each taken once, none failed");
    bus.kill(p);
}

/// Past the hub's hold (`INTERSTATE_DURABLE_HOLD_MS`), a durable machine that did not come
/// back leaves the registry as any other: what its sender had outstanding to it fails as
/// `target-gone`, and nothing is left waiting. Within the hold nothing fails.
#[test]
fn a_durable_machine_not_back_within_the_hold_fails_what_it_never_acknowledged() {
    let mut bus = Bus::new("durable-hold");
    let mut cmd = bus.command(&support::interstate_bin(), &["hub"]);
    cmd.env("INTERSTATE_DURABLE_HOLD_MS", "1500");
    let hub = bus.spawn("hub (hold 1.5 s)", cmd);
    bus.wait_line(hub, true, "the hub's start line", STEP_LIMIT, |l| {
        l.contains("hub serving bus")
    });
    let chart = bus.write("counter.json", COUNTER);
    let state = bus.path("state");
    let p = start(&mut bus, &chart, &state, "fsync", None);
    let mut node = sender(&bus);
    let end = Instant::now() + STEP_LIMIT;
    while !node.registry().contains("counter") {
        assert!(Instant::now() < end, "the sender never saw the machine");
        node.run_once(Some(Duration::from_millis(5))).unwrap();
    }
    bus.kill(p);
    // Sent while it is away: held, not failed.
    let mut sent = 0;
    while sent < 10 {
        if node
            .send_from_port("src", "counter", "INC", b"{\"n\":0}")
            .is_ok()
        {
            sent += 1;
        }
        node.run_once(Some(Duration::from_millis(1))).unwrap();
    }
    let held_until = Instant::now() + Duration::from_millis(1_000);
    while Instant::now() < held_until {
        node.run_once(Some(Duration::from_millis(10))).unwrap();
        assert!(node.recv_port().is_none(), "a failure within the hold");
    }
    assert_eq!(node.unacknowledged(), 10);
    // Past it: each fails, as target-gone.
    let mut failed = 0;
    let end = Instant::now() + STEP_LIMIT;
    while failed < 10 {
        assert!(Instant::now() < end, "failed {failed} of 10{}", bus.dump());
        node.run_once(Some(Duration::from_millis(10))).unwrap();
        while let Some(m) = node.recv_port() {
            assert_eq!(m.event, DELIVERY_ERROR_EVENT);
            let text = String::from_utf8_lossy(&m.payload).into_owned();
            assert!(text.contains("target-gone"), "{text}");
            failed += 1;
        }
    }
    assert_eq!(node.unacknowledged(), 0);
    assert!(!node.registry().contains("counter"));
}

/// The sender is a port in the process serving the bus (the hub's own link): it too keeps
/// what a durable machine in another process had not acknowledged when that process died,
/// and routes it again, in order, before anything new, to the restarted process.
#[test]
fn a_sender_in_the_hubs_process_sends_a_restarted_durable_machine_what_it_had_not_acknowledged() {
    let mut bus = Bus::new("durable-hub-sender");
    let mut node = sender_as(&bus, Role::Hub);
    let chart = bus.write("counter.json", COUNTER);
    let state = bus.path("state");
    let mut rng = Rng(0x0DD_5EED);
    let mut sent = 0u64;
    let mut p = None;
    const KILLS: usize = 5;
    for cycle in 0..=KILLS {
        // Started without waiting for its join line: the hub it joins is this process,
        // served while it waits for the restarted process's registration.
        let mut cmd = bus.command(
            &support::interstate_bin(),
            &[
                "run",
                &chart,
                "--id",
                "counter",
                "--state-dir",
                &state,
                "--client",
            ],
        );
        cmd.env("INTERSTATE_JOURNAL_COMPACT", "4096");
        let restarted = bus.spawn(&format!("counter (cycle {cycle})"), cmd);
        let pid = bus.pid(restarted);
        let end = Instant::now() + STEP_LIMIT;
        while node.registry().pid_of("counter") != Some(pid) {
            assert!(
                Instant::now() < end,
                "cycle {cycle}: not registered{}",
                bus.dump()
            );
            node.run_once(Some(Duration::from_millis(2))).unwrap();
            if let Some(m) = node.recv_port() {
                panic!(
                    "cycle {cycle}: a failure report: {} {:?}",
                    m.event, m.payload
                );
            }
        }
        p = Some(restarted);
        if cycle == KILLS {
            break;
        }
        let kill_at = sent + 50 + rng.below(200);
        let end = Instant::now() + STEP_LIMIT * 2;
        while sent < kill_at {
            assert!(Instant::now() < end, "cycle {cycle}: stuck{}", bus.dump());
            if node.unacknowledged() < 32 && node.registry().contains("counter") {
                let payload = format!("{{\"n\":{}}}", sent + 1);
                if node
                    .send_from_port("src", "counter", "INC", payload.as_bytes())
                    .is_ok()
                {
                    sent += 1;
                }
            }
            node.run_once(Some(Duration::from_millis(1))).unwrap();
            if let Some(m) = node.recv_port() {
                panic!(
                    "cycle {cycle}: a failure report: {} {:?}",
                    m.event, m.payload
                );
            }
        }
        eprintln!(
            "cycle {cycle}: killed with {} unacknowledged",
            node.unacknowledged()
        );
        bus.kill(restarted);
    }
    let end = Instant::now() + STEP_LIMIT * 2;
    while node.unacknowledged() > 0 {
        assert!(Instant::now() < end, "never acknowledged{}", bus.dump());
        node.run_once(Some(Duration::from_millis(2))).unwrap();
        if let Some(m) = node.recv_port() {
            panic!("a failure report: {} {:?}", m.event, m.payload);
        }
    }
    // `status` asks the hub, which is this process: it is served meanwhile.
    let child = bus
        .command(&support::interstate_bin(), &["status", "counter", "--json"])
        .spawn()
        .expect("interstate status starts");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = loop {
        node.run_once(Some(Duration::from_millis(2))).unwrap();
        if let Ok(out) = rx.try_recv() {
            break out.expect("interstate status ran");
        }
    };
    assert!(out.status.success(), "{out:?}");
    let s: Value = serde_json::from_slice(&out.stdout).expect("status --json");
    assert_eq!(s["context"]["last"].as_u64(), Some(sent), "{s}");
    assert_eq!(s["context"]["count"].as_u64(), Some(sent), "each once: {s}");
    if let Some(p) = p {
        bus.kill(p);
    }
}

/// Forwards each TICK's data to the port `sink` as INC, and counts failures reported to it.
const RELAY: &str = r#"{"id":"relay","initial":"relaying","context":{"ticks":0,"failed":0},
  "states":{"relaying":{"on":{
    "TICK":{"actions":[{"type":"assign","assignment":{"ticks":{"$add":1}}},
      {"type":"sendTo","to":"sink","event":"INC","data":{"from":"event"}}]},
    "xstate.error.delivery":{"actions":{"type":"assign","assignment":{"failed":{"$add":1}}}}}}}}"#;

/// A durable *sender* killed repeatedly mid-stream: `relay` (`interstate run --state-dir
/// --client`, a client of a hub that lives on) forwards a stream of numbered events to a
/// port of this process. Its journal holds the messages it sent and had not had
/// acknowledged; its restarted process sends them again with their numbers, and this
/// process's duplicate filter, which carries a durable sender's numbers over to its new
/// process, drops those it took before. Every message the relay emitted is taken exactly
/// once, in order, and nothing is reported failed, to the relay or to its own sender.
#[test]
fn a_durable_sender_killed_repeatedly_mid_stream_has_every_message_taken_once() {
    let mut bus = Bus::new("durable-sender");
    let _hub = bus.start_hub();
    let chart = bus.write("relay.json", RELAY);
    let state = bus.path("state");
    let mut rng = Rng(0x5E4D_E125);
    let mut node = sender(&bus);
    node.open_port("sink").unwrap();
    let policies = ["fsync", "group:16:2", "none"];
    const CYCLES: usize = 9;
    let (mut sent, mut failed) = (0u64, 0u64);
    let mut got = Vec::new();
    // Unacknowledged sends the restarted relays put back, from their log lines.
    let mut resent = 0u64;
    let mut p = None;
    for cycle in 0..=CYCLES {
        let policy = policies[cycle % policies.len()];
        // Some crashes inside the journal: half a record written, a record not synced.
        let crash = match cycle % 3 {
            _ if cycle == CYCLES => None,
            1 => Some(format!("torn:{}", 20 + rng.below(100))),
            2 => Some(format!("before-sync:{}", 20 + rng.below(100))),
            _ => None,
        };
        let args = vec![
            "run",
            &chart,
            "--id",
            "relay",
            "--state-dir",
            &state,
            "--durability",
            policy,
            "--client",
        ];
        let mut cmd = bus.command(&support::interstate_bin(), &args);
        if let Some(c) = &crash {
            cmd.env("INTERSTATE_JOURNAL_CRASH", c);
        }
        cmd.env("INTERSTATE_JOURNAL_COMPACT", "4096");
        let restarted = bus.spawn(&format!("relay ({policy}, crash {crash:?})"), cmd);
        p = Some(restarted);
        if cycle > 0 {
            let line = bus.wait_line(restarted, true, "the restore line", STEP_LIMIT, |l| {
                l.contains("restored from its journal")
            });
            let n = line
                .split("; ")
                .nth(1)
                .and_then(|t| t.split(' ').next())
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("the restore line names its sends: {line}"));
            resent += n;
        }
        let pid = bus.pid(restarted);
        let end = Instant::now() + STEP_LIMIT;
        while node.registry().pid_of("relay") != Some(pid) {
            assert!(
                Instant::now() < end,
                "cycle {cycle}: not registered{}",
                bus.dump()
            );
            node.run_once(Some(Duration::from_millis(2))).unwrap();
            drain(&mut node, &mut got, &mut failed);
        }
        if cycle == CYCLES {
            break;
        }
        // A stream of TICKs, 32 at most unacknowledged; the relay killed mid-stream, while
        // INCs it sent wait for their acknowledgements.
        let kill_at = sent + 40 + rng.below(200);
        let end = Instant::now() + STEP_LIMIT * 3;
        let mut killed = false;
        loop {
            assert!(Instant::now() < end, "cycle {cycle}: stuck{}", bus.dump());
            if bus.try_status(restarted).is_some() {
                break; // died at its crash point
            }
            if sent >= kill_at || sent > 3000 {
                bus.kill(restarted);
                killed = true;
                break;
            }
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
            // Not read every turn: the relay's INCs wait unacknowledged meanwhile.
            if rng.below(4) == 0 {
                drain(&mut node, &mut got, &mut failed);
            }
        }
        eprintln!(
            "cycle {cycle}: {policy}, crash point {crash:?}, killed from outside: {killed}, \
             {sent} TICKs sent, {} INCs taken",
            got.len()
        );
    }
    // The last process forwards what is left: every TICK acknowledged, every INC taken.
    support::relay::finish(&mut bus, &mut node, &mut got, &mut failed, sent);
    assert!(resent > 0, "some INCs were unacknowledged at a crash");
    eprintln!(
        "durable sender test: {CYCLES} crashes, {sent} messages, each taken once, none failed; \
         {resent} sent again after a restart"
    );
    if let Some(p) = p {
        bus.kill(p);
    }
}

//! Failover of the auto role (docs/lifecycle.md, "Roles"; docs/guarantees.md, "Across a
//! failover"): when the process that serves the bus dies, exactly one surviving auto-role
//! process serves it, in place, and the others reconnect to it; nothing between the survivors
//! is lost silently. Two processes racing to serve never both serve.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::*;

const N: u64 = 3000;

/// The pid in the bus lock file (the process serving the bus).
fn lock_pid(bus: &Bus) -> Option<u32> {
    let text = std::fs::read_to_string(bus.path(&format!("{}.lock", bus.name))).ok()?;
    text.trim().parse().ok()
}

fn takeover_lines(bus: &Bus, p: P) -> Vec<String> {
    bus.err(p)
        .into_iter()
        .filter(|l| l.contains("after its hub (pid"))
        .collect()
}

/// Three auto-role processes: the first serves; a source streams to a sink; the serving
/// process is SIGKILLed mid-stream. `receiver_wins`: the sink reconnects first (so it takes
/// over, with its duplicate filter), else the source does (with its unacknowledged
/// messages). Every message is delivered exactly once or reported failed; one survivor
/// serves, the other is its client, and a fourth process joins it.
fn fail_over(test: &str, transport: &str, receiver_wins: bool) {
    let mut bus = Bus::on(test, transport);
    let first = bus.start_ready("first", &["sink", "first", "--auto"]);
    let ready = last_json(&bus.out(first), "ready").expect("the first's ready line");
    assert_eq!(
        ready["hub"],
        Value::Bool(true),
        "the first auto process serves"
    );
    assert_eq!(
        lock_pid(&bus),
        Some(bus.pid(first)),
        "it holds the bus lock"
    );

    let (sink_backoff, source_backoff) = if receiver_wins {
        ("20", "600")
    } else {
        ("600", "20")
    };
    // The sink reads nothing for its first 3 s: what arrives meanwhile is delivered to its
    // port but not acknowledged, so the source sends it again after the failover and only
    // the duplicate filter (carried over into the new hub when the sink wins) keeps it from
    // arriving twice.
    let sink = bus.start_ready(
        "sink",
        &[
            "sink",
            "b",
            "--auto",
            "--backoff-ms",
            sink_backoff,
            "--hold-ms",
            "3000",
        ],
    );
    let n = N.to_string();
    let source = bus.probe(
        "source",
        &[
            "source",
            "a",
            "b",
            &n,
            "--auto",
            "--backoff-ms",
            source_backoff,
            "--rate",
            "2000",
            "--progress-every",
            "250",
            "--timeout-ms",
            "60000",
        ],
    );
    bus.wait_progress(source, N / 3);
    bus.kill(first);
    let (winner, loser) = if receiver_wins {
        (sink, source)
    } else {
        (source, sink)
    };

    // The source gets everything acknowledged (or failed) after the takeover.
    bus.wait_json(
        source,
        "every message settled",
        Duration::from_secs(40),
        |v| {
            v["waiting"] == Value::Bool(true)
                && v["connected"] == Value::Bool(true)
                && v["unacknowledged"].as_u64() == Some(0)
        },
    );

    // Exactly one survivor serves: it holds the lock, logged the takeover once, and the
    // other is its client (both registered on the one hub `ps` reaches).
    assert_eq!(
        lock_pid(&bus),
        Some(bus.pid(winner)),
        "the lock names the winner{}",
        bus.dump()
    );
    let first_pid = bus.pid(first);
    let lines = takeover_lines(&bus, winner);
    assert_eq!(lines.len(), 1, "one takeover line: {lines:?}{}", bus.dump());
    assert!(
        lines[0].contains(&format!(
            "serving bus {} after its hub (pid {first_pid}) went away",
            bus.name
        )),
        "{lines:?}"
    );
    assert!(
        takeover_lines(&bus, loser).is_empty(),
        "the other survivor did not serve{}",
        bus.dump()
    );
    let list = bus.wait_ps("both survivors on the new hub", |l| {
        ps_pid(l, "a").is_some() && ps_pid(l, "b").is_some()
    });
    assert_eq!(ps_pid(&list, "a"), Some(bus.pid(source) as u64), "{list:?}");
    assert_eq!(ps_pid(&list, "b"), Some(bus.pid(sink) as u64), "{list:?}");
    assert_eq!(
        ps_pid(&list, "first"),
        None,
        "the dead hub's port is gone: {list:?}"
    );

    // A fourth auto-role process joins the new hub as a client.
    let fourth = bus.start_ready("fourth", &["sink", "d", "--auto"]);
    let ready = last_json(&bus.out(fourth), "ready").expect("the fourth's ready line");
    assert_eq!(
        ready["hub"],
        Value::Bool(false),
        "the fourth joins as a client"
    );
    assert_eq!(lock_pid(&bus), Some(bus.pid(winner)));
    let fourth_pid = bus.pid(fourth) as u64;
    bus.wait_ps("the fourth on the bus", |l| {
        ps_pid(l, "d") == Some(fourth_pid)
    });

    // Count: every message delivered exactly once, or reported failed to its sender.
    bus.term(sink);
    bus.wait_exit(sink, STEP_LIMIT);
    bus.wait_exit(source, STEP_LIMIT);
    let tally = last_json(&bus.out(sink), "distinct").expect("the sink's tally");
    let fin = last_json(&bus.out(source), "sent").expect("the source's final line");
    eprintln!(
        "{test}: delivered {} once, {} failed ({}), {} delivered twice",
        u(&tally, "distinct"),
        u(&fin, "failed"),
        fin["reasons"],
        u(&tally, "duplicates")
    );
    assert_eq!(u(&fin, "sent"), N, "{fin}");
    assert_eq!(u(&tally, "duplicates"), 0, "nothing twice: {tally}");
    assert_eq!(u(&tally, "out_of_order"), 0, "in order: {tally}");
    assert_eq!(
        u(&tally, "distinct") + u(&fin, "failed"),
        N,
        "each delivered once or reported failed: {tally} / {fin}{}",
        bus.dump()
    );
    assert_eq!(u(&fin, "unacknowledged"), 0, "{fin}");
}

#[test]
fn the_receiver_takes_over_serving_when_the_hub_is_killed() {
    fail_over("fo-recv", "unix", true);
}

#[test]
fn the_sender_takes_over_serving_when_the_hub_is_killed() {
    fail_over("fo-send", "unix", false);
}

/// The same over the other transports: the new hub serves them all, and the survivors'
/// links come back over theirs.
#[test]
fn failover_over_shared_memory_and_fifos() {
    fail_over("fo-shm", "shm", true);
    fail_over("fo-fifo", "fifo", false);
}

/// Two auto-role processes started at the same moment on a bus nobody serves, whose dead
/// hub left its socket behind (both find it stale and would remove it, then bind): one
/// serves, the other is its client, every time.
#[test]
fn two_processes_racing_to_serve_never_both_serve() {
    for round in 0..12 {
        let mut bus = Bus::new(&format!("race{round}"));
        if round % 2 == 0 {
            // A socket file nobody listens on (connecting is refused).
            drop(std::os::unix::net::UnixListener::bind(bus.socket()).expect("a stale socket"));
        }
        let x = bus.probe("x", &["sink", "x", "--auto"]);
        let y = bus.probe("y", &["sink", "y", "--auto"]);
        let is_ready = |v: &Value| v["ready"] == Value::Bool(true);
        let rx = bus.wait_json(x, "x ready", STEP_LIMIT, is_ready);
        let ry = bus.wait_json(y, "y ready", STEP_LIMIT, is_ready);
        let hubs = [&rx, &ry]
            .iter()
            .filter(|r| r["hub"] == Value::Bool(true))
            .count();
        assert_eq!(hubs, 1, "round {round}: {rx} {ry}{}", bus.dump());
        let server = if rx["hub"] == Value::Bool(true) { x } else { y };
        assert_eq!(lock_pid(&bus), Some(bus.pid(server)), "round {round}");
        // Both are on the one hub.
        let list = bus.wait_ps("both racers", |l| {
            ps_pid(l, "x").is_some() && ps_pid(l, "y").is_some()
        });
        assert_eq!(ps_pid(&list, "x"), Some(bus.pid(x) as u64), "{list:?}");
        assert_eq!(ps_pid(&list, "y"), Some(bus.pid(y) as u64), "{list:?}");
    }
}

/// While an auto-role process serves, a hub for the same bus is refused with the usual
/// error; once that process is killed, the stale socket is replaced and a hub serves.
#[test]
fn the_bus_lock_refuses_a_second_hub_and_frees_with_its_holder() {
    let mut bus = Bus::new("fo-lock");
    let first = bus.start_ready("first", &["sink", "first", "--auto"]);
    let (status, _, err) = bus.run(&["hub"]);
    assert!(!status.success(), "a second hub started: {err}");
    assert!(err.contains("already serving"), "{err}");
    bus.kill(first);
    assert!(
        bus.socket().exists(),
        "a SIGKILLed hub leaves its socket behind"
    );
    let hub = bus.start_hub();
    assert_eq!(lock_pid(&bus), Some(bus.pid(hub)));
    bus.start_sink("s", &[]);
}

/// What the process that takes over holds for a machine that does not come back (one of the
/// dead hub's own) waits the reconnect grace, then fails visibly to its sender, as do the
/// messages sent to it meanwhile: nothing stays unacknowledged, nothing is dropped unsaid.
#[test]
fn messages_to_the_dead_hubs_machines_fail_visibly_after_the_grace() {
    const M: u64 = 1000;
    let mut bus = Bus::new("fo-gone");
    // The first serves, and reads nothing: what it is sent stays unacknowledged.
    let first = bus.start_ready("first", &["sink", "first", "--auto", "--hold"]);
    let m = M.to_string();
    let source = bus.probe(
        "source",
        &[
            "source",
            "a",
            "first",
            &m,
            "--auto",
            "--backoff-ms",
            "20",
            "--rate",
            "2000",
            "--progress-every",
            "100",
            "--linger-ms",
            "5000",
            "--timeout-ms",
            "30000",
        ],
    );
    bus.wait_progress(source, M / 4);
    let killed = std::time::Instant::now();
    bus.kill(first);
    bus.wait_line(source, true, "the takeover", STEP_LIMIT, |l| {
        l.contains("after its hub (pid")
    });
    bus.wait_exit(source, Duration::from_secs(30));
    let fin = last_json(&bus.out(source), "sent").expect("the source's final line");
    assert_eq!(
        (u(&fin, "sent"), u(&fin, "failed")),
        (M, M),
        "{fin}{}",
        bus.dump()
    );
    assert_eq!(u(&fin, "unacknowledged"), 0, "{fin}");
    assert_eq!(
        fin["reasons"],
        serde_json::json!({"unknown-target": M}),
        "{fin}"
    );
    assert!(
        killed.elapsed() >= Duration::from_secs(3),
        "the held messages waited the reconnect grace"
    );
}

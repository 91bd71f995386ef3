//! The soak test: a supervised app of 8 processes exchanging at least a million events while
//! workers are SIGKILLed at random and the hub is SIGKILLed once, half way, the supervisor
//! taking over serving the bus (failover); at the end every event sent is accounted for. Ignored by default (it runs for minutes); run it with
//! `scripts/soak.sh` (release build), or
//!
//! ```text
//! cargo build --release --example bus_probe
//! cargo test --release --test soak -- --ignored --nocapture
//! ```
//!
//! Settings (environment): `SOAK_EVENTS` (default 1000000), `SOAK_LIMIT_SECS` (600),
//! `SOAK_KILL_EVERY_MS` (1500, the mean time between two SIGKILLs), `SOAK_RATE` (events a
//! second per source, 4000 so that a million events take about a minute of kills; 0 = as
//! fast as backpressure allows), `SOAK_SEED`.
//!
//! The app (`interstate up` on a manifest written here, joined to an `interstate hub` this
//! test runs, so that the hub can be killed without the supervisor; `up` runs in the auto
//! role, so it then serves the bus in the hub's place, and the workers, clients, reconnect to
//! it):
//!
//! - 4 sinks `k0`..`k3` (`bus_probe soak-sink`, restart always): a statechart whose action
//!   appends each event's payload to `kN.log` during the step, before the node acknowledges it;
//! - 4 sources `s0`..`s3` (`bus_probe soak-source`, restart on failure): a port that sends
//!   `SOAK_EVENTS / 4` events, event `E<n>` to sink `k(n mod 4)`, appending `S n` to `sN.log`
//!   before each send and `F n reason` for each failure reported back; a restarted source
//!   resumes after its last `S`; it appends `D` once everything is acknowledged or failed.
//!
//! The tally joins the logs. Every `(source, n)` with an `S` line is, by the guarantees
//! (`docs/guarantees.md`): delivered exactly once (not reported failed); or reported failed
//! (not delivered); or delivered *and* reported failed (the receiver died after the step,
//! before its acknowledgement left: a failure report means "not confirmed"); or, only if the
//! source incarnation that sent it was SIGKILLed, lost with its sender. Never delivered twice,
//! never delivered to the wrong sink, never delivered without having been sent, never lost
//! silently by a source that lived to the end, never reported failed twice.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

const SOURCES: usize = 4;
const SINKS: usize = 4;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A small deterministic PRNG (xorshift64*).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What one source's log says.
#[derive(Default)]
struct SourceLog {
    /// n -> the incarnation (0-based) that logged `S n`.
    sent: Vec<u32>,
    /// n -> failure reports.
    failed: HashMap<u64, Vec<String>>,
    /// Incarnations, and whether the last one finished (`D`).
    incarnations: u32,
    done: bool,
    unparsed: u64,
}

fn read_source(path: &str) -> SourceLog {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut log = SourceLog::default();
    for l in text.lines() {
        if l.starts_with("I ") {
            log.incarnations += 1;
        } else if let Some(n) = l.strip_prefix("S ").and_then(|n| n.parse::<usize>().ok()) {
            if log.sent.len() <= n {
                log.sent.resize(n + 1, u32::MAX);
            }
            log.sent[n] = log.incarnations.saturating_sub(1);
        } else if let Some(rest) = l.strip_prefix("F ") {
            let mut it = rest.splitn(2, ' ');
            match (it.next().and_then(|n| n.parse().ok()), it.next()) {
                (Some(n), Some(reason)) => {
                    log.failed.entry(n).or_default().push(reason.to_string())
                }
                _ => log.unparsed += 1,
            }
        } else if l == "D" {
            log.done = true;
        } else {
            log.unparsed += 1;
        }
    }
    log
}

#[test]
#[ignore = "a soak of minutes: run scripts/soak.sh"]
fn soak_supervised_app_with_kills_and_a_failover() {
    let events = env_u64("SOAK_EVENTS", 1_000_000);
    let limit = Duration::from_secs(env_u64("SOAK_LIMIT_SECS", 600));
    let kill_every = env_u64("SOAK_KILL_EVERY_MS", 1500).max(100);
    let rate = env_u64("SOAK_RATE", 4000);
    let mut rng = Rng(env_u64("SOAK_SEED", 0x5EED_1234_ABCD_0001) | 1);
    let per_source = events.div_ceil(SOURCES as u64);

    let mut bus = Bus::new("soak");
    let hub = bus.start_hub();
    let probe = probe_bin();
    let probe = probe.to_str().expect("UTF-8 path");
    let sinks: Vec<String> = (0..SINKS).map(|i| format!("k{i}")).collect();
    let mut manifest = format!(
        "bus = \"{}\"\n\n[supervisor]\ngrace = \"2s\"\nready_timeout = \"30s\"\n\
         backoff_min = \"50ms\"\nbackoff_max = \"500ms\"\nmax_restarts = 10000\nwithin = \"10s\"\n",
        bus.name
    );
    for k in &sinks {
        manifest += &format!(
            "\n[[process]]\nname = \"{k}\"\ncommand = \"{probe}\"\n\
             args = [\"soak-sink\", \"{k}\", \"--log\", \"{}\", \"--bus\", \"{}\"]\n\
             provides = [\"{k}\"]\nrestart = \"always\"\n",
            bus.path(&format!("{k}.log")),
            bus.name
        );
    }
    for i in 0..SOURCES {
        let mut args = format!(
            "\"soak-source\", \"s{i}\", \"--targets\", \"{}\", \"--total\", \"{per_source}\", \
             \"--log\", \"{}\", \"--bus\", \"{}\", \"--timeout-ms\", \"{}\"",
            sinks.join(","),
            bus.path(&format!("s{i}.log")),
            bus.name,
            limit.as_millis()
        );
        if rate > 0 {
            args += &format!(", \"--rate\", \"{rate}\"");
        }
        manifest += &format!(
            "\n[[process]]\nname = \"s{i}\"\ncommand = \"{probe}\"\nargs = [{args}]\n\
             after = [{}]\nrestart = \"on-failure\"\n",
            sinks
                .iter()
                .map(|k| format!("\"{k}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let manifest_path = bus.write("soak.toml", &manifest);
    let started = Instant::now();
    let up = bus.interstate("up", &["up", &manifest_path, "--plain"]);
    bus.wait_line(
        up,
        false,
        "every process ready",
        Duration::from_secs(60),
        |l| l.contains("every process is ready"),
    );

    // The supervisor's lines: "up: NAME started (pid N)" (the latest is the live one),
    // and the sources' progress lines relayed as "  sN | {...}".
    let live_pids = |bus: &Bus| -> HashMap<String, u32> {
        let mut pids = HashMap::new();
        for l in bus.out(up) {
            if let Some(rest) = l.strip_prefix("up: ") {
                if let Some((name, pid)) = rest.split_once(" started (pid ") {
                    if let Ok(pid) = pid.trim_end_matches(')').parse() {
                        pids.insert(name.to_string(), pid);
                    }
                }
                if let Some((name, _)) = rest.split_once(" (pid ") {
                    if rest.contains(" exited with ") {
                        pids.remove(name);
                    }
                }
            }
        }
        pids
    };
    let progress = |bus: &Bus| -> u64 {
        let mut best: HashMap<String, u64> = HashMap::new();
        for l in bus.out(up) {
            let Some((name, json)) = l.split_once(" | ") else {
                continue;
            };
            if let Some(v) = parse_json(json) {
                let p = v["progress"]
                    .as_u64()
                    .or(v["done"].as_bool().map(|_| per_source));
                if let Some(p) = p {
                    let e = best.entry(name.trim().to_string()).or_default();
                    *e = (*e).max(p);
                }
            }
        }
        best.values().sum()
    };
    let all_done = |bus: &Bus| -> bool {
        (0..SOURCES).all(|i| read_source_done(&bus.path(&format!("s{i}.log"))))
    };

    let mut kills: Vec<String> = Vec::new();
    let mut failover: Option<u64> = None;
    let mut next_kill = Instant::now() + Duration::from_millis(kill_every);
    let mut last_report = Instant::now();
    loop {
        if all_done(&bus) {
            break;
        }
        assert!(
            started.elapsed() < limit,
            "the soak did not finish within {limit:?} (progress {} of {events}){}",
            progress(&bus),
            bus.dump()
        );
        assert!(
            bus.try_status(up).is_none(),
            "the supervisor exited{}",
            bus.dump()
        );
        let done = progress(&bus);
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            eprintln!(
                "soak: {:>5.1} s, {done} of {events} sent, {} kills",
                started.elapsed().as_secs_f64(),
                kills.len()
            );
        }
        // The failover, once, half way: the hub is SIGKILLed and the supervisor takes over
        // serving the bus (it holds the bus lock and logs it once); no worker is killed
        // around it (see the doc).
        if failover.is_none() && done >= events / 2 {
            let hub_pid = bus.pid(hub);
            bus.kill(hub);
            let takeover = format!("after its hub (pid {hub_pid}) went away");
            bus.wait_line(up, false, "the supervisor's takeover", STEP_LIMIT, |l| {
                l.contains(&takeover)
            });
            let lock = std::fs::read_to_string(bus.path(&format!("{}.lock", bus.name)));
            assert_eq!(
                lock.ok().and_then(|l| l.trim().parse::<u32>().ok()),
                Some(bus.pid(up)),
                "the supervisor holds the bus lock{}",
                bus.dump()
            );
            failover = Some(done);
            next_kill = Instant::now() + Duration::from_secs(8);
            eprintln!("soak: hub killed at {done} events; the supervisor serves the bus");
        }
        if Instant::now() >= next_kill && done < events {
            let pids = live_pids(&bus);
            let mut names: Vec<&String> = pids.keys().collect();
            names.sort();
            if !names.is_empty() {
                let name = names[rng.below(names.len() as u64) as usize].clone();
                let pid = pids[&name];
                if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
                    let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
                    kills.push(format!("{name}@{done}"));
                }
            }
            let gap = kill_every / 2 + rng.below(kill_every);
            next_kill = Instant::now() + Duration::from_millis(gap);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let elapsed = started.elapsed();
    bus.term(up);
    bus.wait_exit(up, Duration::from_secs(60));

    // The tally.
    let sources: Vec<SourceLog> = (0..SOURCES)
        .map(|i| read_source(&bus.path(&format!("s{i}.log"))))
        .collect();
    // (source index, n) -> deliveries, and on which sink.
    let mut delivered: Vec<Vec<u8>> = sources.iter().map(|s| vec![0u8; s.sent.len()]).collect();
    let (mut misrouted, mut phantom, mut out_of_order, mut unparsed_sink, mut sink_incarnations) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    for (k, sink) in sinks.iter().enumerate() {
        let text = std::fs::read_to_string(bus.path(&format!("{sink}.log"))).unwrap_or_default();
        let mut last: HashMap<usize, u64> = HashMap::new();
        for l in text.lines() {
            if l.starts_with("I ") {
                sink_incarnations += 1;
                continue;
            }
            let parsed = l.split_once(' ').and_then(|(s, n)| {
                Some((
                    s.strip_prefix('s')?.parse::<usize>().ok()?,
                    n.parse::<u64>().ok()?,
                ))
            });
            let Some((s, n)) = parsed.filter(|(s, _)| *s < SOURCES) else {
                unparsed_sink += 1;
                continue;
            };
            if (n % SINKS as u64) as usize != k {
                misrouted += 1;
            }
            if last.get(&s).is_some_and(|&p| n <= p) {
                out_of_order += 1;
            }
            last.insert(s, n);
            match delivered[s].get_mut(n as usize) {
                Some(d) if sources[s].sent[n as usize] != u32::MAX => *d = d.saturating_add(1),
                _ => phantom += 1,
            }
        }
    }
    let (
        mut sent,
        mut once,
        mut failed_only,
        mut both,
        mut dups,
        mut gone_with_sender,
        mut silent,
        mut double_reports,
    ) = (0u64, 0u64, 0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    let mut reasons: HashMap<String, u64> = HashMap::new();
    let mut silent_examples = Vec::new();
    for (s, log) in sources.iter().enumerate() {
        let last_inc = log.incarnations.saturating_sub(1);
        for (n, &inc) in log.sent.iter().enumerate() {
            if inc == u32::MAX {
                continue;
            }
            sent += 1;
            let d = delivered[s][n];
            let f = log.failed.get(&(n as u64));
            if let Some(f) = f {
                if f.len() > 1 {
                    double_reports += 1;
                }
                *reasons.entry(f[0].clone()).or_default() += 1;
            }
            match (d, f.is_some()) {
                (0, true) => failed_only += 1,
                (1, false) => once += 1,
                (1, true) => both += 1,
                (0, false) if inc != last_inc || !log.done => gone_with_sender += 1,
                (0, false) => {
                    silent += 1;
                    if silent_examples.len() < 10 {
                        silent_examples.push(format!("s{s} {n}"));
                    }
                }
                _ => dups += 1,
            }
        }
    }
    let source_incarnations: u32 = sources.iter().map(|s| s.incarnations).sum();
    let tally = json!({
        "events_sent": sent,
        "delivered_exactly_once": once,
        "reported_failed": failed_only,
        "delivered_and_reported_failed": both,
        "lost_with_a_killed_sender": gone_with_sender,
        "silent_losses": silent,
        "duplicates": dups,
        "misrouted": misrouted,
        "delivered_never_sent": phantom,
        "failures_reported_twice": double_reports,
        "out_of_order": out_of_order,
        "failure_reasons": reasons,
        "sigkills": kills.len(),
        "source_incarnations": source_incarnations,
        "sink_incarnations": sink_incarnations,
        "failover_at_events": failover,
        "seconds": (elapsed.as_secs_f64() * 10.0).round() / 10.0,
        "events_per_second": (sent as f64 / elapsed.as_secs_f64()).round(),
        "unparsed_lines": sources.iter().map(|s| s.unparsed).sum::<u64>() + unparsed_sink,
    });
    eprintln!(
        "soak tally: {}",
        serde_json::to_string_pretty(&tally).unwrap()
    );
    eprintln!("soak kills: {}", kills.join(" "));
    assert!(sent >= events, "only {sent} events were sent{}", bus.dump());
    assert!(failover.is_some(), "the hub was never killed");
    let takeovers = bus
        .out(up)
        .iter()
        .filter(|l| l.contains("after its hub (pid"))
        .count();
    assert_eq!(takeovers, 1, "one takeover{}", bus.dump());
    assert_eq!(
        silent, 0,
        "silent losses, e.g. {silent_examples:?}: {tally}"
    );
    assert_eq!(dups, 0, "duplicates: {tally}");
    assert_eq!((misrouted, phantom, double_reports), (0, 0, 0), "{tally}");
    assert_eq!(out_of_order, 0, "{tally}");
}

fn read_source_done(path: &str) -> bool {
    // The last line only: the logs are large.
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(64)));
    let mut tail = String::new();
    let _ = f.read_to_string(&mut tail);
    tail.lines().last() == Some("D")
}

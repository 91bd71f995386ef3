//! Operations: `--metrics` endpoints scraped over HTTP (the hub's, a machine's, `up`'s),
//! `interstate stats` gathering every process's counters, and the logger (`RUST_LOG`,
//! `--quiet`/`--verbose`, journald priorities). Each test owns a private bus directory;
//! every process it starts is killed by pid when the test ends (see `support`).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Bus, P, STEP_LIMIT};

/// A machine that does nothing but log what it gets.
const TARGET: &str = r#"{ "id": "target", "initial": "idle", "states": { "idle": { "on": {
  "OK": { "actions": [ { "type": "log", "message": "got OK" } ] } } } } }"#;

/// On GO, sends OK to `tgt` (another process).
const PINGER: &str = r#"{ "id": "pinger", "initial": "idle", "states": { "idle": { "on": {
  "GO": { "actions": [ { "type": "xstate.sendTo", "to": "tgt", "event": { "type": "OK" } } ] }
} } } }"#;

/// The address a process printed as `metrics at http://ADDR/metrics`.
fn metrics_addr(bus: &mut Bus, p: P, on_stderr: bool) -> String {
    let line = bus.wait_line(p, on_stderr, "the metrics address", STEP_LIMIT, |l| {
        l.contains("metrics at http://")
    });
    let rest = line.split("http://").nth(1).expect("an address");
    rest.trim_end_matches("/metrics").trim().to_string()
}

/// `GET path` from `addr`: (status line, headers, body).
fn get(addr: &str, path: &str) -> (String, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    s.set_read_timeout(Some(STEP_LIMIT)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read the answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_string(), headers.to_lowercase(), body.to_string())
}

/// The value of the sample line `name{labels}` (exactly as written) in an exposition.
fn sample(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Scrapes until `pred` holds for the text; returns it.
fn scrape_until(bus: &Bus, addr: &str, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let end = Instant::now() + STEP_LIMIT;
    loop {
        let (status, _, body) = get(addr, "/metrics");
        if status.contains("200") && pred(&body) {
            return body;
        }
        if Instant::now() >= end {
            panic!(
                "the metrics at {addr} never showed {what}:\n{body}{}",
                bus.dump()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Checks the OpenMetrics framing: every family has TYPE and HELP before its samples,
/// counters' samples end in `_total`, and the text ends with `# EOF`.
fn check_exposition(text: &str) {
    assert!(text.ends_with("# EOF\n"), "no # EOF at the end:\n{text}");
    let mut family: Option<(String, String)> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            family = Some((name.to_string(), kind.to_string()));
        } else if line.starts_with("# HELP ") || line == "# EOF" {
        } else {
            let (name, kind) = family.as_ref().expect("a sample after its TYPE line");
            let series = line.split([' ', '{']).next().unwrap();
            let ok = match kind.as_str() {
                "counter" => series == format!("{name}_total"),
                "gauge" => series == name,
                _ => ["_bucket", "_count", "_sum"]
                    .iter()
                    .any(|s| series == format!("{name}{s}")),
            };
            assert!(ok, "sample {line} does not belong to {name} ({kind})");
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "bad value in {line}");
        }
    }
}

/// A hub and two machines with `--metrics`, some traffic: the endpoints count it, and
/// `interstate stats` gathers the same counters from every process.
#[test]
fn metrics_endpoints_and_stats_count_the_traffic() {
    let mut bus = Bus::new("metrics");
    let hub = bus.interstate("hub", &["hub", "--metrics", "127.0.0.1:0"]);
    let hub_addr = metrics_addr(&mut bus, hub, true);
    let target = bus.write("target.json", TARGET);
    let pinger = bus.write("pinger.json", PINGER);
    let tgt = bus.interstate(
        "run tgt",
        &[
            "run",
            &target,
            "--id",
            "tgt",
            "--client",
            "--metrics",
            "127.0.0.1:0",
        ],
    );
    let tgt_addr = metrics_addr(&mut bus, tgt, true);
    bus.wait_line(tgt, true, "tgt's join line", STEP_LIMIT, |l| {
        l.contains("joined bus")
    });
    bus.start_machine(&pinger, "pinger");
    for _ in 0..3 {
        let (status, _, err) = bus.run(&["send", "pinger", "GO"]);
        assert!(status.success(), "send failed: {err}");
    }
    // tgt has all three OKs once it logged them.
    let end = Instant::now() + STEP_LIMIT;
    while bus.out(tgt).iter().filter(|l| l.contains("got OK")).count() < 3 {
        assert!(Instant::now() < end, "tgt did not get 3 OKs{}", bus.dump());
        std::thread::sleep(Duration::from_millis(20));
    }

    // The machine's endpoint.
    let text = scrape_until(&bus, &tgt_addr, "tgt's three messages", |t| {
        sample(
            t,
            "interstate_machine_messages_received_total{machine=\"tgt\"}",
        ) == Some(3)
    });
    check_exposition(&text);
    assert_eq!(
        sample(&text, "interstate_node_messages_received_total"),
        Some(3)
    );
    assert_eq!(sample(&text, "interstate_node_machines"), Some(1));
    let (status, headers, _) = get(&tgt_addr, "/metrics");
    assert!(status.contains("200"), "{status}");
    assert!(
        headers.contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{headers}"
    );
    let (status, _, _) = get(&tgt_addr, "/nothing");
    assert!(status.contains("404"), "{status}");

    // The hub's endpoint: three GOs (from `send`) and three OKs (from pinger) routed.
    let text = scrape_until(&bus, &hub_addr, "six routed messages", |t| {
        sample(t, "interstate_hub_messages_routed_total") == Some(6)
    });
    check_exposition(&text);
    let tgt_pid = bus.pid(tgt).to_string();
    let link_line = text
        .lines()
        .find(|l| {
            l.starts_with("interstate_link_messages_out_total{")
                && l.contains(&format!("pid=\"{tgt_pid}\""))
        })
        .unwrap_or_else(|| panic!("no link line for tgt's process:\n{text}"));
    assert!(link_line.ends_with(" 3"), "{link_line}");
    assert_eq!(sample(&text, "interstate_hub_machines"), Some(2));

    // `interstate stats --json`: the hub first, then each process, none missing.
    let stats = |bus: &mut Bus| -> Value {
        let (status, out, err) = bus.run(&["stats", "--json"]);
        assert!(status.success(), "stats failed: {err}{}", bus.dump());
        serde_json::from_str(&out).expect("stats --json prints JSON")
    };
    let v = stats(&mut bus);
    assert_eq!(v["missing"], 0, "{v}");
    let procs = v["processes"].as_array().expect("processes");
    assert_eq!(procs[0]["source"]["role"], "hub", "{v}");
    assert_eq!(procs.len(), 3, "the hub, tgt's and pinger's processes: {v}");
    let value = |v: &Value, machine: &str, name: &str| -> Option<u64> {
        let p = v["processes"]
            .as_array()?
            .iter()
            .find(|p| p["source"]["machines"] == serde_json::json!([machine]))?;
        let f = p["metrics"]
            .as_array()?
            .iter()
            .find(|f| f["name"] == name)?;
        f["samples"][0]["value"].as_u64()
    };
    assert_eq!(
        value(&v, "tgt", "interstate_machine_messages_received"),
        Some(3)
    );
    assert_eq!(
        value(&v, "pinger", "interstate_machine_messages_sent"),
        Some(3)
    );
    // Pinger's sampled acknowledgement latency: at least one of its messages was timed.
    let end = Instant::now() + STEP_LIMIT;
    loop {
        let v = stats(&mut bus);
        let timed = v["processes"]
            .as_array()
            .and_then(|ps| {
                let p = ps
                    .iter()
                    .find(|p| p["source"]["machines"] == serde_json::json!(["pinger"]))?;
                let f = p["metrics"]
                    .as_array()?
                    .iter()
                    .find(|f| f["name"] == "interstate_node_ack_latency_seconds")?;
                Some(
                    f["samples"][0]["histogram"]["counts"]
                        .as_array()?
                        .iter()
                        .filter_map(Value::as_u64)
                        .sum::<u64>(),
                )
            })
            .unwrap_or(0);
        if timed >= 1 {
            break;
        }
        assert!(Instant::now() < end, "no acknowledgement timed: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The text form names the counters without the prefix.
    let (status, out, _) = bus.run(&["stats"]);
    assert!(status.success());
    assert!(
        out.contains("machine_messages_received {machine=tgt} 3"),
        "{out}"
    );
    assert!(out.starts_with("hub pid "), "{out}");
}

/// `up` serves its node's metrics and each process's restarts at the manifest's `metrics`.
#[test]
fn up_serves_the_metrics_its_manifest_asks_for() {
    let mut bus = Bus::new("upmetrics");
    let manifest = bus.write(
        "app.toml",
        r#"
        metrics = "127.0.0.1:0"

        [[process]]
        name = "steady"
        command = "sleep"
        args = ["30"]
        "#,
    );
    let up = bus.interstate("up", &["up", &manifest, "--plain"]);
    let addr = metrics_addr(&mut bus, up, false);
    let text = scrape_until(&bus, &addr, "the running process", |t| {
        sample(t, "interstate_process_running{process=\"steady\"}") == Some(1)
    });
    check_exposition(&text);
    assert_eq!(
        sample(
            &text,
            "interstate_process_restarts_total{process=\"steady\"}"
        ),
        Some(0)
    );
    bus.term(up);
    let status = bus.wait_exit(up, STEP_LIMIT);
    assert!(
        status.code().is_some(),
        "up ended by a signal{}",
        bus.dump()
    );
}

/// The hub's lines under `RUST_LOG` and `--quiet`/`--verbose`; a bad `RUST_LOG` is refused.
#[test]
fn rust_log_and_verbosity_choose_what_the_hub_says() {
    let mut bus = Bus::new("logging");
    // Verbose, but the hub's own target only at `warn`: settings (debug) and the start line
    // (info) are printed, the connection lines (info, interstate::hub) are not.
    let mut cmd = bus.command(&support::interstate_bin(), &["hub", "--verbose"]);
    cmd.env("RUST_LOG", "interstate::hub=warn");
    let hub = bus.spawn("hub", cmd);
    let start = format!(
        "interstate: info: hub serving bus '{}' at {}",
        bus.name,
        bus.socket().display()
    );
    bus.wait_line(hub, true, "the start line", STEP_LIMIT, |l| l == start);
    let (status, _, err) = bus.run(&["ps"]);
    assert!(status.success(), "{err}");
    bus.term(hub);
    bus.wait_exit(hub, STEP_LIMIT);
    let err = bus.err(hub);
    assert!(
        err.iter()
            .any(|l| l.starts_with("interstate: debug: hub settings:")),
        "{err:?}"
    );
    assert!(
        err.iter().any(|l| l == "interstate: info: hub stopped"),
        "{err:?}"
    );
    assert!(!err.iter().any(|l| l.contains("connected")), "{err:?}");

    // Quiet: nothing at all from a hub that only saw a client come and go.
    let mut bus = Bus::new("quiet");
    let hub = bus.interstate("hub", &["hub", "--quiet"]);
    let end = Instant::now() + STEP_LIMIT;
    while bus.run(&["ps"]).0.code() != Some(0) {
        assert!(
            Instant::now() < end,
            "the quiet hub never served{}",
            bus.dump()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    bus.term(hub);
    bus.wait_exit(hub, STEP_LIMIT);
    assert_eq!(bus.err(hub), Vec::<String>::new());

    // Default level, hub target raised to debug: the connection lines are there.
    let mut bus = Bus::new("hubinfo");
    let mut cmd = bus.command(&support::interstate_bin(), &["hub"]);
    cmd.env("RUST_LOG", "warn,interstate::hub=debug");
    let hub = bus.spawn("hub", cmd);
    let end = Instant::now() + STEP_LIMIT;
    while bus.run(&["ps"]).0.code() != Some(0) {
        assert!(Instant::now() < end, "the hub never served{}", bus.dump());
        std::thread::sleep(Duration::from_millis(50));
    }
    bus.wait_line(hub, true, "a connection line", STEP_LIMIT, |l| {
        l.starts_with("interstate: hub::connections: info: link ") && l.contains("connected: pid ")
    });
    bus.term(hub);
    bus.wait_exit(hub, STEP_LIMIT);
    // `warn` by default: the start line (info, the command's own target) is not printed.
    assert!(
        !bus.err(hub).iter().any(|l| l.contains("hub serving bus")),
        "{:?}",
        bus.err(hub)
    );

    let mut cmd = bus.command(&support::interstate_bin(), &["hub"]);
    cmd.env("RUST_LOG", "loud");
    let bad = bus.spawn("bad", cmd);
    let status = bus.wait_exit(bad, STEP_LIMIT);
    assert_eq!(status.code(), Some(2));
    assert_eq!(
        bus.err(bad),
        vec!["interstate: RUST_LOG: 'loud' is not a level (off, error, warn, info, debug, trace)"]
    );
}

/// Kills its process (by pid) when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// With `JOURNAL_STREAM` naming stderr (as systemd sets it), every line carries its
/// sd-daemon priority; naming another file, lines are plain.
#[test]
fn journal_stream_on_stderr_gives_priority_prefixes() {
    for journal in [true, false] {
        let bus = Bus::new(if journal { "journal" } else { "nojournal" });
        let log_path = bus.dir.join("hub.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let meta = log.metadata().unwrap();
        let stream = if journal {
            format!("{}:{}", meta.dev(), meta.ino())
        } else {
            format!("{}:{}", meta.dev(), meta.ino() + 1)
        };
        let mut cmd = bus.command(&support::interstate_bin(), &["hub"]);
        cmd.env("JOURNAL_STREAM", &stream)
            .stdout(Stdio::null())
            .stderr(log);
        let mut hub = Killed(cmd.spawn().expect("start the hub"));
        let end = Instant::now() + STEP_LIMIT;
        let mut ps = bus.command(&support::interstate_bin(), &["ps"]);
        while !ps.output().expect("run ps").status.success() {
            assert!(Instant::now() < end, "the hub never served");
            std::thread::sleep(Duration::from_millis(50));
        }
        rustix::process::kill_process(
            rustix::process::Pid::from_child(&hub.0),
            rustix::process::Signal::TERM,
        )
        .unwrap();
        let end = Instant::now() + STEP_LIMIT;
        while hub.0.try_wait().unwrap().is_none() {
            assert!(Instant::now() < end, "the hub did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
        let text = std::fs::read_to_string(&log_path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let start = format!("hub serving bus '{}'", bus.name);
        if journal {
            assert!(
                lines.iter().any(|l| l.starts_with(&format!("<6>{start}"))),
                "{text}"
            );
            assert!(
                lines
                    .iter()
                    .any(|l| l.starts_with("<6>hub::connections: link ") && l.contains("connected")),
                "{text}"
            );
            assert!(lines.iter().all(|l| l.starts_with('<')), "{text}");
        } else {
            let plain = format!("interstate: info: {start}");
            assert!(lines.iter().any(|l| l.starts_with(&plain)), "{text}");
            assert!(
                lines.iter().all(|l| l.starts_with("interstate: ")),
                "{text}"
            );
        }
    }
}

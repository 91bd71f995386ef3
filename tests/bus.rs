//! The bus end to end: real processes (the `interstate` binary and the `bus_probe` test
//! helper, `examples/bus_probe.rs`) on a private bus directory and bus name per test.
//!
//! `bus_probe` is found next to the binary as `<target>/<profile>/examples/bus_probe`.
//! Plain `cargo test` builds every example before it runs the integration tests; when
//! selecting this file alone, build the helper first:
//! `cargo build --example bus_probe && cargo test --test bus`. (`cargo test --example
//! bus_probe` does not do: it builds the example as a test harness, elsewhere.)
//!
//! Every test owns a [`Bus`] guard: its Drop SIGKILLs every child still running and removes
//! the directory. Waits poll for a condition with a deadline; nothing asserts on timing.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long a step that should take milliseconds may take on a loaded machine.
const STEP_LIMIT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(20);

fn interstate_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_interstate"))
}

fn probe_bin() -> PathBuf {
    let bin = interstate_bin();
    let probe = bin
        .parent()
        .expect("the interstate binary is in a directory")
        .join("examples")
        .join("bus_probe");
    const HOW: &str = "build it with `cargo build --example bus_probe` before `cargo test --test \
                       bus` (plain `cargo test` builds every example)";
    assert!(
        probe.exists(),
        "the test helper {} is missing: {HOW}",
        probe.display()
    );
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/bus_probe.rs");
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if let (Some(built), Some(edited)) = (mtime(&probe), mtime(&source)) {
        assert!(
            built >= edited,
            "the test helper {} is older than {}: {HOW}",
            probe.display(),
            source.display()
        );
    }
    probe
}

type Lines = Arc<Mutex<Vec<String>>>;

fn collect(pipe: impl Read + Send + 'static) -> Lines {
    let lines: Lines = Arc::default();
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

struct Proc {
    label: String,
    child: Child,
    out: Lines,
    err: Lines,
    status: Option<ExitStatus>,
}

/// A handle on a child of a [`Bus`].
#[derive(Clone, Copy, Debug)]
struct P(usize);

/// A private bus: its directory, its name, and every process started on it.
struct Bus {
    dir: PathBuf,
    name: String,
    procs: Vec<Proc>,
    /// `unix` or `shm`, passed to every process as INTERSTATE_TRANSPORT.
    transport: String,
}

fn parse_json(line: &str) -> Option<Value> {
    serde_json::from_str::<Value>(line)
        .ok()
        .filter(Value::is_object)
}

/// The last JSON object line that has `key`.
fn last_json(lines: &[String], key: &str) -> Option<Value> {
    lines
        .iter()
        .rev()
        .filter_map(|l| parse_json(l))
        .find(|v| v.get(key).is_some())
}

fn u(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("'{key}' is not a number in {v}"))
}

impl Bus {
    fn new(test: &str, transport: &str) -> Bus {
        let dir =
            std::env::temp_dir().join(format!("istb-{}-{test}-{transport}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .expect("create the test's bus directory");
        Bus {
            dir,
            name: format!("t-{test}"),
            procs: Vec::new(),
            transport: transport.to_string(),
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.join(format!("{}.sock", self.name))
    }

    fn write(&self, file: &str, contents: &str) -> String {
        let p = self.dir.join(file);
        std::fs::write(&p, contents).expect("write a test file");
        p.to_str().expect("UTF-8 temp path").to_string()
    }

    fn command(&self, program: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(program);
        c.args(args)
            .args(["--bus", &self.name])
            .env("INTERSTATE_DIR", &self.dir)
            .env("INTERSTATE_TRANSPORT", &self.transport)
            .env_remove("INTERSTATE_BUS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    fn spawn(&mut self, label: &str, mut cmd: Command) -> P {
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {label} ({cmd:?}): {e}"));
        let out = collect(child.stdout.take().expect("piped stdout"));
        let err = collect(child.stderr.take().expect("piped stderr"));
        self.procs.push(Proc {
            label: label.to_string(),
            child,
            out,
            err,
            status: None,
        });
        P(self.procs.len() - 1)
    }

    fn interstate(&mut self, label: &str, args: &[&str]) -> P {
        let cmd = self.command(&interstate_bin(), args);
        self.spawn(label, cmd)
    }

    fn probe(&mut self, label: &str, args: &[&str]) -> P {
        let cmd = self.command(&probe_bin(), args);
        self.spawn(label, cmd)
    }

    fn out(&self, p: P) -> Vec<String> {
        self.procs[p.0].out.lock().unwrap().clone()
    }

    fn err(&self, p: P) -> Vec<String> {
        self.procs[p.0].err.lock().unwrap().clone()
    }

    fn pid(&self, p: P) -> u32 {
        self.procs[p.0].child.id()
    }

    /// Every process's output, for failure messages.
    fn dump(&self) -> String {
        let mut s = String::new();
        for (i, p) in self.procs.iter().enumerate() {
            let out = p.out.lock().unwrap();
            let err = p.err.lock().unwrap();
            let tail = |v: &[String]| v[v.len().saturating_sub(15)..].join("\n    ");
            s += &format!(
                "\n--- [{i}] {} (pid {}, status {:?})\n  stdout:\n    {}\n  stderr:\n    {}",
                p.label,
                p.child.id(),
                p.status,
                tail(&out),
                tail(&err)
            );
        }
        s
    }

    fn try_status(&mut self, p: P) -> Option<ExitStatus> {
        let proc = &mut self.procs[p.0];
        if proc.status.is_none() {
            proc.status = proc.child.try_wait().expect("poll a child");
        }
        proc.status
    }

    /// Waits for the child to exit, then (briefly) for its output to be read to the end.
    fn wait_exit(&mut self, p: P, limit: Duration) -> ExitStatus {
        let end = Instant::now() + limit;
        loop {
            if let Some(s) = self.try_status(p) {
                // The reader threads end at EOF (dropping their clone of the line lists);
                // give them a moment to catch up.
                let proc = &self.procs[p.0];
                let settle = Instant::now() + Duration::from_secs(2);
                while Instant::now() < settle
                    && (Arc::strong_count(&proc.out) > 1 || Arc::strong_count(&proc.err) > 1)
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                return s;
            }
            if Instant::now() >= end {
                panic!(
                    "{} did not exit within {limit:?}{}",
                    self.procs[p.0].label,
                    self.dump()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    fn kill(&mut self, p: P) {
        let proc = &mut self.procs[p.0];
        if proc.status.is_none() {
            let _ = proc.child.kill();
            proc.status = proc.child.wait().ok();
        }
    }

    fn term(&mut self, p: P) {
        if self.try_status(p).is_none() {
            let pid = rustix::process::Pid::from_raw(self.pid(p) as i32).expect("a child's pid");
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
    }

    /// Waits until a line of the child's stdout (or stderr) satisfies `pred`; returns it.
    fn wait_line(
        &mut self,
        p: P,
        stderr: bool,
        what: &str,
        limit: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let end = Instant::now() + limit;
        let mut exited_at: Option<Instant> = None;
        loop {
            let lines = if stderr { self.err(p) } else { self.out(p) };
            if let Some(l) = lines.iter().find(|l| pred(l)) {
                return l.clone();
            }
            let now = Instant::now();
            if exited_at.is_none() && self.try_status(p).is_some() {
                exited_at = Some(now);
            }
            let gave_up = exited_at.is_some_and(|t| now >= t + Duration::from_secs(1));
            if now >= end || gave_up {
                panic!(
                    "waiting for {what} from {}: {}{}",
                    self.procs[p.0].label,
                    if gave_up { "it exited" } else { "timed out" },
                    self.dump()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until a JSON line of the child's stdout satisfies `pred`; returns it.
    fn wait_json(
        &mut self,
        p: P,
        what: &str,
        limit: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let line = self.wait_line(p, false, what, limit, |l| {
            parse_json(l).is_some_and(|v| pred(&v))
        });
        parse_json(&line).expect("matched a JSON line")
    }

    /// Runs `interstate ARGS --bus NAME` to completion: (status, stdout, stderr).
    fn run(&mut self, args: &[&str]) -> (ExitStatus, String, String) {
        let p = self.interstate(&format!("interstate {}", args.join(" ")), args);
        let status = self.wait_exit(p, STEP_LIMIT);
        (status, self.out(p).join("\n"), self.err(p).join("\n"))
    }

    fn start_hub(&mut self) -> P {
        let hub = self.interstate("hub", &["hub"]);
        self.wait_line(hub, true, "the hub's start line", STEP_LIMIT, |l| {
            l.contains("hub serving bus")
        });
        hub
    }

    fn start_machine(&mut self, chart: &str, id: &str) -> P {
        let p = self.interstate(
            &format!("run {id}"),
            &["run", chart, "--id", id, "--client"],
        );
        self.wait_line(p, true, "the machine's join line", STEP_LIMIT, |l| {
            l.contains("joined bus")
        });
        p
    }

    fn start_sink(&mut self, id: &str, extra: &[&str]) -> P {
        let mut args = vec!["sink", id];
        args.extend_from_slice(extra);
        let p = self.probe(&format!("sink {id}"), &args);
        self.wait_json(p, "the sink's ready line", STEP_LIMIT, |v| {
            v["ready"] == json!(true)
        });
        p
    }

    /// `interstate ps --json`.
    fn ps(&mut self) -> Vec<Value> {
        let (status, out, err) = self.run(&["ps", "--json"]);
        assert!(
            status.success(),
            "interstate ps failed: {err}{}",
            self.dump()
        );
        match serde_json::from_str::<Value>(&out) {
            Ok(Value::Array(list)) => list,
            _ => panic!("interstate ps --json printed no JSON array: {out}"),
        }
    }

    /// Polls `interstate ps` until `pred` holds for its list.
    fn wait_ps(&mut self, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let end = Instant::now() + STEP_LIMIT;
        loop {
            let list = self.ps();
            if pred(&list) {
                return list;
            }
            if Instant::now() >= end {
                panic!("ps never showed {what}; last: {list:?}{}", self.dump());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        for p in &mut self.procs {
            if p.status.is_none() && !matches!(p.child.try_wait(), Ok(Some(_))) {
                let _ = p.child.kill();
            }
            let _ = p.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ps_pid(list: &[Value], machine: &str) -> Option<u64> {
    list.iter()
        .find(|e| e["machine"] == json!(machine))
        .and_then(|e| e["pid"].as_u64())
}

/// A machine that ignores everything (E included).
const QUIET: &str = r#"{"id":"quiet","initial":"idle","states":{"idle":{}}}"#;

/// A machine that logs every PING.
const LOGGER: &str = r#"{
  "id": "logger", "initial": "idle",
  "states": { "idle": { "on": { "PING": { "actions": [ { "type": "log", "message": "got PING" } ] } } } }
}"#;

fn basic_run_send_log_and_ps(transport: &str) {
    let mut bus = Bus::new("basic", transport);
    bus.start_hub();
    let pinger = bus.write(
        "pinger.json",
        r#"{
          "id": "pinger", "initial": "idle",
          "states": { "idle": { "on": { "PING": { "actions": [
            { "type": "log", "message": "got PING" },
            { "type": "sendTo", "to": "listener", "event": "PONG" }
          ] } } } }
        }"#,
    );
    let listener = bus.write(
        "listener.json",
        r#"{
          "id": "listener", "initial": "idle",
          "states": { "idle": { "on": { "PONG": { "actions": [
            { "type": "log", "message": "got PONG" }
          ] } } } }
        }"#,
    );
    let l = bus.start_machine(&listener, "listener");
    let p = bus.start_machine(&pinger, "pinger");

    let (status, out, err) = bus.run(&["send", "pinger", "PING"]);
    assert!(
        status.success(),
        "interstate send failed: {err}{}",
        bus.dump()
    );
    assert!(out.contains("sent PING to pinger"), "send printed: {out}");

    bus.wait_line(p, false, "pinger's log line", STEP_LIMIT, |line| {
        line == "[pinger] got PING"
    });
    bus.wait_line(
        l,
        false,
        "listener's log line (sendTo across processes)",
        STEP_LIMIT,
        |line| line == "[listener] got PONG",
    );

    let list = bus.ps();
    assert_eq!(
        ps_pid(&list, "pinger"),
        Some(bus.pid(p) as u64),
        "ps: {list:?}"
    );
    assert_eq!(
        ps_pid(&list, "listener"),
        Some(bus.pid(l) as u64),
        "ps: {list:?}"
    );
    assert!(
        list.iter().all(|e| e["executable"] == json!("interstate")),
        "ps: {list:?}"
    );
}

fn sigkilled_client_leaves_the_registry_and_its_messages_fail(transport: &str) {
    let mut bus = Bus::new("sigkill", transport);
    bus.start_hub();
    let chart = bus.write("quiet.json", QUIET);
    let victim = bus.start_machine(&chart, "victim2");
    let pid = bus.pid(victim) as u64;
    bus.wait_ps("victim2 with its pid", |l| {
        ps_pid(l, "victim2") == Some(pid)
    });

    // A source streams to it while it is killed.
    let n = 1000u64;
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
    bus.kill(victim);
    bus.wait_ps("victim2 gone", |l| ps_pid(l, "victim2").is_none());

    bus.wait_exit(src, Duration::from_secs(40));
    let fin = last_json(&bus.out(src), "sent").expect("the source's final line");
    assert_eq!(u(&fin, "sent"), n, "{fin}");
    assert_eq!(u(&fin, "errors"), 0, "{fin}");
    let failed = u(&fin, "failed");
    assert!(
        failed >= 1 && failed <= n,
        "messages sent after the target died must come back as failures: {fin}{}",
        bus.dump()
    );
    for (reason, _) in fin["reasons"].as_object().expect("reasons") {
        assert!(
            ["unknown-target", "target-gone"].contains(&reason.as_str()),
            "unexpected failure reason {reason}: {fin}"
        );
    }

    // Sent after it is gone: every message is reported, none silently lost.
    let src_b = bus.probe(
        "source src2b",
        &["source", "src2b", "victim2", "10", "--timeout-ms", "20000"],
    );
    bus.wait_exit(src_b, Duration::from_secs(30));
    let fin = last_json(&bus.out(src_b), "sent").expect("the source's final line");
    assert_eq!(
        (
            u(&fin, "sent"),
            u(&fin, "failed"),
            u(&fin["reasons"], "unknown-target")
        ),
        (10, 10, 10),
        "{fin}{}",
        bus.dump()
    );
    assert_eq!(fin["reason"], json!("all-failed"), "{fin}");
}

/// The hub is SIGKILLed while a source streams 20000 messages to a sink, and restarted.
/// Expected (with end-to-end acknowledgements, retransmission after reconnect and duplicate
/// suppression at the receiver): every message arrives exactly once, in order.
fn hub_restart_mid_stream_loses_nothing(transport: &str) {
    const N: u64 = 20_000;
    let mut bus = Bus::new("restart", transport);
    let hub = bus.start_hub();
    let sink = bus.start_sink(
        "sink3",
        &[
            "--expect",
            "20000",
            "--linger-ms",
            "300",
            "--timeout-ms",
            "40000",
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
            "10000",
            "--progress-every",
            "500",
            "--timeout-ms",
            "20000",
        ],
    );
    bus.wait_json(src, "source progress", STEP_LIMIT, |v| {
        v["progress"].as_u64().is_some_and(|p| p >= 5000)
    });
    bus.kill(hub);
    let killed_at = last_json(&bus.out(src), "progress").map(|v| u(&v, "progress"));
    let mid_stream = last_json(&bus.out(src), "sending_done").is_none();
    bus.start_hub();

    bus.wait_exit(src, Duration::from_secs(40));
    bus.term(sink);
    bus.wait_exit(sink, STEP_LIMIT);
    let fin = last_json(&bus.out(src), "sent").expect("the source's final line");
    let tally = last_json(&bus.out(sink), "distinct").expect("the sink's tally");
    let (sent, failed, errors) = (u(&fin, "sent"), u(&fin, "failed"), u(&fin, "errors"));
    let (distinct, dups, ooo) = (
        u(&tally, "distinct"),
        u(&tally, "duplicates"),
        u(&tally, "out_of_order"),
    );
    let context = format!(
        "hub killed at source progress {killed_at:?} (mid-stream: {mid_stream}); \
         every missing message reported to the source: {}\nsource: {fin}\nsink: {tally}{}",
        sent == distinct + failed,
        bus.dump()
    );
    eprintln!(
        "hub restart: killed at source progress {killed_at:?} (mid-stream: {mid_stream}); \
         sent {sent}, failed {failed}, distinct {distinct}, duplicates {dups}, out of order {ooo}"
    );
    assert_eq!((sent, errors), (N, 0), "{context}");
    assert_eq!(dups, 0, "duplicates reached the sink: {context}");
    assert_eq!(ooo, 0, "messages arrived out of order: {context}");
    assert_eq!(
        distinct, N,
        "messages were lost across the hub restart: {context}"
    );
}

fn spoofed_sender_is_refused(transport: &str) {
    let mut bus = Bus::new("spoof", transport);
    let hub = bus.start_hub();
    let target = bus.start_sink(
        "target4",
        &[
            "--expect",
            "1",
            "--linger-ms",
            "300",
            "--timeout-ms",
            "30000",
        ],
    );
    let victim = bus.start_sink("victim4", &["--timeout-ms", "30000"]);

    let spoof = bus.probe(
        "raw-spoof",
        &["raw-spoof", "mallory4", "victim4", "target4"],
    );
    bus.wait_exit(spoof, STEP_LIMIT);
    let fin = last_json(&bus.out(spoof), "closed").expect("raw-spoof's final line");
    assert_eq!(fin["register"], json!("Ok"), "{fin}");
    assert_eq!(
        fin["delivery_failed"],
        json!("NotOwner"),
        "{fin}{}",
        bus.dump()
    );
    bus.wait_line(
        hub,
        true,
        "the hub's log line about the spoof",
        STEP_LIMIT,
        |l| l.contains("does not own"),
    );

    // A legitimate message after it: once it has arrived, a forwarded spoof would have too.
    let src = bus.probe(
        "source legit4",
        &["source", "legit4", "target4", "1", "--timeout-ms", "20000"],
    );
    bus.wait_exit(src, Duration::from_secs(30));
    bus.wait_exit(target, Duration::from_secs(30));
    let tally = last_json(&bus.out(target), "distinct").expect("the target's tally");
    assert_eq!(
        tally["by_sender"],
        json!({"legit4": 1}),
        "{tally}{}",
        bus.dump()
    );
    assert_eq!(tally["events"], json!({"E": 1}), "{tally}");

    bus.term(victim);
    bus.wait_exit(victim, STEP_LIMIT);
    let tally = last_json(&bus.out(victim), "distinct").expect("the victim's tally");
    assert_eq!(
        (u(&tally, "received"), u(&tally, "delivery_errors")),
        (0, 0),
        "the victim heard of the spoof: {tally}"
    );
}

fn a_live_peers_id_cannot_be_registered(transport: &str) {
    let mut bus = Bus::new("taken", transport);
    bus.start_hub();
    let chart = bus.write("quiet.json", QUIET);
    let first = bus.start_machine(&chart, "dup5");
    let (status, _out, err) = bus.run(&["run", &chart, "--id", "dup5"]);
    assert!(
        !status.success(),
        "the second `run --id dup5` succeeded: {err}"
    );
    assert!(
        err.contains("'dup5'") && err.contains("already in use"),
        "the error should name the id: {err}"
    );
    let list = bus.ps();
    assert_eq!(
        ps_pid(&list, "dup5"),
        Some(bus.pid(first) as u64),
        "{list:?}"
    );
}

fn another_user_is_refused(transport: &str) {
    if rustix::process::getuid().as_raw() != 0 {
        eprintln!(
            "note: another_user_is_refused skipped: it needs root to run a child as uid 65534"
        );
        return;
    }
    let mut bus = Bus::new("uid", transport);
    let hub = bus.start_hub();
    // Make the socket reachable for uid 65534, so that only the hub's peer-credential check
    // can refuse it (the bus directory is 0700 and the socket 0600 otherwise).
    std::fs::set_permissions(&bus.dir, std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::set_permissions(bus.socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
    // A copy of the helper that uid 65534 can surely execute.
    let probe = bus.dir.join("bus_probe");
    std::fs::copy(probe_bin(), &probe).expect("copy bus_probe");
    std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o755)).unwrap();

    let mut cmd = bus.command(&probe, &["raw-connect"]);
    cmd.uid(65534).gid(65534);
    let p = bus.spawn("raw-connect as uid 65534", cmd);
    bus.wait_exit(p, STEP_LIMIT);
    let fin = last_json(&bus.out(p), "closed").expect("raw-connect's final line");
    let reject = last_json(&bus.out(p), "got").map(|v| v["got"].clone());
    assert_eq!(
        reject.as_ref().map(|r| r["code"].clone()),
        Some(json!("NotAllowed")),
        "{fin}{}",
        bus.dump()
    );
    assert_eq!(fin["frames"], json!(["reject"]), "{fin}");
    assert_eq!(fin["closed"], json!(true), "{fin}");
    bus.wait_line(
        hub,
        true,
        "the hub's log line about the refusal",
        STEP_LIMIT,
        |l| l.contains("refused a connection") && l.contains("not allowed"),
    );
}

fn malformed_frames_close_only_that_connection(transport: &str) {
    let mut bus = Bus::new("malformed", transport);
    let hub = bus.start_hub();
    let chart = bus.write("logger.json", LOGGER);
    let m = bus.start_machine(&chart, "m7");
    let mut pings = 0;
    let mut still_works = |bus: &mut Bus, after: &str| {
        let (status, _, err) = bus.run(&["send", "m7", "PING"]);
        assert!(
            status.success(),
            "send after {after} failed: {err}{}",
            bus.dump()
        );
        pings += 1;
        let want = pings;
        let count = |bus: &Bus| bus.out(m).iter().filter(|l| *l == "[m7] got PING").count();
        let end = Instant::now() + STEP_LIMIT;
        while count(bus) < want {
            assert!(
                Instant::now() < end,
                "m7 did not get PING #{want} after {after}{}",
                bus.dump()
            );
            std::thread::sleep(POLL);
        }
    };
    still_works(&mut bus, "nothing");
    let hub_lines = |bus: &Bus| -> Vec<String> {
        bus.err(hub)
            .into_iter()
            .filter(|l| l.contains("hub: link"))
            .collect()
    };

    // Closed at once: the hub can tell at the first frame.
    for (mode, reason) in [
        ("raw-garbage", "not a valid postcard frame"),
        ("raw-oversize", "exceeds the largest allowed"),
    ] {
        let before = hub_lines(&bus).len();
        let p = bus.probe(mode, &[mode, "--timeout-ms", "15000"]);
        bus.wait_exit(p, STEP_LIMIT);
        let fin = last_json(&bus.out(p), "closed").expect("the probe's final line");
        assert_eq!(
            fin["closed"],
            json!(true),
            "{mode}: the hub kept the link: {fin}"
        );
        assert_eq!(fin["frames"], json!([]), "{mode}: {fin}");
        let end = Instant::now() + STEP_LIMIT;
        loop {
            let lines = hub_lines(&bus);
            if lines[before..].iter().any(|l| l.contains(reason)) {
                break;
            }
            assert!(
                Instant::now() < end,
                "{mode}: no hub log line with '{reason}'{}",
                bus.dump()
            );
            std::thread::sleep(POLL);
        }
        still_works(&mut bus, mode);
    }

    // Closed by the hello timeout: both at once, and the bus works while they hang on.
    let before = hub_lines(&bus).len();
    let truncated = bus.probe("raw-truncated", &["raw-truncated", "--timeout-ms", "15000"]);
    let silent = bus.probe("raw-no-hello", &["raw-no-hello", "--timeout-ms", "15000"]);
    still_works(&mut bus, "opening a truncated and a silent connection");
    for p in [truncated, silent] {
        bus.wait_exit(p, STEP_LIMIT);
        let fin = last_json(&bus.out(p), "closed").expect("the probe's final line");
        assert_eq!(fin["closed"], json!(true), "the hub kept the link: {fin}");
        assert_eq!(fin["frames"], json!([]), "{fin}");
    }
    let end = Instant::now() + STEP_LIMIT;
    while hub_lines(&bus).len() < before + 2 {
        assert!(
            Instant::now() < end,
            "the hub logged no reasons{}",
            bus.dump()
        );
        std::thread::sleep(POLL);
    }
    let new = hub_lines(&bus)[before..].to_vec();
    assert!(
        new.iter().any(|l| l.contains("no hello in time")),
        "no log line for the silent connection: {new:?}"
    );
    still_works(&mut bus, "the truncated and silent connections");
}

/// A client that completes the handshake, sends part of a frame and closes its writing half
/// is closed by the hub (with a log line) well before the 30 s idle timeout.
fn truncated_frame_after_hello_is_closed(transport: &str) {
    let mut bus = Bus::new("truncated", transport);
    let hub = bus.start_hub();
    let p = bus.probe(
        "raw-truncated --after-hello",
        &["raw-truncated", "--after-hello", "--timeout-ms", "10000"],
    );
    bus.wait_exit(p, STEP_LIMIT);
    let fin = last_json(&bus.out(p), "closed").expect("the probe's final line");
    assert_eq!(fin["frames"], json!(["welcome"]), "{fin}");
    assert_eq!(
        fin["closed"],
        json!(true),
        "the hub kept the half-closed link for 10 s{}",
        bus.dump()
    );
    bus.wait_line(hub, true, "the hub's log line", STEP_LIMIT, |l| {
        l.contains("hub: link")
    });
}

fn thirty_two_clients(transport: &str) {
    const PAIRS: usize = 32;
    const N: u64 = 100;
    let mut bus = Bus::new("many", transport);
    bus.start_hub();
    let sinks: Vec<P> = (0..PAIRS)
        .map(|i| {
            bus.probe(
                &format!("sink k{i}"),
                &[
                    "sink",
                    &format!("k{i}"),
                    "--expect",
                    &N.to_string(),
                    "--timeout-ms",
                    "40000",
                ],
            )
        })
        .collect();
    for &s in &sinks {
        bus.wait_json(s, "a sink's ready line", Duration::from_secs(30), |v| {
            v["ready"] == json!(true)
        });
    }
    // Each source sends to the next pair's sink, so that every link carries both ways.
    let sources: Vec<P> = (0..PAIRS)
        .map(|i| {
            bus.probe(
                &format!("source s{i}"),
                &[
                    "source",
                    &format!("s{i}"),
                    &format!("k{}", (i + 1) % PAIRS),
                    &N.to_string(),
                    "--timeout-ms",
                    "40000",
                ],
            )
        })
        .collect();
    for &s in &sources {
        bus.wait_exit(s, Duration::from_secs(50));
        let fin = last_json(&bus.out(s), "sent").expect("a source's final line");
        assert_eq!(
            (u(&fin, "sent"), u(&fin, "failed"), u(&fin, "errors")),
            (N, 0, 0),
            "{fin}{}",
            bus.dump()
        );
        assert_eq!(fin["acknowledged"], json!(true), "{fin}");
    }
    for &s in &sinks {
        let status = bus.wait_exit(s, Duration::from_secs(30));
        let t = last_json(&bus.out(s), "distinct").expect("a sink's tally");
        assert!(status.success(), "{t}");
        assert_eq!(
            (
                u(&t, "distinct"),
                u(&t, "duplicates"),
                u(&t, "out_of_order")
            ),
            (N, 0, 0),
            "{t}"
        );
    }
}

fn stale_socket_is_replaced_and_a_live_hub_is_not(transport: &str) {
    let mut bus = Bus::new("stale", transport);
    let path = bus.socket();
    drop(std::os::unix::net::UnixListener::bind(&path).expect("bind a socket"));
    assert!(
        path.exists(),
        "the stale socket file should stay after its listener is gone"
    );

    let hub = bus.start_hub();
    assert_eq!(bus.ps(), Vec::<Value>::new(), "a fresh hub has no machines");

    let (status, _, err) = bus.run(&["hub"]);
    assert!(
        !status.success(),
        "a second hub started on a live bus: {err}"
    );
    assert!(err.contains("already serving"), "{err}");
    assert!(
        bus.try_status(hub).is_none(),
        "the first hub died{}",
        bus.dump()
    );
    assert_eq!(bus.ps(), Vec::<Value>::new(), "the first hub still serves");
}

/// The suite runs unchanged on every transport: each test once per transport.
macro_rules! on_every_transport {
    ($($test:ident),* $(,)?) => {
        mod unix_socket {
            $(#[test] fn $test() { super::$test("unix") })*
        }
        mod shared_memory {
            $(#[test] fn $test() { super::$test("shm") })*
        }
        mod named_pipes {
            $(#[test] fn $test() { super::$test("fifo") })*
        }
    };
}

on_every_transport!(
    basic_run_send_log_and_ps,
    sigkilled_client_leaves_the_registry_and_its_messages_fail,
    hub_restart_mid_stream_loses_nothing,
    spoofed_sender_is_refused,
    a_live_peers_id_cannot_be_registered,
    another_user_is_refused,
    malformed_frames_close_only_that_connection,
    truncated_frame_after_hello_is_closed,
    thirty_two_clients,
    stale_socket_is_replaced_and_a_live_hub_is_not
);

//! Process harness shared by the process tests (`cli/tests/bus.rs`, `cli/tests/hostile.rs`,
//! `cli/tests/guarantees.rs`, `cli/tests/load.rs`, `cli/tests/soak.rs`): a private bus directory per test
//! (over the transport the test chooses), children spawned with
//! their output collected line by line, and a guard that SIGKILLs every child still running
//! and removes the directory when the test ends (passing or not).
//!
//! The children are the `interstate` binary and the `bus_probe` test helper
//! (`examples/bus_probe/`, found as `<target>/<profile>/examples/bus_probe`; plain `cargo
//! test` builds it, `cargo build --example bus_probe` does when one test file is selected).

#![allow(dead_code)]

pub mod relay;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a step that should take milliseconds may take on a loaded machine.
pub const STEP_LIMIT: Duration = Duration::from_secs(20);
pub const POLL: Duration = Duration::from_millis(20);

/// The `interstate` binary under test: this build's, or the one `INTERSTATE_TEST_BIN`
/// names (with `examples/bus_probe` beside it), to run the same test on another build (the
/// load test's before-and-after comparisons).
pub fn interstate_bin() -> PathBuf {
    match std::env::var_os("INTERSTATE_TEST_BIN") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_BIN_EXE_interstate")),
    }
}

pub fn probe_bin() -> PathBuf {
    let bin = interstate_bin();
    let probe = bin
        .parent()
        .expect("the interstate binary is in a directory")
        .join("examples")
        .join("bus_probe");
    const HOW: &str = "build it with `cargo build --example bus_probe` first (plain `cargo \
                       test` builds every example)";
    assert!(
        probe.exists(),
        "the test helper {} is missing: {HOW}",
        probe.display()
    );
    // Its sources are the files of `examples/bus_probe/`: the newest of them counts.
    let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/bus_probe");
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let newest = std::fs::read_dir(&sources)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((mtime(&e.path())?, e.path())))
        .max();
    let other_build = std::env::var_os("INTERSTATE_TEST_BIN").is_some();
    if let (Some(built), Some((edited, source)), false) = (mtime(&probe), newest, other_build) {
        assert!(
            built >= edited,
            "the test helper {} is older than {}: {HOW}",
            probe.display(),
            source.display()
        );
    }
    probe
}

pub type Lines = Arc<Mutex<Vec<String>>>;

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

pub struct Proc {
    pub label: String,
    pub child: Child,
    pub out: Lines,
    pub err: Lines,
    pub status: Option<ExitStatus>,
}

/// A handle on a child of a [`Bus`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct P(pub usize);

/// A private bus: its directory, its name, and every process started on it.
pub struct Bus {
    pub dir: PathBuf,
    pub name: String,
    pub procs: Vec<Proc>,
    /// `unix`, `fifo` or `shm`, passed to every process as INTERSTATE_TRANSPORT.
    pub transport: String,
}

pub fn parse_json(line: &str) -> Option<Value> {
    serde_json::from_str::<Value>(line)
        .ok()
        .filter(Value::is_object)
}

/// The last JSON object line that has `key`.
pub fn last_json(lines: &[String], key: &str) -> Option<Value> {
    lines
        .iter()
        .rev()
        .filter_map(|l| parse_json(l))
        .find(|v| v.get(key).is_some())
}

pub fn u(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("'{key}' is not a number in {v}"))
}

/// A field of `/proc/PID/status` in kB (`VmHWM`, `VmRSS`).
pub fn proc_kb(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
}

impl Bus {
    /// A private bus over Unix sockets.
    pub fn new(test: &str) -> Bus {
        Bus::on(test, "unix")
    }

    /// A private bus over `transport` (`unix`, `fifo` or `shm`).
    pub fn on(test: &str, transport: &str) -> Bus {
        let dir =
            std::env::temp_dir().join(format!("istr-{}-{test}-{transport}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .expect("create the test's bus directory");
        Bus {
            dir,
            name: format!("r-{test}"),
            procs: Vec::new(),
            transport: transport.to_string(),
        }
    }

    /// The bus socket's path.
    pub fn socket(&self) -> PathBuf {
        self.dir.join(format!("{}.sock", self.name))
    }

    pub fn path(&self, file: &str) -> String {
        self.dir
            .join(file)
            .to_str()
            .expect("UTF-8 temp path")
            .to_string()
    }

    pub fn write(&self, file: &str, contents: &str) -> String {
        let p = self.path(file);
        std::fs::write(&p, contents).expect("write a test file");
        p
    }

    pub fn command(&self, program: &Path, args: &[&str]) -> Command {
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

    pub fn spawn(&mut self, label: &str, mut cmd: Command) -> P {
        // A program copied just before (a test's own copy of a helper) can be "busy" for a
        // moment: a process another test thread forked meanwhile may still hold the copy's
        // write descriptor until it execs. Try again for a while.
        let mut tries = 0;
        let mut child = loop {
            match cmd.spawn() {
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 200 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("start {label} ({cmd:?}): {e}"),
                Ok(child) => break child,
            }
        };
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

    pub fn interstate(&mut self, label: &str, args: &[&str]) -> P {
        let cmd = self.command(&interstate_bin(), args);
        self.spawn(label, cmd)
    }

    pub fn probe(&mut self, label: &str, args: &[&str]) -> P {
        let cmd = self.command(&probe_bin(), args);
        self.spawn(label, cmd)
    }

    pub fn out(&self, p: P) -> Vec<String> {
        self.procs[p.0].out.lock().unwrap().clone()
    }

    pub fn err(&self, p: P) -> Vec<String> {
        self.procs[p.0].err.lock().unwrap().clone()
    }

    pub fn pid(&self, p: P) -> u32 {
        self.procs[p.0].child.id()
    }

    /// Every process's output (the last lines of each), for failure messages.
    pub fn dump(&self) -> String {
        let mut s = String::new();
        for (i, p) in self.procs.iter().enumerate() {
            let out = p.out.lock().unwrap();
            let err = p.err.lock().unwrap();
            let tail = |v: &[String]| v[v.len().saturating_sub(12)..].join("\n    ");
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

    pub fn try_status(&mut self, p: P) -> Option<ExitStatus> {
        let proc = &mut self.procs[p.0];
        if proc.status.is_none() {
            proc.status = proc.child.try_wait().expect("poll a child");
        }
        proc.status
    }

    /// Waits for the child to exit, then (briefly) for its output to be read to the end.
    pub fn wait_exit(&mut self, p: P, limit: Duration) -> ExitStatus {
        let end = Instant::now() + limit;
        loop {
            if let Some(s) = self.try_status(p) {
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

    pub fn kill(&mut self, p: P) {
        let proc = &mut self.procs[p.0];
        if proc.status.is_none() {
            let _ = proc.child.kill();
            proc.status = proc.child.wait().ok();
        }
    }

    pub fn signal(&mut self, p: P, sig: rustix::process::Signal) {
        if self.try_status(p).is_none() {
            let pid = rustix::process::Pid::from_raw(self.pid(p) as i32).expect("a child's pid");
            let _ = rustix::process::kill_process(pid, sig);
        }
    }

    pub fn term(&mut self, p: P) {
        self.signal(p, rustix::process::Signal::TERM);
    }

    /// Waits until a line of the child's stdout (or stderr) satisfies `pred`; returns it.
    pub fn wait_line(
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

    /// Waits until a `bus_probe source` has reported sending at least `n` messages.
    pub fn wait_progress(&mut self, p: P, n: u64) {
        self.wait_json(p, &format!("progress to {n}"), STEP_LIMIT, |v| {
            v["progress"].as_u64().is_some_and(|sent| sent >= n)
        });
    }

    /// Waits until a JSON line of the child's stdout satisfies `pred`; returns it.
    pub fn wait_json(
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

    /// A hub: `bus_probe hub` with the node options given (`--idle-timeout-ms`, ...), whose
    /// log lines are on its stderr.
    pub fn start_probe_hub(&mut self, options: &[&str]) -> P {
        let mut args = vec!["hub"];
        args.extend_from_slice(options);
        let hub = self.probe("hub", &args);
        self.wait_json(hub, "the hub's ready line", STEP_LIMIT, |v| {
            v["ready"] == Value::Bool(true)
        });
        hub
    }

    /// `interstate hub`.
    pub fn start_hub(&mut self) -> P {
        let hub = self.interstate("hub", &["hub"]);
        self.wait_line(hub, true, "the hub's start line", STEP_LIMIT, |l| {
            l.contains("hub serving bus")
        });
        hub
    }

    /// A `bus_probe` mode that prints a ready line (`sink`, `load`, `soak-sink`, ...).
    pub fn start_ready(&mut self, label: &str, args: &[&str]) -> P {
        let p = self.probe(label, args);
        self.wait_json(p, &format!("{label}'s ready line"), STEP_LIMIT, |v| {
            v["ready"] == Value::Bool(true)
        });
        p
    }

    /// The hub's log lines (`hub: ...`) so far.
    pub fn hub_lines(&self, hub: P) -> Vec<String> {
        self.err(hub)
            .into_iter()
            .filter(|l| l.contains("hub: "))
            .collect()
    }
}

impl Bus {
    /// Runs `interstate ARGS --bus NAME` to completion: (status, stdout, stderr).
    pub fn run(&mut self, args: &[&str]) -> (ExitStatus, String, String) {
        let p = self.interstate(&format!("interstate {}", args.join(" ")), args);
        let status = self.wait_exit(p, STEP_LIMIT);
        (status, self.out(p).join("\n"), self.err(p).join("\n"))
    }

    /// `interstate run CHART --id ID --client`, once it has joined.
    pub fn start_machine(&mut self, chart: &str, id: &str) -> P {
        let p = self.interstate(
            &format!("run {id}"),
            &["run", chart, "--id", id, "--client"],
        );
        self.wait_line(p, true, "the machine's join line", STEP_LIMIT, |l| {
            l.contains("joined bus")
        });
        p
    }

    /// `bus_probe sink ID EXTRA...`, once it is ready.
    pub fn start_sink(&mut self, id: &str, extra: &[&str]) -> P {
        let mut args = vec!["sink", id];
        args.extend_from_slice(extra);
        let p = self.probe(&format!("sink {id}"), &args);
        self.wait_json(p, "the sink's ready line", STEP_LIMIT, |v| {
            v["ready"] == Value::Bool(true)
        });
        p
    }

    /// `interstate ps --json`.
    pub fn ps(&mut self) -> Vec<Value> {
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
    pub fn wait_ps(&mut self, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
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

/// The pid `interstate ps --json` shows for `machine`.
pub fn ps_pid(list: &[Value], machine: &str) -> Option<u64> {
    list.iter()
        .find(|e| e["machine"] == machine)
        .and_then(|e| e["pid"].as_u64())
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

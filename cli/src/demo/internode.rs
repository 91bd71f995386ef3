//! `interstate demo --internode`: the seed's pipeline split over two buses, standing for two
//! hosts, joined through an MQTT broker the demo starts itself.
//!
//! - a private mosquitto on a free loopback port with its own configuration
//!   ([`crate::mosquitto`]);
//! - **host-b**: bus `demo-<pid>-b` in its own directory, run by a child `interstate up`
//!   from a manifest the demo writes: `interstate bridge --node host-b`, storage and
//!   processor; storage is its main process, so host-b stops when storage is told to;
//! - **host-a**: bus `demo-<pid>-a` in another directory, served and supervised by this
//!   process: `interstate bridge --node host-a`, which is ready once processor and storage
//!   of host-b are in host-a's registry through it, then the monitor and the ingester.
//!
//! Before host-a starts, the demo joins host-b's bus and prints where host-b's machines live
//! (their pids); host-a's supervisor prints the pids of its processes, and its monitor shows
//! the messages crossing host-a's hub to and from host-b's machines. At the end the store
//! (written by host-b's storage) is checked as in the one-bus demo.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use interstate_platform::supervisor::{ChildSpec, Readiness, Restart};

use crate::cmd::app::{fmt_duration, supervise, DemoOptions};
use crate::cmd::Level;
use crate::mosquitto::Mosquitto;
use crate::output;
use interstate::bus::{Node, NodeConfig, Role};

/// Stops and reaps a child process on drop (host-b's `interstate up`).
struct HostB(Child);

impl Drop for HostB {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            if let Some(pid) = rustix::process::Pid::from_raw(self.0.id() as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            let end = Instant::now() + Duration::from_secs(5);
            while Instant::now() < end && matches!(self.0.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

fn toml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

fn host_b_manifest(exe: &Path, bus: &str, url: &str, store: &Path) -> String {
    let exe = toml_str(&exe.to_string_lossy());
    let store = toml_str(&store.to_string_lossy());
    let url = toml_str(url);
    format!(
        r#"bus = {bus}

[supervisor]
grace = "3s"
ready_timeout = "15s"

[[process]]
name = "bridge-b"
command = {exe}
args = ["bridge", "--mqtt", {url}, "--node", "host-b"]
restart = "on-failure"

[[process]]
name = "storage"
command = {exe}
args = ["demo", "--role", "storage", "--store", {store}]
provides = ["storage"]
restart = "never"
main = true

[[process]]
name = "processor"
command = {exe}
args = ["demo", "--role", "processor"]
provides = ["processor"]
after = ["storage"]
restart = "never"
"#,
        bus = toml_str(bus)
    )
}

/// Joins host-b's bus and waits until storage and processor are registered: their pids.
fn where_on_host_b(dir: &Path, bus: &str) -> Result<Vec<(String, u32)>, String> {
    let sock = interstate::bus::busdir::socket_path(dir, bus);
    let end = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        if Instant::now() >= end {
            return Err("host-b's bus did not come up within 20 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut config = NodeConfig::new(bus);
    config.dir = dir.to_path_buf();
    config.role = Role::Client;
    let mut node = Node::new(config).map_err(|e| e.to_string())?;
    node.set_logger(|_| {});
    let ids = ["storage", "processor"];
    let up = node
        .run_until(Duration::from_secs(20), |n| {
            ids.iter().all(|id| n.registry().contains(id))
        })
        .map_err(|e| e.to_string())?;
    if !up {
        return Err("host-b's storage and processor did not register within 20 s".into());
    }
    let found = ids
        .iter()
        .filter_map(|id| node.registry().get(id).map(|e| (id.to_string(), e.pid)))
        .collect();
    node.shutdown();
    Ok(found)
}

/// `interstate demo --internode`: returns the exit status.
pub fn demo(opts: &DemoOptions) -> Result<u8, String> {
    use std::os::unix::fs::DirBuilderExt;
    let start = Instant::now();
    let pid = std::process::id();
    let root = std::env::temp_dir().join(format!("interstate-demo-internode-{pid}"));
    let _ = std::fs::remove_dir_all(&root);
    let (dir_a, dir_b) = (root.join("host-a"), root.join("host-b"));
    for d in [&dir_a, &dir_b] {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(d)
            .map_err(|e| format!("creating {}: {e}", d.display()))?;
    }
    let _cleanup = RemoveDir(root.clone(), opts.keep);
    let say = |text: std::fmt::Arguments<'_>| {
        if opts.level > Level::Quiet {
            let _ = output::line(text);
        }
    };
    let input = root.join("input");
    std::fs::create_dir(&input).map_err(|e| format!("{}: {e}", input.display()))?;
    for (name, text) in crate::demo::SAMPLES {
        std::fs::write(input.join(name), text).map_err(|e| format!("{name}: {e}"))?;
    }
    let store = dir_b.join("store.jsonl");
    let exe = std::env::current_exe().map_err(|e| format!("finding this program: {e}"))?;
    let broker = Mosquitto::start(&root.join("broker"), "")?;
    let url = broker.url(false);
    let (bus_a, bus_b) = (format!("demo-{pid}-a"), format!("demo-{pid}-b"));
    say(format_args!(
        "demo: the seed's pipeline split over two buses standing for two hosts, joined through MQTT:"
    ));
    say(format_args!(
        "demo:   host-a (bus '{bus_a}'): ingester, monitor, bridge-a"
    ));
    say(format_args!(
        "demo:   host-b (bus '{bus_b}'): processor, storage, bridge-b"
    ));
    say(format_args!(
        "demo:   broker: mosquitto (pid {}) at {url}, started for the demo",
        broker.pid()
    ));

    // host-b: its own `interstate up`, its lines prefixed with the host.
    let manifest_b = root.join("host-b.toml");
    std::fs::write(&manifest_b, host_b_manifest(&exe, &bus_b, &url, &store))
        .map_err(|e| format!("{}: {e}", manifest_b.display()))?;
    let mut child = Command::new(&exe)
        .args(["up"])
        .arg(&manifest_b)
        .arg("--plain")
        .env("INTERSTATE_DIR", &dir_b)
        .env_remove("INTERSTATE_BUS")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting host-b ({}): {e}", exe.display()))?;
    let show = opts.level > Level::Quiet;
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if show {
                    let _ = output::line(format_args!("host-b {line}"));
                }
            }
        });
    }
    let mut host_b = HostB(child);
    for (id, pid) in where_on_host_b(&dir_b, &bus_b)? {
        say(format_args!(
            "demo: '{id}' lives on host-b, pid {pid}; host-a reaches it through its bridge"
        ));
    }

    // host-a: served and supervised here.
    let manifest_a = host_a_manifest(&exe, &bus_a, &url, &input, opts.pace);
    let mut config = NodeConfig::new(&bus_a);
    config.dir = dir_a.clone();
    config.role = Role::Hub;
    let outputs = opts.level > Level::Quiet;
    let outcome = supervise(
        manifest_a, config, "host-a", opts.plain, opts.level, outputs,
    )?;
    let code = outcome.exit_code();

    // host-b stops when its storage got STOP from the ingester; give it a moment.
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end && matches!(host_b.0.try_wait(), Ok(None)) {
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(host_b);
    let records = crate::demo::read_store(&store)?;
    let words: u64 = records.values().map(|r| r.words).sum();
    let stored_by: std::collections::BTreeSet<u32> =
        records.values().map(|r| r.stored_by).collect();
    say(format_args!(
        "demo: host-b's store holds {} records, {words} words, written by pid {:?} (host-b's storage)",
        records.len(),
        stored_by
    ));
    let complete = records.len() == crate::demo::SAMPLES.len();
    let _ = output::line(format_args!(
        "demo: {} in {}{}",
        if code == 0 && complete {
            "done"
        } else {
            "FAILED"
        },
        fmt_duration(start.elapsed()),
        if opts.keep {
            format!("; files kept in {}", root.display())
        } else {
            "; the buses, the broker and their files are removed".to_string()
        }
    ));
    drop(broker);
    Ok(if code == 0 && !complete { 1 } else { code })
}

fn host_a_manifest(
    exe: &Path,
    bus: &str,
    url: &str,
    input: &Path,
    pace: u64,
) -> crate::manifest::Manifest {
    let mut m = crate::demo::manifest(exe, bus, input, Path::new("/dev/null"), pace);
    // host-a runs the monitor and the ingester; processor and storage are host-b's, reached
    // through the bridge, which is ready once it has made them visible on this bus.
    m.processes
        .retain(|p| p.name == "monitor" || p.name == "ingester");
    let bridge = ChildSpec::new("bridge-a", exe)
        .args(["bridge", "--mqtt", url, "--node", "host-a"])
        .provides("processor")
        .provides("storage")
        .readiness(Readiness::Machines)
        .restart(Restart::OnFailure);
    m.processes.insert(0, bridge);
    for p in &mut m.processes {
        if p.name == "ingester" {
            p.after.retain(|a| a != "processor" && a != "storage");
            p.after.push("bridge-a".into());
        }
    }
    m
}

/// Removes the demo's directory at the end, unless `--keep`.
struct RemoveDir(PathBuf, bool);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        if !self.1 {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

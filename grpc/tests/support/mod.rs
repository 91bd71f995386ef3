//! The gateway tests' harness: a private bus directory per test, the `interstate` hub and
//! JSON machines (`interstate run`) and the gateway as child processes, each killed by its
//! pid and the directory removed when the test ends, passing or not.
//!
//! The `interstate` binary is found beside this test's target directory
//! (`<target>/<profile>/interstate`): `cargo test --workspace` builds it; when this crate's
//! tests run alone, `cargo build -p interstate-cli` first.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use interstate_grpc::pb::bus_client::BusClient;
use tonic::transport::Channel;

/// How long a step that takes milliseconds may take on a loaded machine.
pub const STEP_LIMIT: Duration = Duration::from_secs(20);

pub fn interstate_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from <target>/<profile>/deps")
        .join("interstate");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p interstate-cli` (cargo test --workspace does)",
        bin.display()
    );
    bin
}

pub fn gateway_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_interstate-grpc"))
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
}

/// A private bus with its hub running.
pub struct Bus {
    pub dir: PathBuf,
    pub name: String,
    pub procs: Vec<Proc>,
}

/// Waits until `done` or [`STEP_LIMIT`]; panics naming `what` then.
pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let end = Instant::now() + STEP_LIMIT;
    while !done() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Bus {
    /// A private directory and bus for `test`, with its hub started.
    pub fn start(test: &str) -> Bus {
        let dir = std::env::temp_dir().join(format!("istr-grpc-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .expect("create the test's bus directory");
        let mut bus = Bus {
            dir,
            name: format!("g-{test}"),
            procs: Vec::new(),
        };
        bus.spawn("hub", &interstate_bin(), &["hub"]);
        let socket = bus.dir.join(format!("{}.sock", bus.name));
        wait_for("the hub's socket", || {
            std::os::unix::net::UnixStream::connect(&socket).is_ok()
        });
        bus
    }

    /// Starts `program` with this bus in its environment; its output is collected.
    pub fn spawn(&mut self, label: &str, program: &Path, args: &[&str]) -> usize {
        let mut child = Command::new(program)
            .args(args)
            .env("INTERSTATE_DIR", &self.dir)
            .env("INTERSTATE_BUS", &self.name)
            .env_remove("INTERSTATE_TRANSPORT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
        let out = collect(child.stdout.take().expect("piped stdout"));
        let err = collect(child.stderr.take().expect("piped stderr"));
        self.procs.push(Proc {
            label: label.into(),
            child,
            out,
            err,
        });
        self.procs.len() - 1
    }

    /// `interstate run <chart> --id <id>` (a chart of `grpc/tests/charts/`).
    pub fn run_chart(&mut self, chart: &str, id: &str) -> usize {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/charts")
            .join(chart);
        let path = path.to_str().expect("a UTF-8 path").to_string();
        self.spawn(id, &interstate_bin(), &["run", &path, "--id", id])
    }

    /// Starts the gateway; returns its socket once it accepts connections.
    pub fn gateway(&mut self) -> PathBuf {
        self.spawn("gateway", &gateway_bin(), &[]);
        let socket = self.dir.join(format!("{}.grpc.sock", self.name));
        wait_for("the gateway's socket", || {
            std::os::unix::net::UnixStream::connect(&socket).is_ok()
        });
        socket
    }

    /// The stdout lines of process `i` so far.
    pub fn out(&self, i: usize) -> Vec<String> {
        self.procs[i].out.lock().unwrap().clone()
    }

    /// Everything each process said, for a failing test's message.
    pub fn dump(&self) -> String {
        let mut s = String::new();
        for p in &self.procs {
            s += &format!(
                "--- {} stdout:\n{}\n--- {} stderr:\n{}\n",
                p.label,
                p.out.lock().unwrap().join("\n"),
                p.label,
                p.err.lock().unwrap().join("\n")
            );
        }
        s
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        // Each child by its own pid, newest first (the hub last).
        for p in self.procs.iter_mut().rev() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A client of the gateway at `socket`.
pub async fn client(socket: &Path) -> BusClient<Channel> {
    interstate_grpc::client::connect_unix(socket.to_path_buf())
        .await
        .expect("connect to the gateway")
}

/// Waits (asynchronously) until ListMachines shows `id`.
pub async fn wait_machine(client: &mut BusClient<Channel>, id: &str) {
    let end = Instant::now() + STEP_LIMIT;
    loop {
        let list = client
            .list_machines(interstate_grpc::pb::ListMachinesRequest {})
            .await
            .expect("ListMachines")
            .into_inner();
        if list.machines.iter().any(|m| m.id == id) {
            return;
        }
        assert!(
            Instant::now() < end,
            "timed out waiting for machine '{id}' on the bus"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

//! `interstate bench`: bus latency and throughput between machines in two processes, per
//! transport, each beside a raw baseline measured in the same run.
//!
//! For every transport and payload size (64 bytes and 4 KiB by default):
//!
//! - **raw**: the floor for that transport, two processes, no event loop, no framing logic,
//!   no statecharts:
//!   - Unix sockets: a socket pair, ping-pong with blocking `read`/`write`, and a one-way
//!     stream of length-prefixed messages written 256 per `write`;
//!   - named pipes: the same over two `mkfifo` pipes (one per direction);
//!   - shared memory: a memfd mapped by both processes; the ping-pong copies the payload into
//!     the shared region and publishes a sequence number the other side busy-spins on; the
//!     stream pushes length-prefixed messages, 256 at a time, through the transport's own
//!     [`Ring`] (1 MiB, as the transport's default), the consumer popping with a busy spin.
//! - **raw relay** (sockets and pipes): the raw ping-pong and stream through a third process
//!   forwarding bytes with blocking reads and writes: the floor for any path through a hub.
//! - **direct**: this process serves the bus (hub role, a port as the sender) and a child
//!   process, a client over the transport measured, hosts a machine that answers `PING` with
//!   `PONG` and counts `DATA`. Shared memory is measured once per wait strategy (both sides
//!   use it).
//! - **hub**: the same two endpoints as clients of a separate `interstate hub` process.
//!
//! Each message crosses the real path: encode, outstanding buffer, link queue, transport,
//! decode, duplicate check, the machine's step and action, acknowledgement.
//!
//! Every path is a [`Session`]: a live pair of processes that can do one round trip or send
//! `n` messages one way on demand. The command measures sessions with plain loops;
//! `cli/benches/transport.rs` drives the same sessions from criterion.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration as StdDuration, Instant as StdInstant};

use interstate_platform::transport::ring::{Ring, HEADER};
use serde_json::{json, Value};

use interstate::bus::{Node, NodeConfig, Role, Transport, WaitStrategy};
use interstate::Behaviors;

/// The transports `interstate bench` knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Unix domain stream sockets.
    Unix,
    /// Named pipes.
    Fifo,
    /// Shared memory.
    Shm,
}

impl Kind {
    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Unix => "unix",
            Kind::Fifo => "fifo",
            Kind::Shm => "shm",
        }
    }
    /// Parses `unix`, `fifo`, `shm` or `all`.
    pub fn parse_list(s: &str) -> Result<Vec<Kind>, String> {
        match s {
            "unix" => Ok(vec![Kind::Unix]),
            "fifo" => Ok(vec![Kind::Fifo]),
            "shm" => Ok(vec![Kind::Shm]),
            "all" => Ok(vec![Kind::Unix, Kind::Fifo, Kind::Shm]),
            _ => Err(format!(
                "unknown transport '{s}' (expected unix, fifo, shm or all)"
            )),
        }
    }
}

/// How a shared-memory node waits, as `--wait` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// `busy`: [`WaitStrategy::BusySpin`].
    Busy,
    /// `spin`: [`WaitStrategy::SpinThenPark`] for 50 µs (the transport's default).
    Spin,
    /// `park`: [`WaitStrategy::Park`].
    Park,
}

impl Wait {
    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Wait::Busy => "busy",
            Wait::Spin => "spin",
            Wait::Park => "park",
        }
    }
    /// Parses `busy`, `spin` or `park`.
    pub fn parse(s: &str) -> Result<Wait, String> {
        match s {
            "busy" => Ok(Wait::Busy),
            "spin" => Ok(Wait::Spin),
            "park" => Ok(Wait::Park),
            _ => Err(format!(
                "unknown wait strategy '{s}' (expected busy, spin or park)"
            )),
        }
    }
    /// The node setting.
    pub fn strategy(self) -> WaitStrategy {
        match self {
            Wait::Busy => WaitStrategy::BusySpin,
            Wait::Spin => WaitStrategy::SpinThenPark(SPIN),
            Wait::Park => WaitStrategy::Park,
        }
    }
}

/// How long `spin` spins before parking: the transport's default.
const SPIN: StdDuration = StdDuration::from_micros(50);

/// The transport of a node in a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeTransport {
    /// Unix sockets.
    Unix,
    /// Named pipes.
    Fifo,
    /// Shared memory, waiting this way.
    Shm(Wait),
}

impl NodeTransport {
    fn spec(self) -> String {
        match self {
            NodeTransport::Unix => "unix".into(),
            NodeTransport::Fifo => "fifo".into(),
            NodeTransport::Shm(w) => format!("shm-{}", w.name()),
        }
    }
    fn from_spec(s: &str) -> Result<NodeTransport, String> {
        match s {
            "unix" => Ok(NodeTransport::Unix),
            "fifo" => Ok(NodeTransport::Fifo),
            _ => match s.strip_prefix("shm-") {
                Some(w) => Ok(NodeTransport::Shm(Wait::parse(w)?)),
                None => Err(format!("unknown node transport '{s}'")),
            },
        }
    }
    /// The node setting, or why this build cannot measure it.
    pub fn transport(self) -> Result<Transport, String> {
        match self {
            NodeTransport::Unix => Ok(Transport::UnixSocket),
            NodeTransport::Fifo => Ok(Transport::Fifo),
            NodeTransport::Shm(w) => Ok(Transport::SharedMemory {
                ring: interstate_platform::transport::shm::DEFAULT_RING,
                wait: w.strategy(),
            }),
        }
    }
    /// `INTERSTATE_TRANSPORT` for a separate hub process.
    fn env(self) -> &'static str {
        match self {
            NodeTransport::Unix => "unix",
            NodeTransport::Fifo => "fifo",
            NodeTransport::Shm(_) => "shm",
        }
    }
}

/// Benchmark settings.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Round trips measured per path (after a warm-up of a tenth as many).
    pub round_trips: usize,
    /// Messages in each one-way throughput run with 64-byte payloads; larger payloads send
    /// proportionally fewer (`messages * 64 / payload`, at least a tenth of `messages`).
    pub messages: usize,
    /// Payload sizes, each measured on every path.
    pub payloads: Vec<usize>,
    /// Wait strategies of the shared-memory node paths.
    pub waits: Vec<Wait>,
    /// Also measure the paths through a separate hub process (and their raw relays).
    pub via_hub: bool,
    /// Where the processes run.
    pub pin: Pin,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            round_trips: 20_000,
            messages: 1_000_000,
            payloads: vec![64, 4096],
            waits: vec![Wait::Busy, Wait::Spin],
            via_hub: true,
            pin: Pin::Split,
        }
    }
}

impl BenchOptions {
    fn messages_for(&self, payload: usize) -> usize {
        let scaled = self.messages.saturating_mul(64) / payload.max(64);
        scaled.max(self.messages / 10).max(1)
    }
}

/// The largest payload the benchmark sends: the echo machine answers with the same payload,
/// and a hosted machine's outbox holds 16 KiB of names and payloads
/// ([`interstate_platform::node::HostedMachine`]).
pub const MAX_PAYLOAD: usize = 16 * 1024 - 64;

/// Latency and throughput of one path.
#[derive(Clone, Debug, Default)]
pub struct PathResult {
    /// Round-trip latency percentiles in microseconds: p50, p99, p99.9.
    pub rtt_us: [f64; 3],
    /// One-way messages per second.
    pub throughput: f64,
}

impl PathResult {
    fn json(&self) -> Value {
        json!({"rtt_p50_us": round2(self.rtt_us[0]), "rtt_p99_us": round2(self.rtt_us[1]), "rtt_p999_us": round2(self.rtt_us[2]), "msgs_per_s": self.throughput.round()})
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn percentiles(mut ns: Vec<u64>) -> [f64; 3] {
    ns.sort_unstable();
    let at = |q: f64| {
        ns.get(((ns.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    [at(0.50), at(0.99), at(0.999)]
}

/// A live path between this process and its peers.
pub trait Session {
    /// One round trip: a message there and the answer back.
    fn round_trip(&mut self) -> Result<(), String>;
    /// Sends `n` messages one way and returns once the receiver has them all: the time taken.
    fn one_way(&mut self, n: usize) -> Result<StdDuration, String>;
}

/// Measures a session: `round_trips` round trips after a tenth as many for warm-up, then
/// `messages` one way.
pub fn measure(
    s: &mut dyn Session,
    round_trips: usize,
    messages: usize,
) -> Result<PathResult, String> {
    let mut rtts = Vec::with_capacity(round_trips);
    for i in 0..round_trips + round_trips / 10 {
        let t = StdInstant::now();
        s.round_trip()?;
        if i >= round_trips / 10 {
            rtts.push(t.elapsed().as_nanos() as u64);
        }
    }
    let secs = s.one_way(messages)?.as_secs_f64();
    Ok(PathResult {
        rtt_us: percentiles(rtts),
        throughput: messages as f64 / secs,
    })
}

const ECHO_CHART: &str = r#"{
  "id": "bench-echo",
  "initial": "on",
  "states": {
    "on": { "on": { "PING": { "actions": "pong" }, "DATA": { "actions": "count" }, "EXPECT": { "actions": "expect" }, "QUIT": "off" } },
    "off": { "type": "final" }
  }
}"#;

/// Kills a child on drop.
pub struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Where processes run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pin {
    /// Wherever the scheduler puts them.
    None,
    /// This process on one CPU, every peer (echo, relay, hub) on another: no two spinning
    /// processes share a core, and every message crosses between cores.
    Split,
    /// Every process on one CPU: blocking transports hand over by a context switch, without
    /// waking another core (useless for spinning).
    Same,
}

impl Pin {
    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Pin::None => "none",
            Pin::Split => "split",
            Pin::Same => "same",
        }
    }
    /// Parses `none`, `split` or `same`.
    pub fn parse(s: &str) -> Result<Pin, String> {
        match s {
            "none" => Ok(Pin::None),
            "split" => Ok(Pin::Split),
            "same" => Ok(Pin::Same),
            _ => Err(format!(
                "unknown placement '{s}' (expected none, split or same)"
            )),
        }
    }
}

/// Starts peer processes: an `interstate` binary, maybe on a given CPU.
#[derive(Clone, Debug)]
pub struct Peers {
    /// The `interstate` binary.
    pub exe: PathBuf,
    /// The CPU the peers are pinned to.
    pub cpu: Option<usize>,
}

impl Peers {
    /// Peers from `exe`, placed by `pin`; pins this process too (until [`Placement`] is
    /// dropped). Falls back to no pinning with fewer than two CPUs for `Split`.
    pub fn new(exe: PathBuf, pin: Pin) -> Result<(Peers, Placement), String> {
        let before = rustix::thread::sched_getaffinity(None)
            .map_err(|e| format!("reading the CPU affinity: {e}"))?;
        let cpus: Vec<usize> = (0..rustix::thread::CpuSet::MAX_CPU)
            .filter(|&c| before.is_set(c))
            .collect();
        let (mine, theirs) = match (pin, cpus.as_slice()) {
            (Pin::Split, [a, b, ..]) => (Some(*a), Some(*b)),
            (Pin::Same, [a, ..]) => (Some(*a), Some(*a)),
            _ => (None, None),
        };
        if let Some(c) = mine {
            set_cpu(None, c)?;
        }
        Ok((
            Peers { exe, cpu: theirs },
            Placement {
                before,
                changed: mine.is_some(),
                cpus: (mine, theirs),
            },
        ))
    }

    /// Starts the binary with `args`.
    fn spawn(&self, args: &[&str], env: &[(&str, &str)]) -> Result<ChildGuard, String> {
        let mut cmd = Command::new(&self.exe);
        cmd.args(args).stdin(Stdio::null());
        if args.first() == Some(&"hub") {
            // Its "serving bus" line would only interleave with the report.
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .map(ChildGuard)
            .map_err(|e| format!("starting a benchmark peer ({}): {e}", self.exe.display()))?;
        if let Some(c) = self.cpu {
            set_cpu(rustix::process::Pid::from_raw(child.0.id() as i32), c)?;
        }
        Ok(child)
    }
}

fn set_cpu(pid: Option<rustix::process::Pid>, cpu: usize) -> Result<(), String> {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(pid, &set).map_err(|e| format!("pinning to CPU {cpu}: {e}"))
}

/// This process's CPU placement for a run; restores the affinity it had on drop.
pub struct Placement {
    before: rustix::thread::CpuSet,
    changed: bool,
    /// (this process's CPU, the peers' CPU).
    pub cpus: (Option<usize>, Option<usize>),
}

impl Drop for Placement {
    fn drop(&mut self) {
        if self.changed {
            let _ = rustix::thread::sched_setaffinity(None, &self.before);
        }
    }
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) -> Result<(), String> {
    let t = StdInstant::now();
    while !ready() {
        if t.elapsed() > StdDuration::from_secs(10) {
            return Err(format!("{what} did not start within 10 s"));
        }
        std::thread::sleep(StdDuration::from_millis(2));
    }
    Ok(())
}

fn io_err(what: &'static str) -> impl Fn(std::io::Error) -> String {
    move |e| format!("{what}: {e}")
}

// ----- raw byte streams: sockets and pipes -----

/// The two directions of a raw endpoint.
type Duplex = (Box<dyn Read>, Box<dyn Write>);

/// Where a raw endpoint's two directions come from.
///
/// - `unix:PATH`: connects to a listening socket;
/// - `unix-listen:PATH`: binds `PATH` and accepts one connection;
/// - `fifo-in:A:B`: opens pipe `A` to read, then pipe `B` to write (the side answering);
/// - `fifo-out:A:B`: opens pipe `A` to write, then `B` to read (the side starting).
///
/// Opening a pipe blocks until its other end is opened, so both sides open their pair in the
/// same order.
fn open_duplex(spec: &str) -> Result<Duplex, String> {
    let (kind, rest) = spec.split_once(':').ok_or("bad endpoint")?;
    match kind {
        "unix" => {
            let s = UnixStream::connect(rest).map_err(io_err("connecting"))?;
            let w = s.try_clone().map_err(io_err("socket"))?;
            Ok((Box::new(s), Box::new(w)))
        }
        "unix-listen" => {
            let l = UnixListener::bind(rest).map_err(io_err("binding"))?;
            let (s, _) = l.accept().map_err(io_err("accepting"))?;
            let w = s.try_clone().map_err(io_err("socket"))?;
            Ok((Box::new(s), Box::new(w)))
        }
        "fifo-in" | "fifo-out" => {
            let (a, b) = rest.split_once(':').ok_or("bad fifo endpoint")?;
            let read = |p: &str| OpenOptions::new().read(true).open(p);
            let write = |p: &str| OpenOptions::new().write(true).open(p);
            if kind == "fifo-in" {
                let r = read(a).map_err(io_err("opening a pipe"))?;
                let w = write(b).map_err(io_err("opening a pipe"))?;
                Ok((Box::new(r), Box::new(w)))
            } else {
                let w = write(a).map_err(io_err("opening a pipe"))?;
                let r = read(b).map_err(io_err("opening a pipe"))?;
                Ok((Box::new(r), Box::new(w)))
            }
        }
        _ => Err(format!("unknown endpoint kind '{kind}'")),
    }
}

fn mkfifo(path: &Path) -> Result<(), String> {
    let _ = std::fs::remove_file(path);
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        path,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .map_err(|e| format!("mkfifo {}: {e}", path.display()))
}

/// A raw byte path: a socket pair or two pipes to an echo process, maybe through a relay.
pub struct RawSession {
    r: Box<dyn Read>,
    w: Box<dyn Write>,
    msg: Vec<u8>,
    back: Vec<u8>,
    batch: Vec<u8>,
    files: Vec<PathBuf>,
    _peers: Vec<ChildGuard>,
}

impl RawSession {
    /// Starts the raw path of `kind` (Unix or FIFO) in `dir`, through a relay process when
    /// `relay`; the peers are `interstate bench-peer raw|relay ...`.
    pub fn start(
        peers: &Peers,
        dir: &Path,
        kind: Kind,
        relay: bool,
        payload: usize,
    ) -> Result<RawSession, String> {
        let p = |n: &str| dir.join(n);
        let s = |p: &Path| p.to_str().unwrap_or_default().to_string();
        let pl = payload.to_string();
        let mut children = Vec::new();
        let mut files = Vec::new();
        let (r, w) = match (kind, relay) {
            (Kind::Unix, false) => {
                let path = p("raw.sock");
                let _ = std::fs::remove_file(&path);
                let l = UnixListener::bind(&path).map_err(io_err("raw baseline socket"))?;
                files.push(path.clone());
                children.push(peers.spawn(
                    &["bench-peer", "raw", &format!("unix:{}", s(&path)), &pl],
                    &[],
                )?);
                let (st, _) = l.accept().map_err(io_err("accepting"))?;
                let w = st.try_clone().map_err(io_err("socket"))?;
                (Box::new(st) as Box<dyn Read>, Box::new(w) as Box<dyn Write>)
            }
            (Kind::Unix, true) => {
                let (a, b) = (p("relay-a.sock"), p("relay-b.sock"));
                let _ = std::fs::remove_file(&a);
                let _ = std::fs::remove_file(&b);
                let l = UnixListener::bind(&a).map_err(io_err("relay baseline socket"))?;
                files.extend([a.clone(), b.clone()]);
                children.push(peers.spawn(
                    &[
                        "bench-peer",
                        "relay",
                        &format!("unix:{}", s(&a)),
                        &format!("unix-listen:{}", s(&b)),
                        &pl,
                    ],
                    &[],
                )?);
                wait_for("the relay", || b.exists())?;
                children.push(
                    peers.spawn(&["bench-peer", "raw", &format!("unix:{}", s(&b)), &pl], &[])?,
                );
                let (st, _) = l.accept().map_err(io_err("accepting"))?;
                let w = st.try_clone().map_err(io_err("socket"))?;
                (Box::new(st) as Box<dyn Read>, Box::new(w) as Box<dyn Write>)
            }
            (Kind::Fifo, false) => {
                let (a, b) = (p("raw-a2b.fifo"), p("raw-b2a.fifo"));
                mkfifo(&a)?;
                mkfifo(&b)?;
                files.extend([a.clone(), b.clone()]);
                children.push(peers.spawn(
                    &[
                        "bench-peer",
                        "raw",
                        &format!("fifo-in:{}:{}", s(&a), s(&b)),
                        &pl,
                    ],
                    &[],
                )?);
                open_duplex(&format!("fifo-out:{}:{}", s(&a), s(&b)))?
            }
            (Kind::Fifo, true) => {
                let names = ["s2r", "r2s", "r2e", "e2r"].map(|n| p(&format!("relay-{n}.fifo")));
                for f in &names {
                    mkfifo(f)?;
                }
                files.extend(names.iter().cloned());
                let [s2r, r2s, r2e, e2r] = names.map(|f| s(&f));
                children.push(peers.spawn(
                    &[
                        "bench-peer",
                        "relay",
                        &format!("fifo-in:{s2r}:{r2s}"),
                        &format!("fifo-out:{r2e}:{e2r}"),
                        &pl,
                    ],
                    &[],
                )?);
                children.push(peers.spawn(
                    &["bench-peer", "raw", &format!("fifo-in:{r2e}:{e2r}"), &pl],
                    &[],
                )?);
                open_duplex(&format!("fifo-out:{s2r}:{r2s}"))?
            }
            (Kind::Shm, _) => return Err("shared memory has its own raw session".into()),
        };
        Ok(RawSession {
            r,
            w,
            msg: vec![7u8; payload],
            back: vec![0u8; payload],
            batch: Vec::with_capacity(256 * (4 + payload)),
            files,
            _peers: children,
        })
    }
}

impl Drop for RawSession {
    fn drop(&mut self) {
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

impl Session for RawSession {
    fn round_trip(&mut self) -> Result<(), String> {
        self.w.write_all(&self.msg).map_err(io_err("raw write"))?;
        self.r
            .read_exact(&mut self.back)
            .map_err(io_err("raw read"))
    }

    /// Length-prefixed messages, 256 per write; the peer answers one byte at the end.
    fn one_way(&mut self, n: usize) -> Result<StdDuration, String> {
        let payload = self.msg.len();
        let t = StdInstant::now();
        self.w.write_all(&[0xFF]).map_err(io_err("raw write"))?;
        self.w
            .write_all(&(n as u64).to_le_bytes())
            .map_err(io_err("raw write"))?;
        let mut sent = 0;
        while sent < n {
            self.batch.clear();
            for _ in 0..256.min(n - sent) {
                self.batch
                    .extend_from_slice(&(payload as u32).to_le_bytes());
                self.batch.extend_from_slice(&self.msg);
                sent += 1;
            }
            self.w.write_all(&self.batch).map_err(io_err("raw write"))?;
        }
        let mut done = [0u8; 1];
        self.r.read_exact(&mut done).map_err(io_err("raw read"))?;
        Ok(t.elapsed())
    }
}

/// The echo end of a raw path: answers pings, swallows streams, until end-of-file.
fn raw_peer(spec: &str, payload: usize) -> Result<(), String> {
    let (mut r, mut w) = open_duplex(spec)?;
    let mut buf = vec![0u8; payload];
    let mut big = vec![0u8; 1 << 16];
    loop {
        let mut first = [0u8; 1];
        match r.read(&mut first) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
        if first[0] != 0xFF {
            // A ping (all 7s): the rest of it, and back.
            buf[0] = first[0];
            r.read_exact(&mut buf[1..]).map_err(|e| e.to_string())?;
            w.write_all(&buf).map_err(|e| e.to_string())?;
            continue;
        }
        let mut n = [0u8; 8];
        r.read_exact(&mut n).map_err(|e| e.to_string())?;
        let total = u64::from_le_bytes(n) as usize * (4 + payload);
        let mut got = 0;
        while got < total {
            let k = r
                .read(&mut big[..(total - got).min(1 << 16)])
                .map_err(|e| e.to_string())?;
            if k == 0 {
                return Err("sender closed early".into());
            }
            got += k;
        }
        w.write_all(&[1]).map_err(|e| e.to_string())?;
    }
}

/// A relay: forwards pings and streams from the sender's endpoint to the echo's, and the
/// answers back, with blocking reads and writes, as a hub would at best.
fn relay_peer(to_sender: &str, to_echo: &str, payload: usize) -> Result<(), String> {
    let (mut sr, mut sw) = open_duplex(to_sender)?;
    let (mut er, mut ew) = open_duplex(to_echo)?;
    let mut buf = vec![0u8; payload.max(9)];
    let mut big = vec![0u8; 1 << 16];
    loop {
        let mut first = [0u8; 1];
        match sr.read(&mut first) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
        if first[0] == 0xFF {
            let mut n = [0u8; 8];
            sr.read_exact(&mut n).map_err(|e| e.to_string())?;
            ew.write_all(&[0xFF]).map_err(|e| e.to_string())?;
            ew.write_all(&n).map_err(|e| e.to_string())?;
            let mut left = u64::from_le_bytes(n) as usize * (4 + payload);
            while left > 0 {
                let k = sr
                    .read(&mut big[..left.min(1 << 16)])
                    .map_err(|e| e.to_string())?;
                if k == 0 {
                    return Err("sender closed early".into());
                }
                ew.write_all(&big[..k]).map_err(|e| e.to_string())?;
                left -= k;
            }
            let mut done = [0u8; 1];
            er.read_exact(&mut done).map_err(|e| e.to_string())?;
            sw.write_all(&done).map_err(|e| e.to_string())?;
            continue;
        }
        buf[0] = first[0];
        sr.read_exact(&mut buf[1..payload])
            .map_err(|e| e.to_string())?;
        ew.write_all(&buf[..payload]).map_err(|e| e.to_string())?;
        er.read_exact(&mut buf[..payload])
            .map_err(|e| e.to_string())?;
        sw.write_all(&buf[..payload]).map_err(|e| e.to_string())?;
    }
}

// ----- raw shared memory -----

/// Layout of the raw shared-memory region:
/// - `0`: the doorbell line, written by the sender: `seq` (u64), `op` (u64), `arg` (u64);
/// - `64`: the answer line, written by the peer: the last `seq` it finished;
/// - `256`: the ping payload, then the pong payload, `MAX_PAYLOAD` rounded up each;
/// - then a [`Ring`] (header and data), sender to peer.
const DOORBELL: usize = 0;
const ANSWER: usize = 64;
const PING_AT: usize = 256;
const AREA: usize = 64 * 1024;
const PONG_AT: usize = PING_AT + AREA;
const RING_AT: usize = PONG_AT + AREA;
/// The raw ring's capacity: the shared-memory transport's default ring.
const RAW_RING: usize = interstate_platform::transport::shm::DEFAULT_RING;
const OP_PING: u64 = 1;
const OP_STREAM: u64 = 2;
const OP_QUIT: u64 = 3;

fn region_len() -> usize {
    RING_AT + HEADER + RAW_RING
}

/// A shared mapping of a memfd.
struct Region {
    ptr: *mut u8,
    len: usize,
}

impl Region {
    fn map(fd: &OwnedFd, len: usize) -> Result<Region, String> {
        // SAFETY: a fresh shared mapping of a memfd the caller sized to at least `len` bytes;
        // nothing else in this process aliases it, and it is unmapped only on drop.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::SHARED,
                fd,
                0,
            )
        }
        .map_err(|e| format!("mapping shared memory: {e}"))?;
        Ok(Region {
            ptr: ptr as *mut u8,
            len,
        })
    }
    fn word(&self, at: usize) -> &AtomicU64 {
        assert!(at + 8 <= self.len && at % 8 == 0);
        // SAFETY: in bounds and aligned (the mapping is page-aligned); the memory is shared
        // with the peer, which is why it is only ever accessed through atomics here.
        unsafe { &*(self.ptr.add(at) as *const AtomicU64) }
    }
    fn area(&self, at: usize) -> *mut u8 {
        assert!(at + AREA <= self.len);
        // SAFETY: in bounds (checked above).
        unsafe { self.ptr.add(at) }
    }
    fn ring(&self) -> Ring {
        assert!(RING_AT + HEADER + RAW_RING <= self.len);
        // SAFETY: the ring's bytes lie inside the mapping, 64-aligned, and stay mapped as
        // long as the session owning both; one producer (the sender) and one consumer (the
        // peer) per process.
        unsafe { Ring::new(self.ptr.add(RING_AT), RAW_RING) }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, unmapped once.
        let _ = unsafe { rustix::mm::munmap(self.ptr as *mut _, self.len) };
    }
}

/// Busy-spins until `done()`; gives up after 30 s or when `alive()` says the other side is
/// gone (checked every 64K turns, so the check costs nothing measurable).
fn spin_until(
    what: &str,
    mut done: impl FnMut() -> bool,
    alive: impl Fn() -> bool,
) -> Result<(), String> {
    let mut turns = 0u32;
    let mut start = None;
    loop {
        if done() {
            return Ok(());
        }
        std::hint::spin_loop();
        turns = turns.wrapping_add(1);
        if turns % (1 << 16) == 0 {
            let s = *start.get_or_insert_with(StdInstant::now);
            if s.elapsed() > StdDuration::from_secs(30) || !alive() {
                return Err(format!("shared-memory baseline: no {what} within 30 s"));
            }
        }
    }
}

/// The raw shared-memory path: a spin ping-pong through the region, and the ring.
pub struct ShmRawSession {
    region: Region,
    ring: Ring,
    seq: u64,
    payload: usize,
    msg: Vec<u8>,
    back: Vec<u8>,
    batch: Vec<u8>,
    _peer: ChildGuard,
}

impl ShmRawSession {
    /// Creates the region, starts `exe bench-peer shm FD PAYLOAD` on it.
    pub fn start(peers: &Peers, payload: usize) -> Result<ShmRawSession, String> {
        if payload > AREA {
            return Err(format!("payloads up to {AREA} bytes"));
        }
        // Not close-on-exec: the peer inherits it (and this process closes its copy as soon
        // as the peer is started, so that no other child does).
        let fd = rustix::fs::memfd_create("interstate-bench", rustix::fs::MemfdFlags::empty())
            .map_err(|e| format!("memfd_create: {e}"))?;
        rustix::fs::ftruncate(&fd, region_len() as u64)
            .map_err(|e| format!("sizing shared memory: {e}"))?;
        let region = Region::map(&fd, region_len())?;
        let mut ring = region.ring();
        ring.init();
        let peer = peers.spawn(
            &[
                "bench-peer",
                "shm",
                &fd.as_fd().as_raw_fd().to_string(),
                &payload.to_string(),
            ],
            &[],
        )?;
        drop(fd);
        Ok(ShmRawSession {
            region,
            ring,
            seq: 0,
            payload,
            msg: vec![7u8; payload],
            back: vec![0u8; payload],
            batch: Vec::with_capacity(256 * (4 + payload)),
            _peer: peer,
        })
    }

    fn ring_bell(&mut self, op: u64, arg: u64) -> u64 {
        self.seq += 1;
        let r = &self.region;
        r.word(DOORBELL + 8).store(op, Ordering::Relaxed);
        r.word(DOORBELL + 16).store(arg, Ordering::Relaxed);
        r.word(DOORBELL).store(self.seq, Ordering::Release);
        self.seq
    }

    fn wait_answer(&self, seq: u64) -> Result<(), String> {
        let w = self.region.word(ANSWER);
        spin_until("answer", || w.load(Ordering::Acquire) == seq, || true)
    }
}

impl Drop for ShmRawSession {
    fn drop(&mut self) {
        self.ring_bell(OP_QUIT, 0);
    }
}

impl Session for ShmRawSession {
    fn round_trip(&mut self) -> Result<(), String> {
        // SAFETY: the ping area is `AREA >= payload` bytes inside the mapping; the peer reads
        // it only after the doorbell's release store below, and does not write it.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.msg.as_ptr(),
                self.region.area(PING_AT),
                self.payload,
            )
        };
        let seq = self.ring_bell(OP_PING, 0);
        self.wait_answer(seq)?;
        // SAFETY: the peer wrote the pong area before its release store of the answer that
        // our acquire load saw; it does not touch it again until the next ping.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.region.area(PONG_AT),
                self.back.as_mut_ptr(),
                self.payload,
            )
        };
        Ok(())
    }

    /// Length-prefixed messages through the ring, 256 per push (as many pushes as it takes),
    /// busy-spinning while it is full; the peer answers once it popped them all.
    fn one_way(&mut self, n: usize) -> Result<StdDuration, String> {
        let t = StdInstant::now();
        let seq = self.ring_bell(OP_STREAM, (n * (4 + self.payload)) as u64);
        let mut sent = 0;
        while sent < n {
            self.batch.clear();
            for _ in 0..256.min(n - sent) {
                self.batch
                    .extend_from_slice(&(self.payload as u32).to_le_bytes());
                self.batch.extend_from_slice(&self.msg);
                sent += 1;
            }
            let mut off = 0;
            let ring = &mut self.ring;
            let batch = &self.batch;
            spin_until(
                "room in the ring",
                || {
                    off += ring.push(&batch[off..]).unwrap_or(0);
                    off == batch.len()
                },
                || true,
            )?;
        }
        self.wait_answer(seq)?;
        Ok(t.elapsed())
    }
}

fn shm_peer(fd: &str, payload: usize) -> Result<(), String> {
    let raw: i32 = fd.parse().map_err(|_| "bad descriptor")?;
    // SAFETY: the descriptor was inherited from the parent for exactly this; nothing else in
    // this process owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let size = rustix::fs::fstat(&fd).map_err(|e| e.to_string())?.st_size as usize;
    if size < region_len() || payload > AREA {
        return Err("the shared region is too small".into());
    }
    let region = Region::map(&fd, region_len())?;
    let mut ring = region.ring();
    let parent = std::os::unix::process::parent_id();
    let alive = || std::os::unix::process::parent_id() == parent;
    let mut buf = vec![0u8; 1 << 16];
    let mut last = 0u64;
    let bell = region.word(DOORBELL);
    loop {
        spin_until("request", || bell.load(Ordering::Acquire) != last, alive).or_else(|e| {
            if alive() {
                Ok(())
            } else {
                Err(e)
            }
        })?;
        let seq = bell.load(Ordering::Acquire);
        if seq == last {
            continue;
        }
        last = seq;
        match region.word(DOORBELL + 8).load(Ordering::Relaxed) {
            OP_PING => {
                // SAFETY: both areas are `AREA >= payload` bytes inside the mapping; the
                // sender wrote the ping before the doorbell's release store we acquired, and
                // reads the pong only after our answer.
                unsafe {
                    std::ptr::copy_nonoverlapping(region.area(PING_AT), buf.as_mut_ptr(), payload);
                    std::ptr::copy_nonoverlapping(buf.as_ptr(), region.area(PONG_AT), payload);
                }
            }
            OP_STREAM => {
                let total = region.word(DOORBELL + 16).load(Ordering::Relaxed) as usize;
                let mut got = 0;
                spin_until(
                    "stream",
                    || {
                        got += ring.pop(&mut buf).unwrap_or(0);
                        got >= total
                    },
                    alive,
                )?;
            }
            _ => return Ok(()),
        }
        region.word(ANSWER).store(seq, Ordering::Release);
    }
}

// ----- the bus -----

fn node_config(
    bus: &str,
    dir: &Path,
    role: Role,
    transport: NodeTransport,
) -> Result<NodeConfig, String> {
    let mut c = NodeConfig::new(bus);
    c.dir = dir.to_path_buf();
    c.role = role;
    c.link_queue = 4 << 20;
    c.reconnect_buffer = 8 << 20;
    c.transport = transport.transport()?;
    Ok(c)
}

/// Two machines in two processes on a bus: a port of this process's node sends, a machine in
/// a peer process (`exe bench-peer node ...`) answers.
pub struct NodeSession {
    node: Node,
    payload: Vec<u8>,
    _peer: ChildGuard,
    _hub: Option<ChildGuard>,
}

impl NodeSession {
    /// Starts the path: `transport` on both nodes; through a separate hub process
    /// (`exe hub`) when `via_hub`, else this process serves the bus.
    pub fn start(
        peers: &Peers,
        dir: &Path,
        transport: NodeTransport,
        via_hub: bool,
        payload: usize,
    ) -> Result<NodeSession, String> {
        let bus = format!(
            "bench-{}-{}",
            transport.spec(),
            if via_hub { "hub" } else { "direct" }
        );
        let dir_s = dir.to_str().unwrap_or_default().to_string();
        let config = node_config(
            &bus,
            dir,
            if via_hub { Role::Client } else { Role::Hub },
            transport,
        )?;
        let hub = if via_hub {
            let g = peers.spawn(
                &["hub", "--bus", &bus],
                &[
                    ("INTERSTATE_DIR", &dir_s),
                    ("INTERSTATE_TRANSPORT", transport.env()),
                ],
            )?;
            let sock = interstate::bus::busdir::socket_path(dir, &bus);
            wait_for("the benchmark hub", || UnixStream::connect(&sock).is_ok())?;
            Some(g)
        } else {
            None
        };
        let mut node = Node::new(config).map_err(|e| e.to_string())?;
        node.set_logger(|_| {});
        node.open_port("bench-a").map_err(|e| e.to_string())?;
        let peer = peers.spawn(
            &["bench-peer", "node", &bus, &dir_s, &transport.spec()],
            &[],
        )?;
        let joined = node
            .run_until(StdDuration::from_secs(10), |n| {
                n.registry().contains("bench-echo")
            })
            .map_err(|e| e.to_string())?;
        if !joined {
            return Err("the benchmark peer did not join the bus".into());
        }
        Ok(NodeSession {
            node,
            payload: vec![7u8; payload],
            _peer: peer,
            _hub: hub,
        })
    }
}

impl Drop for NodeSession {
    fn drop(&mut self) {
        let _ = self
            .node
            .send_from_port("bench-a", "bench-echo", "QUIT", &[]);
        let _ = self.node.run_for(StdDuration::from_millis(20));
    }
}

impl Session for NodeSession {
    fn round_trip(&mut self) -> Result<(), String> {
        let node = &mut self.node;
        node.send_from_port("bench-a", "bench-echo", "PING", &self.payload)
            .map_err(|e| e.to_string())?;
        node.flush();
        let deadline = StdInstant::now() + StdDuration::from_secs(10);
        loop {
            if let Some(m) = node.recv_port() {
                if m.event == "PONG" {
                    return Ok(());
                }
            }
            node.run_once(Some(StdDuration::from_millis(100)))
                .map_err(|e| e.to_string())?;
            if StdInstant::now() > deadline {
                return Err("no PONG within 10 s".into());
            }
        }
    }

    fn one_way(&mut self, n: usize) -> Result<StdDuration, String> {
        let node = &mut self.node;
        let t = StdInstant::now();
        let count = n.to_string().into_bytes();
        node.send_from_port("bench-a", "bench-echo", "EXPECT", &count)
            .map_err(|e| e.to_string())?;
        let mut sent = 0;
        while sent < n {
            for _ in 0..1024.min(n - sent) {
                node.send_from_port("bench-a", "bench-echo", "DATA", &self.payload)
                    .map_err(|e| e.to_string())?;
                sent += 1;
            }
            node.run_once(Some(StdDuration::ZERO))
                .map_err(|e| e.to_string())?;
        }
        let deadline = StdInstant::now() + StdDuration::from_secs(120);
        loop {
            node.run_once(Some(StdDuration::from_millis(50)))
                .map_err(|e| e.to_string())?;
            while let Some(m) = node.recv_port() {
                if m.event == "DONE" {
                    return Ok(t.elapsed());
                }
            }
            if StdInstant::now() > deadline {
                return Err("the peer did not confirm the throughput run within 120 s".into());
            }
        }
    }
}

fn node_peer(bus: &str, dir: &str, transport: &str) -> Result<(), String> {
    use std::cell::Cell;
    use std::rc::Rc;
    let transport = NodeTransport::from_spec(transport)?;
    let mut node = Node::new(node_config(bus, Path::new(dir), Role::Client, transport)?)
        .map_err(|e| e.to_string())?;
    node.set_logger(|_| {});
    let count = Rc::new(Cell::new(0usize));
    let expect = Rc::new(Cell::new(usize::MAX));
    let (c1, c2, e1, e2) = (count.clone(), count.clone(), expect.clone(), expect.clone());
    let behaviors = Behaviors::new()
        .action("pong", |cx| {
            let payload = cx.payload();
            let _ = cx.send("bench-a", "PONG", payload);
        })
        .action("expect", move |cx| {
            e1.set(
                std::str::from_utf8(cx.payload())
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0),
            );
            c1.set(0);
        })
        .action("count", move |cx| {
            c2.set(c2.get() + 1);
            if c2.get() == e2.get() {
                let _ = cx.send("bench-a", "DONE", &[]);
            }
        });
    interstate::bus::add_json_machine(&mut node, "bench-echo", ECHO_CHART, behaviors)
        .map_err(|e| e.to_string())?;
    // Stop when the benchmark process is gone; asking costs a system call, so only every
    // 4096th loop turn (a busy-spinning node turns its loop about once a microsecond).
    let parent = std::os::unix::process::parent_id();
    let mut turns = 0u32;
    let stopped = node
        .run_until(StdDuration::from_secs(3600), |n| {
            turns = turns.wrapping_add(1);
            n.machine("bench-echo").is_none_or(|m| m.is_done())
                || (turns % 4096 == 0 && std::os::unix::process::parent_id() != parent)
        })
        .map_err(|e| e.to_string())?;
    if stopped {
        Ok(())
    } else {
        Err("benchmark peer timed out".into())
    }
}

/// Runs a benchmark peer (the hidden `interstate bench-peer` command).
pub fn peer(args: &[String]) -> Result<(), String> {
    let arg = |i: usize, what: &str| {
        args.get(i)
            .map(String::as_str)
            .ok_or_else(|| format!("missing {what}"))
    };
    let payload = |i: usize| args.get(i).and_then(|p| p.parse().ok()).unwrap_or(64);
    match args.first().map(String::as_str) {
        Some("raw") => raw_peer(arg(1, "endpoint")?, payload(2)),
        Some("relay") => relay_peer(arg(1, "endpoint")?, arg(2, "endpoint")?, payload(3)),
        Some("shm") => shm_peer(arg(1, "descriptor")?, payload(2)),
        Some("node") => node_peer(
            arg(1, "bus")?,
            arg(2, "dir")?,
            args.get(3).map(String::as_str).unwrap_or("unix"),
        ),
        _ => Err("unknown benchmark peer".into()),
    }
}

// ----- the report -----

/// A temporary directory for one run's sockets, pipes and buses; removed on drop.
pub struct BenchDir(pub PathBuf);

impl BenchDir {
    /// Creates `$TMPDIR/interstate-bench-<pid>-<tag>`, private to this user.
    pub fn new(tag: &str) -> Result<BenchDir, String> {
        use std::os::unix::fs::DirBuilderExt;
        let dir =
            std::env::temp_dir().join(format!("interstate-bench-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(BenchDir(dir))
    }
}

impl Drop for BenchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The load averages (1, 5, 15 minutes).
pub fn loadavg() -> [f64; 3] {
    let s = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut it = s.split_whitespace().map(|x| x.parse().unwrap_or(0.0));
    [
        it.next().unwrap_or(0.0),
        it.next().unwrap_or(0.0),
        it.next().unwrap_or(0.0),
    ]
}

/// The CPU model and the number of cores.
pub fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    // Counted from /proc/cpuinfo: `available_parallelism` would count only the CPUs this
    // (possibly pinned) process may use.
    let cores = std::fs::read_to_string("/proc/cpuinfo")
        .map(|c| c.lines().filter(|l| l.starts_with("processor")).count())
        .unwrap_or(0);
    json!({"cpu": cpu, "cores": cores})
}

struct Run {
    paths: Vec<(String, Result<PathResult, String>)>,
}

impl Run {
    fn get(&self, name: &str) -> Option<&PathResult> {
        self.paths
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, r)| r.as_ref().ok())
    }
}

fn path_json(r: &Result<PathResult, String>) -> Value {
    match r {
        Ok(p) => p.json(),
        Err(e) => json!({ "error": e }),
    }
}

/// One target: `value` against `limit`, `at_most` (else at least).
fn target(name: &str, value: Option<f64>, limit: f64, at_most: bool) -> Value {
    match value {
        Some(v) => {
            let met = if at_most { v <= limit } else { v >= limit };
            json!({"target": name, "value": round2(v), "limit": limit, "met": met})
        }
        None => json!({"target": name, "value": null, "limit": limit, "met": null}),
    }
}

fn measure_transport(
    peers: &Peers,
    dir: &Path,
    kind: Kind,
    payload: usize,
    opts: &BenchOptions,
) -> Value {
    let (rt, msgs) = (opts.round_trips, opts.messages_for(payload));
    let mut run = Run { paths: Vec::new() };
    let mut add = |name: &str, start: &mut dyn FnMut() -> Result<Box<dyn Session>, String>| {
        let r = start().and_then(|mut s| measure(&mut *s, rt, msgs));
        run.paths.push((name.to_string(), r));
    };
    let node = |t: NodeTransport, hub: bool| {
        move || -> Result<Box<dyn Session>, String> {
            Ok(Box::new(NodeSession::start(peers, dir, t, hub, payload)?))
        }
    };
    match kind {
        Kind::Unix | Kind::Fifo => {
            let t = if kind == Kind::Unix {
                NodeTransport::Unix
            } else {
                NodeTransport::Fifo
            };
            add("raw", &mut || {
                Ok(Box::new(RawSession::start(
                    peers, dir, kind, false, payload,
                )?))
            });
            add("direct", &mut node(t, false));
            if opts.via_hub {
                add("raw_relay", &mut || {
                    Ok(Box::new(RawSession::start(
                        peers, dir, kind, true, payload,
                    )?))
                });
                add("hub", &mut node(t, true));
            }
        }
        Kind::Shm => {
            add("raw", &mut || {
                Ok(Box::new(ShmRawSession::start(peers, payload)?))
            });
            for w in &opts.waits {
                add(
                    &format!("direct_{}", w.name()),
                    &mut node(NodeTransport::Shm(*w), false),
                );
            }
            if opts.via_hub {
                // The hub process waits as `INTERSTATE_TRANSPORT=shm` makes it: spin 50 µs.
                add("hub_spin", &mut node(NodeTransport::Shm(Wait::Spin), true));
            }
        }
    }
    let mut ratios = serde_json::Map::new();
    let mut targets = Vec::new();
    let raw = run.get("raw").cloned();
    let relay = run.get("raw_relay").cloned();
    for (name, r) in &run.paths {
        let Ok(p) = r else { continue };
        let base = if name.starts_with("hub") && kind != Kind::Shm {
            relay.as_ref()
        } else {
            raw.as_ref()
        };
        if name == "raw" || name == "raw_relay" {
            continue;
        }
        if let Some(b) = base {
            ratios.insert(
                format!("{name}_rtt_p50_vs_baseline"),
                json!(round2(p.rtt_us[0] / b.rtt_us[0])),
            );
            ratios.insert(
                format!("{name}_throughput_vs_baseline"),
                json!(round2(p.throughput / b.throughput)),
            );
        }
    }
    let rtt_ratio =
        |path: &str, base: Option<&PathResult>| Some(run.get(path)?.rtt_us[0] / base?.rtt_us[0]);
    let thr_ratio =
        |path: &str, base: Option<&PathResult>| Some(base?.throughput / run.get(path)?.throughput);
    match kind {
        Kind::Unix | Kind::Fifo => {
            targets.push(target(
                "direct rtt p50 / raw rtt p50 <= 1.5",
                rtt_ratio("direct", raw.as_ref()),
                1.5,
                true,
            ));
            targets.push(target(
                "raw throughput / direct throughput <= 1.5",
                thr_ratio("direct", raw.as_ref()),
                1.5,
                true,
            ));
            if opts.via_hub {
                targets.push(target(
                    "hub rtt p50 / raw relay rtt p50 <= 1.5",
                    rtt_ratio("hub", relay.as_ref()),
                    1.5,
                    true,
                ));
                targets.push(target(
                    "raw relay throughput / hub throughput <= 1.5",
                    thr_ratio("hub", relay.as_ref()),
                    1.5,
                    true,
                ));
            }
        }
        Kind::Shm => {
            if opts.waits.contains(&Wait::Busy) {
                targets.push(target(
                    "busy-spin rtt p50 / raw spin rtt p50 <= 2",
                    rtt_ratio("direct_busy", raw.as_ref()),
                    2.0,
                    true,
                ));
            }
            if opts.waits.contains(&Wait::Spin) {
                targets.push(target(
                    "spin-then-park rtt p50 (us) < 5",
                    run.get("direct_spin").map(|p| p.rtt_us[0]),
                    5.0,
                    true,
                ));
            }
            for w in &opts.waits {
                let path = format!("direct_{}", w.name());
                targets.push(target(
                    &format!("{path} throughput / raw ring throughput >= 0.5"),
                    thr_ratio(&path, raw.as_ref()).map(|x| 1.0 / x),
                    0.5,
                    false,
                ));
                targets.push(target(
                    &format!("{path} throughput (M msgs/s) >= 5"),
                    run.get(&path).map(|p| p.throughput / 1e6),
                    5.0,
                    false,
                ));
            }
        }
    }
    let mut paths = serde_json::Map::new();
    for (name, r) in &run.paths {
        paths.insert(name.clone(), path_json(r));
    }
    json!({
        "transport": kind.name(),
        "payload_bytes": payload,
        "round_trips": rt,
        "messages": msgs,
        "paths": paths,
        "ratios": ratios,
        "targets": targets,
    })
}

/// Runs the benchmark for `kinds` with peers started from `exe` (an `interstate` binary)
/// and returns the report as JSON.
pub fn run_with(exe: &Path, kinds: &[Kind], opts: &BenchOptions) -> Result<Value, String> {
    for &p in &opts.payloads {
        if p == 0 || p > MAX_PAYLOAD {
            return Err(format!("payloads from 1 to {MAX_PAYLOAD} bytes"));
        }
    }
    let dir = BenchDir::new("run")?;
    let (peers, placement) = Peers::new(exe.to_path_buf(), opts.pin)?;
    let load_before = loadavg();
    let started = StdInstant::now();
    let mut runs = Vec::new();
    for &kind in kinds {
        for &payload in &opts.payloads {
            runs.push(measure_transport(&peers, &dir.0, kind, payload, opts));
        }
    }
    Ok(json!({
        "machine": machine(),
        "pin": opts.pin.name(),
        "cpus": {"bench": placement.cpus.0, "peers": placement.cpus.1},
        "load_before": load_before,
        "load_after": loadavg(),
        "seconds": round2(started.elapsed().as_secs_f64()),
        "runs": runs,
    }))
}

/// Runs the benchmark with peers started from this executable.
pub fn run(kinds: &[Kind], opts: &BenchOptions) -> Result<Value, String> {
    let exe = std::env::current_exe().map_err(|e| format!("finding this executable: {e}"))?;
    run_with(&exe, kinds, opts)
}

/// Prints a report as tables.
pub fn print_table(v: &Value) {
    println!(
        "machine: {} ({} cores); load average {} before, {} after; {} s",
        v["machine"]["cpu"].as_str().unwrap_or("?"),
        v["machine"]["cores"],
        v["load_before"],
        v["load_after"],
        v["seconds"]
    );
    println!(
        "placement: {} (this process on CPU {}, peers on CPU {})",
        v["pin"].as_str().unwrap_or("?"),
        v["cpus"]["bench"],
        v["cpus"]["peers"]
    );
    for run in v["runs"].as_array().into_iter().flatten() {
        println!();
        println!(
            "transport {}, {}-byte payloads, {} round trips, {} messages one way",
            run["transport"].as_str().unwrap_or("?"),
            run["payload_bytes"],
            run["round_trips"],
            run["messages"]
        );
        println!(
            "{:<12} {:>11} {:>11} {:>12} {:>15} {:>10} {:>10}",
            "path", "rtt p50 us", "rtt p99 us", "rtt p99.9 us", "msgs/s one way", "p50 x", "thru x"
        );
        for (name, r) in run["paths"].as_object().into_iter().flatten() {
            if let Some(e) = r["error"].as_str() {
                println!("{name:<12} {e}");
                continue;
            }
            let q = &run["ratios"];
            let f = |x: &Value| x.as_f64().map(|x| format!("{x}")).unwrap_or_default();
            println!(
                "{:<12} {:>11} {:>11} {:>12} {:>15} {:>10} {:>10}",
                name,
                f(&r["rtt_p50_us"]),
                f(&r["rtt_p99_us"]),
                f(&r["rtt_p999_us"]),
                r["msgs_per_s"]
                    .as_f64()
                    .map(|x| format!("{x:.0}"))
                    .unwrap_or_default(),
                f(&q[format!("{name}_rtt_p50_vs_baseline")]),
                f(&q[format!("{name}_throughput_vs_baseline")]),
            );
        }
        for t in run["targets"].as_array().into_iter().flatten() {
            let met = match t["met"].as_bool() {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "not measured",
            };
            println!(
                "  target {}: {} ({})",
                t["target"].as_str().unwrap_or("?"),
                met,
                t["value"]
            );
        }
    }
}

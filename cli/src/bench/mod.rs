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
//!     [`Ring`](interstate_platform::transport::ring::Ring) (1 MiB, as the transport's default), the consumer popping with a busy spin.
//! - **raw relay** (sockets and pipes): the raw ping-pong and stream through a third process
//!   forwarding bytes with blocking reads and writes: the floor for any path through a hub.
//! - **direct**: this process serves the bus (hub role, a port as the sender) and a child
//!   process, a client over the transport measured, hosts a machine that answers `PING` with
//!   `PONG` and counts `DATA`. Shared memory is measured once per wait strategy (both sides
//!   use it).
//! - **hub**: the same two endpoints as clients of a separate `interstate hub` process.
//! - **mqtt** (`--transport mqtt`, not part of `all`): two buses joined through a local
//!   mosquitto by two bridges, beside a raw MQTT ping-pong through the same broker with the
//!   same client code ([`mqtt`]).
//! - **pubsub_8**: beside direct, this process (serving the bus) publishes from a port to a
//!   topic that 8 machines in one peer process subscribe to: its msgs/s are publications per
//!   second, each delivered to all 8 subscribers (8 messages on the wire each); its round
//!   trip, a publication out and all 8 answers back.
//!
//! Each message crosses the real path: encode, outstanding buffer, link queue, transport,
//! decode, duplicate check, the machine's step and action, acknowledgement.
//!
//! Every path is a [`Session`]: a live pair of processes that can do one round trip or send
//! `n` messages one way on demand. The command measures sessions with plain loops;
//! `cli/benches/transport.rs` drives the same sessions from criterion.
//!
//! The files follow those parts: `options.rs` holds the settings, `peers.rs` starts the peer
//! processes and places them on CPUs, `raw.rs` and `shm_raw.rs` are the raw baselines (the
//! latter holds all of the benchmark's `unsafe`), `node.rs` the paths over the bus,
//! `report.rs` measures every path of a transport into the JSON report, and `print.rs` prints
//! it as tables. Each peer process's side lives beside the session that starts it; this file
//! holds what they share: a [`Session`], how it is measured, and the peer dispatch.

use std::time::{Duration as StdDuration, Instant as StdInstant};

use serde_json::{json, Value};

pub mod mqtt;
mod mqtt_hosted;
mod node;
mod options;
mod peers;
mod print;
mod pubsub;
mod raw;
mod report;
mod shm_raw;

pub use node::{NodeSession, NodeTransport};
pub use options::{BenchOptions, Kind, Pin, Wait, MAX_PAYLOAD};
pub use peers::{BenchDir, ChildGuard, Peers, Placement};
pub use print::print_table;
pub use pubsub::{PubSubSession, SUBSCRIBERS};
pub use raw::RawSession;
pub use report::{loadavg, machine, run, run_with};
pub use shm_raw::ShmRawSession;

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

/// Runs a benchmark peer (the hidden `interstate bench-peer` command).
pub fn peer(args: &[String]) -> Result<(), String> {
    let arg = |i: usize, what: &str| {
        args.get(i)
            .map(String::as_str)
            .ok_or_else(|| format!("missing {what}"))
    };
    let payload = |i: usize| args.get(i).and_then(|p| p.parse().ok()).unwrap_or(64);
    match args.first().map(String::as_str) {
        Some("raw") => raw::raw_peer(arg(1, "endpoint")?, payload(2)),
        Some("relay") => raw::relay_peer(arg(1, "endpoint")?, arg(2, "endpoint")?, payload(3)),
        Some("shm") => shm_raw::shm_peer(arg(1, "descriptor")?, payload(2)),
        Some("pubsub") => pubsub::pubsub_peer(
            arg(1, "bus")?,
            arg(2, "dir")?,
            arg(3, "transport")?,
            args.get(4)
                .and_then(|n| n.parse().ok())
                .unwrap_or(SUBSCRIBERS),
        ),
        Some("mqtt-raw") => mqtt::raw_peer(arg(1, "port")?),
        Some("mqtt-hosted") => mqtt_hosted::hosted_peer(
            arg(1, "url")?,
            arg(2, "prefix")?,
            arg(3, "bus")?,
            arg(4, "dir")?,
        ),
        Some("node") => node::node_peer(
            arg(1, "bus")?,
            arg(2, "dir")?,
            args.get(3).map(String::as_str).unwrap_or("unix"),
        ),
        _ => Err("unknown benchmark peer".into()),
    }
}

//! Transport latency and throughput between two processes, each path beside its raw baseline:
//! the paths of `interstate bench` (see `cli/src/bench/`) at a smaller scale, under criterion.
//!
//! For each transport (`unix`, `fifo`, `shm`) and payload (64 B, 4 KiB):
//! - `<transport>/rtt/<path>/<payload>`: one round trip per iteration;
//! - `<transport>/one_way/<path>/<payload>`: one message per iteration (`Throughput::Elements`),
//!   sent in a stream of as many messages as criterion asks for, timed until the receiver
//!   confirms the last one.
//!
//! Paths: `raw` (the transport's floor: socket or FIFO ping-pong and stream, or for shared
//! memory the spin ping-pong and the raw `Ring` stream), `raw_relay` (sockets and FIFOs:
//! through a byte-forwarding process), `direct` (this process serves the bus, the peer is a
//! client; shared memory once per wait strategy, `direct_busy` and `direct_spin`) and `hub`
//! (both ends clients of a separate `interstate hub` process).
//!
//! How it works: every path is an `interstate_cli::bench::Session`, the same code the command
//! measures. The other ends are real processes: the `interstate` binary's hidden `bench-peer`
//! subcommand (and `interstate hub`). Cargo builds the package's binaries before its benches
//! and tells the bench where it is in `CARGO_BIN_EXE_interstate`; when that is missing (a
//! bench executable run by hand), the binary is looked for next to the bench executable's
//! directory (`target/<profile>/interstate` for `target/<profile>/deps/transport-<hash>`).
//! This process runs on one CPU and the peers on another (as `interstate bench --pin split`).
//!
//! Run: `cargo bench --bench transport` (about 2 minutes); a subset with a filter, e.g.
//! `cargo bench --bench transport -- shm/rtt`. The figures of docs/performance.md come from
//! `interstate bench --transport all`, which measures more round trips and reports
//! percentiles and ratios.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use interstate_cli::bench::{
    BenchDir, Kind, NodeSession, NodeTransport, Peers, Pin, RawSession, Session, ShmRawSession,
    Wait,
};

fn interstate_exe() -> PathBuf {
    if let Some(p) = option_env!("CARGO_BIN_EXE_interstate") {
        return PathBuf::from(p);
    }
    let me = std::env::current_exe().expect("the bench executable's path");
    let profile_dir = me
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    profile_dir.join("interstate")
}

const PAYLOADS: [usize; 2] = [64, 4096];

fn bench_session(
    c: &mut Criterion,
    group: &str,
    path: &str,
    payload: usize,
    start: impl FnOnce() -> Result<Box<dyn Session>, String>,
) {
    let mut s = match start() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{group}/{path}/{payload}: not measured: {e}");
            return;
        }
    };
    let mut g = c.benchmark_group(format!("{group}/rtt"));
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(1));
    g.bench_function(format!("{path}/{payload}"), |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                s.round_trip().expect("round trip");
            }
            t.elapsed()
        })
    });
    g.finish();
    let mut g = c.benchmark_group(format!("{group}/one_way"));
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(1))
        .throughput(Throughput::Elements(1));
    g.bench_function(format!("{path}/{payload}"), |b| {
        b.iter_custom(|iters| s.one_way(iters as usize).expect("one-way stream"))
    });
    g.finish();
}

fn transports(c: &mut Criterion) {
    let dir = BenchDir::new("criterion").expect("a temporary directory");
    let (peers, _placement) = Peers::new(interstate_exe(), Pin::Split).expect("CPU placement");
    let d = &dir.0;
    for payload in PAYLOADS {
        for kind in [Kind::Unix, Kind::Fifo] {
            let t = if kind == Kind::Unix {
                NodeTransport::Unix
            } else {
                NodeTransport::Fifo
            };
            let name = kind.name();
            bench_session(c, name, "raw", payload, || {
                Ok(Box::new(RawSession::start(
                    &peers, d, kind, false, payload,
                )?))
            });
            bench_session(c, name, "direct", payload, || {
                Ok(Box::new(NodeSession::start(
                    &peers, d, t, false, false, payload,
                )?))
            });
            bench_session(c, name, "raw_relay", payload, || {
                Ok(Box::new(RawSession::start(&peers, d, kind, true, payload)?))
            });
            bench_session(c, name, "hub", payload, || {
                Ok(Box::new(NodeSession::start(
                    &peers, d, t, true, false, payload,
                )?))
            });
        }
        bench_session(c, "shm", "raw", payload, || {
            Ok(Box::new(ShmRawSession::start(&peers, payload)?))
        });
        for w in [Wait::Busy, Wait::Spin] {
            bench_session(c, "shm", &format!("direct_{}", w.name()), payload, || {
                Ok(Box::new(NodeSession::start(
                    &peers,
                    d,
                    NodeTransport::Shm(w),
                    false,
                    false,
                    payload,
                )?))
            });
        }
        bench_session(c, "shm", "hub_spin", payload, || {
            Ok(Box::new(NodeSession::start(
                &peers,
                d,
                NodeTransport::Shm(Wait::Spin),
                true,
                false,
                payload,
            )?))
        });
        bench_session(c, "shm", "pair_spin", payload, || {
            Ok(Box::new(NodeSession::start(
                &peers,
                d,
                NodeTransport::Shm(Wait::Spin),
                true,
                true,
                payload,
            )?))
        });
    }
}

criterion_group!(benches, transports);
criterion_main!(benches);

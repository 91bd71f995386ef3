//! The load test: 64 clients on one hub, each sending as fast as backpressure allows for a
//! bounded time (client i to client i+1, so every link carries traffic both ways), then a
//! paced run for latency. Reports the aggregate throughput, latency percentiles (from each
//! message's send to its receipt, by the wall clock in its payload) and the hub's peak memory
//! (`VmHWM` of `/proc/<hub>/status`), and checks that the hub's memory is bounded by its
//! configured queues: it must not grow with the duration of the flood (a run three times
//! longer peaks at about the same), and stays under the sum of its per-link buffers.
//!
//! Ignored by default (a minute of 65 busy processes); run it with `scripts/load.sh`
//! (release build) or
//!
//! ```text
//! cargo build --release --example bus_probe
//! cargo test --release --test load -- --ignored --nocapture
//! ```
//!
//! Last, a mixed run: `LOAD_PACED` of the clients (8; every eighth) send at `LOAD_RATE` to
//! the client two places on, which also gets a flood from the client before it, so that
//! their messages share the hub's queue for that receiver with a flood; the others flood
//! as before. Its report gives each group's latency (flooders' events `L`, paced ones' `P`,
//! told apart by the receivers) beside the total throughput.
//!
//! Each report also says where the time went (`sched`): the hub's CPU time and its wait for
//! a CPU (run-queue time, `/proc/<hub>/schedstat`) per second of the run, its switches, the
//! clients' summed likewise (each from its go to its last send), and the paced senders' own
//! part of their latency (from a message's stamp to the end of the flush that wrote it).
//! `INTERSTATE_LOAD_TRACE=DIR` has every receiver write each paced message's stamp and
//! receipt (wall clock, ns) to `DIR/<id>.trace`, to join with a probe elsewhere.
//!
//! A control run (`control`) keeps the same clients paced but has them send only to each
//! other (each to the next paced client) while the flooders send only to flooders: paced
//! traffic that shares the hub, not a receiver, with the flood (a control plane beside bulk
//! data), its latency again as `P`.
//!
//! Settings (environment): `LOAD_CLIENTS` (64), `LOAD_SECS` (3: the short flood; the long one
//! is 3 times longer), `LOAD_RATE` (per client in the paced run, 200), `LOAD_PACED` (8),
//! `LOAD_RUNS` (which runs, by name: `flood,long,paced,mixed,control`, all by default; the memory
//! checks need the first two). The hub's and clients' own settings pass through the environment
//! (`INTERSTATE_HUB_NICE`, `INTERSTATE_YIELD_AFTER_US`, `INTERSTATE_HUB_READ_QUANTUM`).
//! `INTERSTATE_TEST_BIN` runs it on another build (an
//! `interstate` binary with `examples/bus_probe` beside it), for before-and-after figures.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The hub's default queues (`NodeConfig::new`): 1 MiB out per link, one largest frame in.
const LINK_QUEUE: u64 = 1 << 20;
const MAX_FRAME: u64 = 64 * 1024;

/// A process's scheduler figures: `[cpu_ns, run_queue_wait_ns, voluntary switches,
/// involuntary switches]` (`/proc/<pid>/schedstat` and `status`; zeros where absent).
fn sched_figures(pid: u32) -> [u64; 4] {
    let mut f = [0u64; 4];
    if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/schedstat")) {
        for (i, v) in s.split_whitespace().take(2).enumerate() {
            f[i] = v.parse().unwrap_or(0);
        }
    }
    f[2] = proc_kb(pid, "voluntary_ctxt_switches").unwrap_or(0);
    f[3] = proc_kb(pid, "nonvoluntary_ctxt_switches").unwrap_or(0);
    f
}

/// Latency of one group of messages: the median over receivers of their p50, the worst
/// receiver's p99 and the largest.
#[derive(Default)]
struct Latency {
    p50: u64,
    p99: u64,
    max: u64,
    count: u64,
}

impl Latency {
    /// Over the receivers' percentile objects (`{"count","p50","p99","max"}`) that saw any.
    fn of(per_receiver: &[&Value]) -> Latency {
        let seen: Vec<&&Value> = per_receiver.iter().filter(|v| u(v, "count") > 0).collect();
        if seen.is_empty() {
            return Latency::default();
        }
        let mut p50s: Vec<u64> = seen.iter().map(|v| u(v, "p50")).collect();
        p50s.sort_unstable();
        Latency {
            p50: p50s[p50s.len() / 2],
            p99: seen.iter().map(|v| u(v, "p99")).max().unwrap_or(0),
            max: seen.iter().map(|v| u(v, "max")).max().unwrap_or(0),
            count: seen.iter().map(|v| u(v, "count")).sum(),
        }
    }

    fn json(&self) -> Value {
        json!({"p50_median_client": self.p50, "p99_worst_client": self.p99, "max": self.max,
               "messages": self.count})
    }
}

struct Run {
    clients: u64,
    secs: f64,
    sent: u64,
    received: u64,
    failed: u64,
    send_errors: u64,
    p50: u64,
    p99: u64,
    max: u64,
    hub_hwm_kb: u64,
    /// Where the time went (see `report`).
    sched: Value,
    /// By the senders' event: `L` (flooders, and the paced run), `P` (paced beside flooders).
    flood: Latency,
    paced: Latency,
}

/// One client of a run: how fast it sends (0: flood), to whom (places on in the ring), and
/// its event's name.
#[derive(Clone, Copy)]
struct Client {
    rate: u64,
    hop: u64,
    event: &'static str,
}

/// One run on a fresh hub: `clients` load clients for `ms`, at `rate` each (0: flood).
fn run(test: &str, clients: u64, ms: u64, rate: u64) -> Run {
    let c = Client {
        rate,
        hop: 1,
        event: "L",
    };
    run_mixed(test, &vec![c; clients as usize], ms)
}

/// One run on a fresh hub: a load client per entry of `clients`, for `ms`.
fn run_mixed(test: &str, spec: &[Client], ms: u64) -> Run {
    let clients = spec.len() as u64;
    let mut bus = Bus::new(test);
    let hub = bus.start_hub();
    let hub_pid = bus.pid(hub);
    let go = bus.path("go");
    let duration = ms.to_string();
    let mut ps = Vec::new();
    for (i, c) in spec.iter().enumerate() {
        let i = i as u64;
        let id = format!("c{i}");
        let to = format!("c{}", (i + c.hop) % clients);
        let rate_s = c.rate.to_string();
        let mut args = vec![
            "load",
            &id,
            &to,
            "--duration-ms",
            &duration,
            "--go-file",
            &go,
            "--linger-ms",
            "1500",
            "--event",
            c.event,
        ];
        if c.rate > 0 {
            args.extend_from_slice(&["--rate", &rate_s]);
        }
        ps.push(bus.probe(&id, &args));
    }
    for &p in &ps {
        bus.wait_json(
            p,
            "a load client's ready line",
            Duration::from_secs(60),
            |v| v["ready"] == json!(true),
        );
    }
    let hub_at_go = sched_figures(hub_pid);
    std::fs::write(&go, b"go").expect("write the go file");
    let mut results: Vec<Value> = Vec::new();
    for &p in &ps {
        bus.wait_exit(p, Duration::from_secs(ms / 1000 * 4 + 60));
        results.push(
            last_json(&bus.out(p), "latency_us")
                .unwrap_or_else(|| panic!("no result{}", bus.dump())),
        );
    }
    let hub_end = sched_figures(hub_pid);
    let hub_hwm_kb = proc_kb(hub_pid, "VmHWM").expect("the hub's VmHWM");
    assert!(bus.try_status(hub).is_none(), "the hub died{}", bus.dump());
    let sum = |k: &str| results.iter().map(|r| u(r, k)).sum::<u64>();
    let secs = results
        .iter()
        .map(|r| r["send_secs"].as_f64().unwrap_or(0.0))
        .fold(0.0, f64::max);
    // Latency: the median over clients of each percentile would hide the tail; take the
    // largest p99 and max, and the median p50.
    let mut p50s: Vec<u64> = results.iter().map(|r| u(&r["latency_us"], "p50")).collect();
    p50s.sort_unstable();
    let group = |event: &str| {
        let of: Vec<&Value> = results
            .iter()
            .filter_map(|r| r["by_event"].get(event))
            .collect();
        Latency::of(&of)
    };
    // Time waiting for a CPU: the hub's over the run, the clients' summed (each from its go
    // to the end of its sending), per second of the run; and the paced senders' own part.
    let hub = |i: usize| hub_end[i].saturating_sub(hub_at_go[i]);
    // (A build before these figures reports none: zeros.)
    let opt = |v: &Value, k: &str| v[k].as_u64().unwrap_or(0);
    let clients_sum = |k: &str| results.iter().map(|r| opt(&r["sched"], k)).sum::<u64>();
    let per_s = |v: u64| (v as f64 / secs.max(0.001)).round();
    let paced_send: Vec<&Value> = results
        .iter()
        .filter(|r| opt(&r["send_stage_us"], "count") > 0)
        .map(|r| &r["send_stage_us"])
        .collect();
    let sched = json!({
        "hub_cpu_ms_per_s": per_s(hub(0) / 1_000_000),
        "hub_run_queue_wait_ms_per_s": per_s(hub(1) / 1_000_000),
        "hub_involuntary_per_s": per_s(hub(3)),
        "hub_voluntary_per_s": per_s(hub(2)),
        "clients_cpu_ms_per_s": per_s(clients_sum("cpu_ms")),
        "clients_run_queue_wait_ms_per_s": per_s(clients_sum("run_queue_wait_ms")),
        "clients_involuntary_per_s": per_s(clients_sum("involuntary")),
        "clients_cpu_yields_per_s": per_s(clients_sum("cpu_yields")),
        "paced_send_stage_us": Latency::of(&paced_send).json(),
    });
    let r = Run {
        clients,
        secs,
        sent: sum("sent"),
        received: sum("received"),
        failed: sum("failed"),
        send_errors: sum("send_errors"),
        p50: p50s[p50s.len() / 2],
        p99: results
            .iter()
            .map(|r| u(&r["latency_us"], "p99"))
            .max()
            .unwrap_or(0),
        max: results
            .iter()
            .map(|r| u(&r["latency_us"], "max"))
            .max()
            .unwrap_or(0),
        hub_hwm_kb,
        sched,
        flood: group("L"),
        paced: group("P"),
    };
    let unacked = sum("unacknowledged");
    // Nothing lost: every message sent was received, or reported failed.
    assert_eq!(
        r.sent,
        r.received + r.failed,
        "{test}: sent {} != received {} + failed {} (unacknowledged {unacked}){}",
        r.sent,
        r.received,
        r.failed,
        bus.dump()
    );
    r
}

fn report(label: &str, r: &Run) -> Value {
    let v = json!({
        "run": label,
        "clients": r.clients,
        "seconds": (r.secs * 100.0).round() / 100.0,
        "messages": r.sent,
        "throughput_per_s": (r.sent as f64 / r.secs).round(),
        "failed": r.failed,
        "send_errors": r.send_errors,
        "latency_us": {"p50_median_client": r.p50, "p99_worst_client": r.p99, "max": r.max},
        "flooders_us": r.flood.json(),
        "paced_us": r.paced.json(),
        "hub_vm_hwm_kb": r.hub_hwm_kb,
        "sched": r.sched,
    });
    eprintln!("load: {v}");
    v
}

#[test]
#[ignore = "65 busy processes for about a minute: run scripts/load.sh"]
fn sixty_four_clients_flood_one_hub_with_bounded_memory() {
    let clients = env_u64("LOAD_CLIENTS", 64);
    let secs = env_u64("LOAD_SECS", 3);
    let rate = env_u64("LOAD_RATE", 200);
    let paced_clients = env_u64("LOAD_PACED", 8).clamp(1, clients);
    let runs =
        std::env::var("LOAD_RUNS").unwrap_or_else(|_| "flood,long,paced,mixed,control".into());
    let wanted = |name: &str| runs.split(',').any(|r| r.trim() == name);
    // Every `every`-th client (up to `paced_clients` of them) is paced in the mixed and
    // control runs.
    let every = clients / paced_clients;
    let is_paced = |i: u64| i % every == every - 1 && i / every < paced_clients;
    let client = |paced: bool, hop: u64| match paced {
        true => Client {
            rate,
            hop,
            event: "P",
        },
        false => Client {
            rate: 0,
            hop,
            event: "L",
        },
    };
    if wanted("mixed") {
        // A paced client sends two places on: its receiver also gets the flood of the
        // client before it.
        let spec: Vec<Client> = (0..clients)
            .map(|i| match is_paced(i) {
                true => client(true, 2),
                false => client(false, 1),
            })
            .collect();
        let mixed = run_mixed("load-mixed", &spec, secs * 1000);
        report(
            &format!("{paced_clients} paced at {rate}/s beside flooders"),
            &mixed,
        );
    }
    if wanted("control") {
        // The same paced clients talk only among themselves (each to the next paced one)
        // while the others flood among themselves: a control plane beside bulk traffic,
        // sharing the hub but no receiver with the flood.
        let next_alike = |i: u64| {
            (1..=clients)
                .find(|h| is_paced((i + h) % clients) == is_paced(i))
                .unwrap_or(clients)
        };
        let spec: Vec<Client> = (0..clients)
            .map(|i| client(is_paced(i), next_alike(i)))
            .collect();
        let control = run_mixed("load-control", &spec, secs * 1000);
        report(
            &format!("{paced_clients} paced at {rate}/s among themselves beside flooders"),
            &control,
        );
    }
    if wanted("paced") {
        let paced = run("load-paced", clients, secs * 1000, rate);
        report(&format!("paced, {rate}/s per client"), &paced);
    }
    if wanted("flood") && !wanted("long") {
        report("flood", &run("load-short", clients, secs * 1000, 0));
    }
    if !(wanted("flood") && wanted("long")) {
        return;
    }
    let short = run("load-short", clients, secs * 1000, 0);
    report("flood", &short);
    let long = run("load-long", clients, secs * 3000, 0);
    report("flood, 3x longer", &long);

    // Bounded by the queues: per link one write queue and one read buffer, plus a fixed
    // allowance for the process itself (code, the hub's tables, allocator slack).
    let bound_kb = (clients + 1) * (LINK_QUEUE + MAX_FRAME + 4) / 1024 + 32 * 1024;
    assert!(
        long.hub_hwm_kb <= bound_kb,
        "the hub peaked at {} kB, above the bound of its queues ({bound_kb} kB)",
        long.hub_hwm_kb
    );
    // ... and it does not grow with the length of the flood.
    assert!(
        long.hub_hwm_kb <= short.hub_hwm_kb + short.hub_hwm_kb / 4 + 4096,
        "the hub's peak grew with the duration: {} kB after {secs} s, {} kB after {} s",
        short.hub_hwm_kb,
        long.hub_hwm_kb,
        secs * 3
    );
}

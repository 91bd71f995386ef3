//! `bus_probe`: a TEST HELPER for the process tests (`cli/tests/bus.rs`, `cli/tests/hostile.rs`,
//! `cli/tests/guarantees.rs`, `cli/tests/load.rs`, `cli/tests/soak.rs`), not an example to learn the API
//! from.
//!
//! The bus integration tests spawn it as a real process next to the `interstate` binary, to
//! count messages, to push load through a hub, and to misbehave on the wire in ways a well
//! written client never does. Every subcommand takes `--bus NAME`; the bus directory comes
//! from `$INTERSTATE_DIR` (as for every node). Output is JSON, one object per line, on
//! stdout; diagnostics go to stderr.
//!
//! ```text
//! Node options, for every mode that runs a node: --idle-timeout-ms, --link-queue BYTES,
//! --reconnect-buffer BYTES, --max-frame BYTES, --keepalive-ms, --machines-per-link N,
//! --backoff-ms (the shortest reconnect backoff);
//! --auto: the auto role (serve the bus if nobody does, take over serving it when its hub
//! goes away) instead of the client role (--hub, where a mode has it: the hub role).
//!
//! bus_probe hub                  Serve the bus (a node in the hub role, with the node
//!                                options) until SIGTERM; its log lines are on stderr.
//!
//! bus_probe sink ID [--expect N] [--timeout-ms T] [--linger-ms L] [--hub] [--hold]
//!                  [--hold-ms H]
//!     A node (client role unless --hub) with a port ID. Counts events, checks each sender's
//!     order by the sequence number in the payload (`{"n": k}`), prints
//!     {"ready":true,...} once registered, then a final tally
//!     {"received","distinct","duplicates","out_of_order","max_n",...}
//!     when it has N distinct messages (after L more ms), on timeout (default 30 s), or on
//!     SIGTERM/SIGINT. It then sends a TALLY event (the tally as payload) to every sender.
//!     A DONE from a `source --announce-done` ends it too (after L ms), and the tally then
//!     has "accounting": every n that source sent as arrived, reported failed, both (by
//!     reason: "delivered_and_failed") or neither ("lost_silently", "lost_first").
//!     Exit code 0 when the expectation was met (or none was given), 1 otherwise.
//!     --hold: never read the port (its node acknowledges nothing: an unread message is not
//!     acknowledged). --hold-ms H: read nothing for the first H ms.
//!
//! bus_probe source ID TARGET N [--rate PER_S] [--timeout-ms T] [--linger-ms L]
//!                              [--progress-every K] [--payload-bytes B] [--hub]
//!                              [--announce-done]
//!     A node with a port ID that sends N events `E` with payload {"n": k}, k = 0..N-1, to
//!     TARGET (as fast as the bus takes them, or PER_S a second), driving the node loop.
//!     Counts `xstate.error.delivery` replies. Prints {"progress":k,...} every K sent (default
//!     1000), {"sending_done":true,...} after the last one, and keeps driving the loop (so
//!     buffered messages get flushed or retransmitted) until the target's TALLY arrives
//!     and every message is acknowledged (at most 2 s after the TALLY: acknowledgements
//!     may follow a reply), every message was reported failed, L ms passed after the last send (only with
//!     --linger-ms), or the timeout (default 30 s). Then prints the final line
//!     {"sent":..,"failed":..,"errors":..,"reasons":{..},"acknowledged":bool,"tally":..,
//!     "unacknowledged":..}; while waiting, {"waiting":true,...} every second.
//!     --announce-done: once every message is settled (acknowledged or reported failed),
//!     send TARGET a DONE with {"sent":N,"failed_n":{REASON:[n,..]}} (again if it fails),
//!     so that a sink can stop and account for every event exactly.
//!
//! bus_probe subscribers PREFIX K FILTER [--expect N] [--timeout-ms T]
//!     A node with K ports PREFIX-0.. each subscribed to FILTER; prints {"ready":true} once
//!     the hub holds every subscription, then per port how many publications arrived, and
//!     the duplicates (by sender and payload `n`), on SIGTERM or once each has N.
//!
//! bus_probe soak-sink ID --log FILE
//! bus_probe soak-source ID --targets A,B,.. --total N --log FILE [--rate PER_S]
//!     The soak test's workers (cli/tests/soak.rs): a statechart that appends every event's
//!     payload to FILE during its step (before the node acknowledges it), and a port that
//!     logs `S n` before sending `E<n>`, `F n reason` per failure and `D` when everything is
//!     settled, resuming after its last `S` when restarted.
//!
//! bus_probe load ID TARGET [--duration-ms D] [--rate PER_S] [--payload B] [--go-file F]
//!                          [--event NAME]
//!     The load test's client (cli/tests/load.rs): sends events NAME (default L) to TARGET as
//!     fast as backpressure allows (or PER_S a second) for D ms, starting when F exists,
//!     while receiving; prints {"sent","received","failed","latency_us":{"p50","p90","p99",
//!     "max"},"by_event":{NAME:{"count","p50",..}},...} (latencies by the sender's event).
//!
//! bus_probe raw-script STEP...   Speak the wire by hand, step by step: hello,
//!                                register:ID, unregister:ID, deliver:FROM:TO:EVENT:SEQ,
//!                                ack:FROM:TO:SEQ, ping, goodbye, bytes:HEX, shutdown,
//!                                wait:KIND, read:MS, hold:MS[:PING_MS] (read nothing);
//!                                --exit: leave at once after the last step.
//! bus_probe raw-flood N [--hold-ms H]
//!                                Open N connections, say nothing, count the Rejects.
//!
//! bus_probe raw-connect          Hello, then print the answer (Welcome or Reject).
//! bus_probe raw-garbage          A frame with a valid length and an undecodable body.
//! bus_probe raw-oversize         A length prefix larger than the largest frame.
//! bus_probe raw-truncated [--after-hello]
//!                                Part of a Hello frame, then close the writing half (with
//!                                --after-hello: after a complete handshake).
//! bus_probe raw-no-hello         Connect and send nothing.
//! bus_probe raw-spoof ID VICTIM_ID TARGET
//!     Handshake, register ID, then a Deliver to TARGET claiming to come from VICTIM_ID.
//!
//!     The raw modes speak the wire format directly (`interstate::core::wire::Frame`) and
//!     take --timeout-ms (default 10 s): how long to wait for the hub. They print each frame
//!     the hub sent as {"mode":..,"got":{"kind":..,...}} and finally
//!     {"mode":..,"closed":bool,"frames":[kinds],...}: `closed` says whether the hub closed
//!     the connection before the timeout.
//! ```
//!
//! The modes live in the files beside this one: `args.rs` (the command line and the node
//! options), `sink.rs`, `source.rs`, `soak.rs` (the soak test's workers), `load.rs` (the
//! load test's client), `raw.rs` (a connection speaking frames by hand, and the one-shot raw
//! modes) and `raw_script.rs` (`raw-script`, `raw-flood`). This file holds what they share
//! (printing, the stop flag), the `hub` mode and the dispatch.

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use interstate::bus::Role;
use serde_json::{json, Value};

mod args;
mod load;
mod raw;
mod raw_script;
mod sink;
mod soak;
mod source;
mod subscribers;

use args::Args;
use load::load;
use raw::raw;
use raw_script::{raw_flood, raw_script};
use sink::sink;
use soak::{soak_sink, soak_source};
use source::source;
use subscribers::subscribers;

pub(crate) fn emit(v: Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

/// Set by SIGINT/SIGTERM, so that a killed probe still prints its summary.
pub(crate) fn stop_flag() -> Result<Arc<AtomicBool>, String> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, flag.clone())
            .map_err(|e| format!("installing a signal handler: {e}"))?;
    }
    Ok(flag)
}

/// `hub`: serves the bus (with the node options) until SIGTERM/SIGINT. The node's log lines
/// (one per refused connection, malformed frame, spoof, ...) go to stderr as
/// `interstate: hub: ...`.
fn hub(args: &Args) -> Result<ExitCode, String> {
    let stop = stop_flag()?;
    let mut node = args.node_as(Role::Hub)?;
    emit(json!({"ready": true, "pid": std::process::id(), "hub": true}));
    while !stop.load(Ordering::Relaxed) {
        node.run_once(Some(Duration::from_millis(100)))
            .map_err(|e| e.to_string())?;
    }
    node.shutdown();
    emit(json!({"stopped": true, "stats": format!("{:?}", node.stats())}));
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    // The node's log lines (the hub's connection lines, a client's reconnects) on stderr,
    // as the `interstate` command prints them: the tests read them.
    if let Err(e) = interstate::bus::logging::install(log::LevelFilter::Info) {
        eprintln!("bus_probe: {e}");
        return ExitCode::from(2);
    }
    let result = Args::parse().and_then(|args| {
        let cmd = args
            .pos(0, "a subcommand (sink, source, raw-...)")?
            .to_string();
        match cmd.as_str() {
            "sink" => sink(&args),
            "source" => source(&args),
            "subscribers" => subscribers(&args),
            "hub" => hub(&args),
            "soak-sink" => soak_sink(&args),
            "soak-source" => soak_source(&args),
            "load" => load(&args),
            "raw-script" => raw_script(&args),
            "raw-flood" => raw_flood(&args),
            m if m.starts_with("raw-") => raw(&args, m),
            other => Err(format!("unknown subcommand '{other}'")),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bus_probe: {e}");
            ExitCode::from(2)
        }
    }
}

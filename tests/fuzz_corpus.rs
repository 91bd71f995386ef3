//! Replays the checked-in fuzz corpora on every `cargo test`, without a fuzzer or nightly.
//!
//! Every file of `fuzz/corpus/<target>/` goes through the very code the fuzz target runs:
//! `fuzz/src/lib.rs` is included here as a module, so the replay and the fuzzer cannot drift
//! apart. Inputs that once crashed a target are kept in its corpus, so they stay fixed.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

// The replay uses only part of the fuzz crate's API (its items and the re-exports that name
// them, such as `protocol::run_conn`), hence the allowances.
#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code, unused_imports)]
mod fuzz_logic;

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join("corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a readable directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs every corpus file of `target` through `run`, and fails listing every file that
/// panicked.
fn replay(target: &str, min_files: usize, run: fn(&[u8])) {
    let files = corpus(target);
    assert!(
        files.len() >= min_files,
        "fuzz/corpus/{target} has {} files; expected at least {min_files}",
        files.len()
    );
    let mut failed = Vec::new();
    for f in &files {
        let data = std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        if catch_unwind(AssertUnwindSafe(|| run(&data))).is_err() {
            failed.push(f.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: these inputs panic: {failed:#?}"
    );
}

#[test]
fn json_chart_corpus() {
    replay("json_chart", 5, fuzz_logic::json_chart);
}

#[test]
fn chart_image_corpus() {
    replay("chart_image", 3, fuzz_logic::chart_image);
}

#[test]
fn drive_machine_corpus() {
    replay("drive_machine", 3, fuzz_logic::drive_machine);
}

#[test]
fn frame_decode_corpus() {
    replay("frame_decode", 5, fuzz_logic::frame_decode);
}

#[test]
fn hub_corpus() {
    replay("hub", 5, fuzz_logic::hub);
}

#[test]
fn endpoint_corpus() {
    replay("endpoint", 5, fuzz_logic::endpoint);
}

#[test]
fn serial_corpus() {
    replay("serial", 5, fuzz_logic::serial);
}

#[test]
fn conn_corpus() {
    replay("conn", 5, fuzz_logic::conn);
}

#[test]
fn shm_ring_corpus() {
    replay("shm_ring", 5, fuzz_logic::shm_ring);
}

/// Hand-written hub sessions through the fuzz harness: the harness's model agrees with the
/// hub on the paths every run goes through (handshake, registration, routing, refusals,
/// backpressure, closing), so a fuzz run that finds nothing means something.
#[test]
fn hub_harness_scenarios() {
    use fuzz_logic::protocol::{ClientFrame as F, HubOp as Op, HubSession};
    let hello = |link| Op::Frame {
        link,
        frame: F::Hello {
            magic_ok: true,
            version_ok: true,
            max_frame: 256,
            exe: 5,
        },
    };
    let frame = |link, frame| Op::Frame { link, frame };
    let open = Op::Open {
        own_uid: true,
        allowed_gid: false,
    };
    // Links are numbered from 1: `link: 0` in an op is link 1.
    let scenarios: Vec<Vec<Op>> = vec![
        // Two clients, a message each way, an ack, a spoof, an unknown target, goodbye.
        vec![
            open.clone(),
            open.clone(),
            hello(0),
            hello(1),
            frame(0, F::Register(0)),
            frame(1, F::Register(1)),
            frame(
                0,
                F::Subscribe {
                    registry: true,
                    monitor: true,
                },
            ),
            frame(
                0,
                F::Deliver {
                    from: 0,
                    to: 1,
                    payload: 2,
                    seq: 10,
                },
            ),
            frame(
                1,
                F::Ack {
                    from: 1,
                    to: 0,
                    seq: 10,
                },
            ),
            frame(
                1,
                F::Deliver {
                    from: 0,
                    to: 1,
                    payload: 0,
                    seq: 1,
                },
            ),
            frame(
                1,
                F::Deliver {
                    from: 1,
                    to: 5,
                    payload: 0,
                    seq: 2,
                },
            ),
            frame(
                1,
                F::Ack {
                    from: 0,
                    to: 1,
                    seq: 3,
                },
            ),
            frame(1, F::Register(0)),
            frame(1, F::Ping(7)),
            frame(1, F::Goodbye(3)),
            Op::Advance(10_000),
        ],
        // Refusals: a stranger, a bad hello, a frame before hello, hub-only frames, garbage.
        vec![
            Op::Open {
                own_uid: false,
                allowed_gid: false,
            },
            Op::Open {
                own_uid: false,
                allowed_gid: true,
            },
            open.clone(),
            open.clone(),
            frame(0, F::Ping(1)),
            frame(
                1,
                F::Hello {
                    magic_ok: false,
                    version_ok: true,
                    max_frame: 256,
                    exe: 1,
                },
            ),
            frame(
                2,
                F::Hello {
                    magic_ok: true,
                    version_ok: true,
                    max_frame: 10,
                    exe: 1,
                },
            ),
            open.clone(),
            hello(3),
            frame(3, F::HubOnly(2)),
            open.clone(),
            hello(4),
            frame(4, F::Raw(vec![0xff, 0xff])),
        ],
        // Backpressure: a target with a tiny queue stalls its sender until it drains; then
        // it closes with a message still queued, which goes back to the sender.
        vec![
            open.clone(),
            open.clone(),
            hello(0),
            hello(1),
            frame(0, F::Register(0)),
            frame(1, F::Register(1)),
            Op::Room { link: 2, room: 4 },
            frame(
                0,
                F::Deliver {
                    from: 0,
                    to: 1,
                    payload: 1,
                    seq: 1,
                },
            ),
            frame(
                0,
                F::Deliver {
                    from: 0,
                    to: 1,
                    payload: 1,
                    seq: 2,
                },
            ),
            frame(
                0,
                F::Deliver {
                    from: 0,
                    to: 1,
                    payload: 1,
                    seq: 3,
                },
            ),
            Op::Drain(2),
            Op::Close(1),
        ],
        // Limits: ids per link, the routing table, bad ids, the link table, timeouts.
        vec![
            open.clone(),
            hello(0),
            frame(0, F::Register(0)),
            frame(0, F::Register(1)),
            frame(0, F::Register(2)),
            frame(0, F::Register(3)),
            frame(0, F::Register(13)),
            frame(0, F::Register(14)),
            frame(0, F::Register(16)),
            frame(0, F::Unregister(1)),
            frame(0, F::Register(15)),
            Op::LocalRegister(4),
            Op::LocalRegister(5),
            Op::LocalDeliver {
                from: 4,
                to: 0,
                seq: 5,
            },
            open.clone(),
            open.clone(),
            open.clone(),
            open.clone(),
            open.clone(),
            Op::Advance(700),
            Op::Advance(4000),
        ],
    ];
    for (i, ops) in scenarios.into_iter().enumerate() {
        if let Err(e) = catch_unwind(AssertUnwindSafe(|| {
            fuzz_logic::protocol::run_hub(&HubSession { ops })
        })) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("hub scenario {i}: {msg}");
        }
    }
}

/// The fixed charts of `drive_machine` compile and start in a legal configuration.
#[test]
fn drive_machine_charts_are_sound() {
    for (i, json) in fuzz_logic::CHARTS.iter().enumerate() {
        let compiled = interstate::compile_str(json)
            .unwrap_or_else(|e| panic!("fuzz chart {i} does not compile: {e}"));
        let mut m = Box::new(
            fuzz_logic::FuzzMachine::new(compiled.chart(), "fuzz").expect("capacities fit"),
        );
        m.start(
            interstate::Instant::ZERO,
            &mut fuzz_logic::FuzzBehavior::new(0),
        )
        .expect("starts");
        fuzz_logic::check_config(&m).unwrap_or_else(|e| panic!("fuzz chart {i}: {e}"));
    }
}

/// The seeds are what they claim to be: the images load, and the op files decode to sessions
/// with many operations (a change of `arbitrary`'s encoding would silently make them trivial).
#[test]
fn seeds_are_meaningful() {
    use arbitrary::Arbitrary;
    for f in corpus("chart_image") {
        if f.extension().is_some_and(|e| e == "isch") {
            let data = std::fs::read(&f).expect("readable");
            if let Err(e) = interstate::core::image::decode(&data) {
                panic!("{}: {e}", f.display());
            }
        }
    }
    for f in corpus("drive_machine") {
        if f.extension().is_some_and(|e| e == "bin") {
            let data = std::fs::read(&f).expect("readable");
            let s = fuzz_logic::Session::arbitrary_take_rest(arbitrary::Unstructured::new(&data))
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            assert!(
                s.ops.len() >= 8,
                "{}: only {} ops",
                f.display(),
                s.ops.len()
            );
        }
    }
}

#[test]
fn restore_snapshot_corpus() {
    replay("restore_snapshot", 3, fuzz_logic::restore_snapshot);
}

//! Replays the checked-in fuzz corpora on every `cargo test`, without a fuzzer or nightly.
//!
//! Every file of `fuzz/corpus/<target>/` goes through the very code the fuzz target runs:
//! `fuzz/src/lib.rs` is included here as a module, so the replay and the fuzzer cannot drift
//! apart. Inputs that once crashed a target are kept in its corpus, so they stay fixed.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
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

//! Compiles every case's chart to native Rust (`interstate::native::rust_module`) into
//! `$OUT_DIR`, and writes `cases.rs`: a module per chart and `run(i, ...)` dispatching to
//! the generated machine of case `i`. Charts the generator refuses are listed with its
//! message instead (`REFUSED`).
//!
//! Cases: `cli/tests/conformance/cases/*.json` and `tests/differential/generated.jsonl` of
//! the repository, and, for a development check, every `*.json` case of the directory named
//! by `INTERSTATE_NATIVE_EXTRA_CASES` (e.g. the SCION cases outside the repository).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let conformance = root.join("cli/tests/conformance/cases");
    let differential = root.join("tests/differential/generated.jsonl");
    println!("cargo:rerun-if-changed={}", conformance.display());
    println!("cargo:rerun-if-changed={}", differential.display());
    println!("cargo:rerun-if-env-changed=INTERSTATE_NATIVE_EXTRA_CASES");

    let mut cases: Vec<(String, serde_json::Value)> = Vec::new();
    let mut files = |dir: &Path, prefix: &str| {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        for p in paths {
            let text = std::fs::read_to_string(&p).expect("a readable case");
            let case: serde_json::Value = serde_json::from_str(&text).expect("a JSON case");
            let name = p.file_stem().unwrap().to_string_lossy().to_string();
            cases.push((format!("{prefix}{name}"), case));
        }
    };
    files(&conformance, "conformance/");
    if let Some(extra) = std::env::var_os("INTERSTATE_NATIVE_EXTRA_CASES") {
        files(Path::new(&extra), "extra/");
    }
    let text = std::fs::read_to_string(&differential).expect("the differential batch");
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let case: serde_json::Value = serde_json::from_str(line).expect("a JSON case");
        let name = case["name"].as_str().unwrap_or("unnamed").to_string();
        cases.push((format!("differential/{name}"), case));
    }

    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let mut index = String::new();
    let mut names = String::new();
    let mut arms = String::new();
    for (i, (name, case)) in cases.iter().enumerate() {
        let status = match interstate::compile_value(&case["chart"]) {
            Err(e) => format!("Err({:?})", format!("the chart does not compile: {e}")),
            Ok(compiled) => match interstate::native::rust_module(&compiled.chart(), name) {
                Err(e) => format!("Err({:?})", e.to_string()),
                Ok(code) => {
                    std::fs::write(out_dir.join(format!("case_{i}.rs")), code).expect("written");
                    let _ = writeln!(
                        index,
                        "#[allow(dead_code)]\npub mod case_{i} {{\n    include!(concat!(env!(\"OUT_DIR\"), \"/case_{i}.rs\"));\n}}"
                    );
                    let _ = writeln!(
                        arms,
                        "        {i} => interstate::simulate::run_native::<case_{i}::Native, {{ case_{i}::WORDS }}>(options, inputs, out),"
                    );
                    "Ok(())".to_string()
                }
            },
        };
        let _ = writeln!(names, "    ({name:?}, {status}),");
    }
    let code = format!(
        "{index}
/// Every case: its name, and `Err` with the generator's refusal when it has no native machine.
pub static CASES: &[(&str, Result<(), &str>)] = &[
{names}];

/// Runs case `i`'s generated machine through the simulator (`None`: no such machine).
pub fn run(
    i: usize,
    options: &interstate::simulate::Options,
    inputs: Vec<String>,
    out: &mut dyn std::io::Write,
) -> Option<std::io::Result<bool>> {{
    Some(match i {{
{arms}        _ => return None,
    }})
}}
"
    );
    std::fs::write(out_dir.join("cases.rs"), code).expect("cases.rs written");
}

//! `interstate compile --native`: the binary writes the native module of a chart (the same
//! text as `interstate::native::rust_module`), a chart with history states included. (A chart
//! the generator refuses, beyond the sizes its analysis holds, exits with status 2 and a
//! message naming the feature and the state: `tests/native_modules.rs`.)

use std::path::PathBuf;
use std::process::{Command, Output};

/// A path under the system temp directory, unique to this process and `name`.
fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("interstate-native-{}-{name}", std::process::id()))
}

fn interstate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_interstate"))
        .args(args)
        .output()
        .expect("start the interstate binary")
}

#[test]
fn compile_native_writes_the_generated_module() {
    let chart = temp("toggle.json");
    let module = temp("toggle_native.rs");
    let json = r#"{"id":"t","initial":"a","states":{"a":{"on":{"GO":"b"}},"b":{"on":{"GO":"a"}}}}"#;
    std::fs::write(&chart, json).unwrap();
    let out = interstate(&[
        "compile",
        "--native",
        chart.to_str().unwrap(),
        "-o",
        module.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let written = std::fs::read_to_string(&module).unwrap();
    let compiled = interstate::compile_str(json).unwrap();
    // An absolute path is named by its file name in the header.
    let name = chart.file_name().unwrap().to_string_lossy().to_string();
    let expected = interstate::native::rust_module(&compiled.chart(), &name).unwrap();
    assert_eq!(written, expected);
    assert!(written.contains("impl interstate_core::machine::NativeChart for Native"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("native Rust module"));
    let _ = std::fs::remove_file(&chart);
    let _ = std::fs::remove_file(&module);
}

#[test]
fn compile_native_compiles_history_states() {
    let chart = temp("history.json");
    let module = temp("history_native.rs");
    std::fs::write(
        &chart,
        r#"{"id":"p","initial":"a","states":{"a":{"initial":"x","states":{"x":{},"h":{"type":"history"}}}}}"#,
    )
    .unwrap();
    let out = interstate(&[
        "compile",
        "--native",
        chart.to_str().unwrap(),
        "-o",
        module.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let written = std::fs::read_to_string(&module).unwrap();
    assert!(written.contains("h.plan_microstep("), "{written}");
    let _ = std::fs::remove_file(&chart);
    let _ = std::fs::remove_file(&module);
}

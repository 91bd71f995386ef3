//! The native modules checked in for the step benchmark (`benches/common/native_*.rs`) are
//! what `interstate::native::rust_module` writes today for the benchmark's charts, and the
//! generator refuses what it cannot compile by naming the feature and the state.
//!
//! The device check crate's native lamp module is checked the same way. Regenerate the
//! modules with `INTERSTATE_BLESS=1 cargo test --test native_modules`.

use std::path::Path;

#[path = "../benches/common/step_charts.rs"]
mod step_charts;

fn check(name: &str, json: &str) {
    let source = format!("benches/common/step_charts.rs ({name})");
    up_to_date(json, &source, &format!("benches/common/native_{name}.rs"));
}

/// Compares (or with `INTERSTATE_BLESS` writes) the native module of `json` at `module`.
fn up_to_date(json: &str, source: &str, module: &str) {
    let compiled = interstate::compile_str(json).expect("the chart compiles");
    let code = interstate::native::rust_module(&compiled.chart(), source)
        .expect("the chart compiles to native code");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(module);
    if std::env::var_os("INTERSTATE_BLESS").is_some() {
        std::fs::write(&path, &code).expect("written");
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == code,
        "{} is not what the generator writes today: regenerate it with INTERSTATE_BLESS=1 cargo test --test native_modules",
        path.display()
    );
}

#[test]
fn the_benchmark_modules_are_up_to_date() {
    check("flat", step_charts::FLAT);
    check("deep", &step_charts::deep_chart());
    check("parallel", &step_charts::parallel_chart());
}

/// The device check crate's native lamp (`no_std_core/check/src/native_chart.rs`).
#[test]
fn the_device_module_is_up_to_date() {
    let json = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("no_std_core/check/lamp.json"),
    )
    .unwrap();
    up_to_date(
        &json,
        "no_std_core/check/lamp.json",
        "no_std_core/check/src/native_chart.rs",
    );
}

fn refusal(json: &str) -> String {
    let compiled = interstate::compile_str(json).expect("compiles");
    interstate::native::rust_module(&compiled.chart(), "test")
        .expect_err("the generator refuses it")
        .to_string()
}

#[test]
fn history_states_are_refused_by_name() {
    let msg = refusal(
        r#"{"id":"m","initial":"a","states":{"a":{"initial":"x","states":{"x":{},"hist":{"type":"history"}}}}}"#,
    );
    assert!(msg.contains("a history state"), "{msg}");
    assert!(msg.contains("'#m.a.hist'"), "{msg}");
}

#[test]
fn eventless_transitions_beside_parallel_states_compile() {
    let compiled = interstate::compile_str(
        r#"{"id":"m","type":"parallel","states":{"r":{"initial":"x","states":{"x":{"always":"y"},"y":{}}},"q":{}}}"#,
    )
    .unwrap();
    assert!(interstate::native::rust_module(&compiled.chart(), "test").is_ok());
}

#[test]
fn the_command_line_error_names_the_feature() {
    let compiled = interstate::compile_str(
        r#"{"id":"m","initial":"a","states":{"a":{"initial":"x","states":{"x":{},"h":{"type":"history","history":"deep"}}}}}"#,
    )
    .unwrap();
    let e = interstate::native::check(&compiled.chart()).unwrap_err();
    assert!(matches!(
        e,
        interstate::native::NativeError::Unsupported {
            feature: "a history state",
            ..
        }
    ));
}

//! The native modules checked in for the step benchmark (`benches/common/native_*.rs`) are
//! what `interstate::native::rust_module` writes today for the benchmark's charts, charts
//! with history states compile, and a refusal names the feature and the state.
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

#[test]
fn history_states_compile() {
    for json in [
        r##"{"id":"m","initial":"a","states":{"a":{"initial":"x","states":{"x":{"on":{"N":"y"}},"y":{},"hist":{"type":"history"}},"on":{"OUT":"b"}},"b":{"on":{"BACK":"#m.a.hist"}}}}"##,
        r##"{"id":"m","type":"parallel","states":{"r":{"initial":"x","states":{"x":{"on":{"N":"y"}},"y":{},"h":{"type":"history","history":"deep"}}},"q":{}}}"##,
    ] {
        let compiled = interstate::compile_str(json).unwrap();
        let code = interstate::native::rust_module(&compiled.chart(), "test")
            .expect("a chart with history states compiles to native code");
        assert!(code.contains("h.plan_microstep("), "{code}");
    }
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
fn a_refusal_names_the_feature_and_the_state() {
    // History states compile now; what remains refused (more history memory or states than
    // the generator's analysis holds) is named the same way.
    let e = interstate::native::NativeError::Unsupported {
        feature: "more history memory than 4,096 words",
        state: "m.a.h".into(),
        hint: "run this chart with the interpreter (a Machine)",
    };
    let msg = e.to_string();
    assert!(
        msg.starts_with("cannot compile to native code: more history memory"),
        "{msg}"
    );
    assert!(msg.contains("(state '#m.a.h')"), "{msg}");
}

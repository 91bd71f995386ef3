//! # interstate
//!
//! Statecharts in different processes on one machine, talking to each other as if they shared
//! one event bus.
//!
//! This crate is the user-facing facade:
//! - [`compile`]: XState-style JSON charts compiled into the core's validated tables, with
//!   errors that name the JSON path;
//! - [`bind`]: action, guard and delay names bound to Rust closures, every unbound name
//!   reported at once;
//! - [`simulate`]: a chart run on a virtual clock, printing XState-compatible traces;
//! - [`diagram`]: Mermaid and Graphviz pictures of a chart;
//! - [`codegen`]: a chart as a Rust module of statics, for devices;
//! - [`native`]: a chart's macrostep compiled to Rust (`interstate compile --native`);
//! - [`bus`]: nodes hosting JSON machines on a bus, from `interstate-platform`;
//! - [`Error`]: the one error type of this crate.
//!
//! The `interstate` command-line tool is built on this crate in its own package
//! (`interstate-cli`, in `cli/` of the repository).
//!
//! The statechart core itself is [`core`] (`interstate-core`): `no_std`, allocation-free,
//! sans-IO. See its documentation for how a machine is driven.
//!
//! In the repository, `docs/json-format.md` specifies the chart JSON this crate compiles,
//! `docs/architecture.md` explains how the crates fit, and `examples/` has a runnable example
//! of each feature (`cargo run --example traffic_light`).

#![deny(unsafe_code)]
#![deny(missing_docs)]

pub use interstate_core as core;

pub mod bind;
pub mod bus;
pub mod codegen;
pub mod compile;
pub mod diagram;
mod error;
pub mod native;
pub mod simulate;

pub use bind::{Behaviors, Bound, Ctx, Directory, LocalDirectory, Unbound};
pub use compile::{compile_str, compile_value, CompileError, CompiledChart};
pub use error::Error;
pub use interstate_core::{Chart, Duration, Event, Instant, Machine};

/// Loads a chart file's contents: a chart image (starting with the `ISCH` magic) or JSON
/// (UTF-8, with or without a byte order mark, as some editors on other systems write it).
pub fn load_chart_bytes(bytes: &[u8]) -> Result<CompiledChart, Error> {
    if bytes.starts_with(&interstate_core::image::MAGIC) {
        let chart = interstate_core::image::decode(bytes).map_err(Error::Image)?;
        return Ok(CompiledChart::from_chart(&chart));
    }
    let bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|_| Error::NotAChart)?;
    Ok(compile_str(text)?)
}

/// The UTF-8 byte order mark, accepted (and skipped) at the start of a JSON chart.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

#[cfg(test)]
mod tests {
    use super::*;

    const CHART: &str = r#"{"id":"t","initial":"a","states":{"a":{"on":{"GO":"b"}},"b":{}}}"#;

    #[test]
    fn a_json_chart_may_start_with_a_byte_order_mark() {
        let plain = load_chart_bytes(CHART.as_bytes()).expect("the chart compiles");
        let mut with_bom = UTF8_BOM.to_vec();
        with_bom.extend_from_slice(CHART.as_bytes());
        let marked = load_chart_bytes(&with_bom).expect("the chart with a BOM compiles");
        assert_eq!(marked.to_image(), plain.to_image());
    }

    #[test]
    fn a_byte_order_mark_alone_is_not_a_chart() {
        assert!(load_chart_bytes(UTF8_BOM).is_err());
    }
}

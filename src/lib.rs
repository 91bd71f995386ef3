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
//! - [`manifest`]: app manifests (TOML) that `interstate up` runs under the platform's
//!   supervisor, and [`demo`], the pipeline that `interstate demo` runs;
//! - the `interstate` command-line tool (`check`, `diagram`, `simulate`, `compile`).
//!
//! The statechart core itself is [`core`] (`interstate-core`): `no_std`, allocation-free,
//! sans-IO. See its documentation for how a machine is driven.
//!
//! In the repository, `docs/json-format.md` specifies the chart JSON this crate compiles,
//! `docs/architecture.md` explains how the crates fit, and `examples/` has a runnable example
//! of each feature (`cargo run --example traffic_light`).

pub use interstate_core as core;

pub mod bench;
pub mod bind;
pub mod bus;
pub mod cli_app;
pub mod cli_bus;
pub mod cli_serial;
pub mod codegen;
pub mod compile;
pub mod demo;
pub mod diagram;
pub mod manifest;
pub mod simulate;

pub use bind::{Behaviors, Bound, Ctx, Directory, LocalDirectory, Unbound};
pub use compile::{compile_str, compile_value, CompileError, CompiledChart};
pub use interstate_core::{Chart, Duration, Error, Event, Instant, Machine};

/// Loads a chart file's contents: a chart image (starting with the `ISCH` magic) or JSON.
pub fn load_chart_bytes(bytes: &[u8]) -> Result<CompiledChart, String> {
    if bytes.starts_with(&interstate_core::image::MAGIC) {
        let chart = interstate_core::image::decode(bytes).map_err(|e| e.to_string())?;
        return Ok(CompiledChart::from_chart(&chart));
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| "neither a chart image nor UTF-8 JSON".to_string())?;
    compile_str(text).map_err(|e| e.to_string())
}

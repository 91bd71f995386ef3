//! The `interstate` command's verbs, as the library behind its binary and its transport
//! benchmark. Not a stable API: programs use the `interstate` crate (the facade) and
//! `interstate-platform`; this crate only turns command lines into calls to them.
//!
//! - [`cmd`]: the bus verbs (`hub`, `send`, `ps`, `buses`, `monitor`, `run`), the app verbs
//!   (`up`, `down`, `demo`) and `serial-bridge`, and what they share;
//! - [`manifest`]: app manifests (TOML) that `interstate up` runs under the platform's
//!   supervisor;
//! - [`demo`]: the pipeline that `interstate demo` runs;
//! - [`inspect`]: `interstate inspect`, the live web inspector of a bus;
//! - [`mosquitto`]: a private MQTT broker for the InterNode benchmark, demo and tests;
//! - [`output`]: stdout that ends the tool quietly when its reader goes away, and `NO_COLOR`;
//! - [`bench`](mod@bench): `interstate bench`, the transport benchmark with its raw baselines.

pub mod bench;
pub mod cmd;
pub mod demo;
pub mod inspect;
pub mod manifest;
pub mod metrics_http;
pub mod mosquitto;
pub mod output;

//! Fuzz logic for the bus protocol: frame decoding, the hub and the client endpoint.
//!
//! - [`frame_decode`](fn@frame_decode): bytes as one frame body and as a length-delimited stream.
//! - [`hub`](fn@hub): an [`arbitrary`] [`HubSession`] of link events (open with credentials, frames,
//!   raw bytes, close, drain, advance time) driving a small `Hub` through a recording
//!   [`HubIo`](interstate_core::hub::HubIo), with an independent model of the registry and checks after every operation.
//! - [`endpoint`](fn@endpoint): an [`arbitrary`] [`EndpointSession`] driving an `Endpoint` the way the
//!   platform does (connect, frames from the hub, disconnects, time).
//! - [`conn`](fn@conn): an [`arbitrary`] [`ConnSession`] driving the platform's framed stream
//!   (`interstate_platform::conn::Conn`) over a fake socket.
//!
//! One file per target; the hub's, the largest, is a folder (`hub/`: the session, the
//! recording platform side, the model and the checks).

mod conn;
mod endpoint;
mod frame_decode;
mod hub;

pub use conn::{conn, run_conn, ConnOp, ConnSession, ReadStep};
pub use endpoint::{endpoint, run_endpoint, EndpointOp, EndpointSession, HubFrame};
pub use frame_decode::{check_body, frame_decode};
pub use hub::{hub, run_hub, ClientFrame, HubOp, HubSession, HUB_L, HUB_M};

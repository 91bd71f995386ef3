//! # interstate-grpc
//!
//! A gRPC gateway onto an interstate bus, for languages without a native client: the
//! `interstate.v1.Bus` service of `proto/interstate.proto` (Send, Request, Publish, Receive,
//! ListMachines, WatchMachines, Status), served on a Unix socket in the bus directory
//! (`<bus>.grpc.sock`), and over TCP only with TLS. See `docs/interop.md`.
//!
//! The gateway is an ordinary client of the bus: a synchronous bus node on its own thread
//! ([`bus`]), fed by the async gRPC side ([`service`]) through bounded channels, so the
//! runtime crates stay free of async.

#![warn(missing_docs)]

pub mod bench;
pub mod bus;
pub mod client;
pub mod listen;
pub mod service;
pub mod status;

/// The generated messages, client and server of `interstate.v1`.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("interstate.v1");
}

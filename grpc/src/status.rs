//! How the bus's errors become gRPC status codes (the table is in `docs/interop.md`).

use interstate_platform::PlatformError;
use tonic::{Code, Status};

/// A platform error as a gRPC status, with the platform's message (which says what to do).
pub fn from_platform(e: &PlatformError) -> Status {
    let code = match e {
        PlatformError::MachineIdTaken { .. } => Code::AlreadyExists,
        PlatformError::BadMachineId { .. } | PlatformError::Subscription { .. } => {
            Code::InvalidArgument
        }
        PlatformError::Core(interstate_core::Error::ReservedEvent)
        | PlatformError::Core(interstate_core::Error::BadTopic(_)) => Code::InvalidArgument,
        PlatformError::TooManyIds { .. } => Code::ResourceExhausted,
        PlatformError::Rejected { .. } => Code::PermissionDenied,
        PlatformError::NoHub { .. } => Code::Unavailable,
        PlatformError::Io { source, .. } if source.kind() == std::io::ErrorKind::TimedOut => {
            // The bus stayed full (receivers not acknowledging) for the sender's 5 s.
            Code::ResourceExhausted
        }
        _ => Code::Internal,
    };
    Status::new(code, e.to_string())
}

/// A request's failure (the payload of an `xstate.error.request` event) as a gRPC status.
pub fn from_request_error(to: &str, event: &str, payload: &[u8]) -> Status {
    let v: serde_json::Value = serde_json::from_slice(payload).unwrap_or_default();
    let reason = v["reason"].as_str().unwrap_or("failed");
    let message = v["message"].as_str().unwrap_or("");
    let code = match reason {
        "timeout" => Code::DeadlineExceeded,
        "unknown-target" => Code::NotFound,
        "target-gone" | "target-stopped" | "disconnected" => Code::Unavailable,
        "queue-full" => Code::ResourceExhausted,
        "too-large" | "reserved" => Code::InvalidArgument,
        "not-owner" => Code::PermissionDenied,
        _ => Code::Aborted,
    };
    Status::new(
        code,
        format!("request {event} to '{to}' failed: {reason}: {message}"),
    )
}

/// The gateway's bus thread is gone (it stopped on an error): nothing can be served.
pub fn bus_gone() -> Status {
    Status::unavailable("the gateway's link to the bus has stopped; restart interstate-grpc")
}

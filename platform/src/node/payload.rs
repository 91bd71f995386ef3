//! The JSON payloads the node makes, and the facts about this process it reports.

use interstate_core::wire::FailReason;
use interstate_core::TransportKind;

use crate::registry::MachineInfo;

pub(super) fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The payload of an `xstate.error.delivery` event: which message failed (its target, event
/// and sequence number, the one `send_from_port` returned) and why.
pub(super) fn delivery_error_payload(
    to: &str,
    event: &str,
    seq: u64,
    reason: FailReason,
) -> Vec<u8> {
    let code = match reason {
        FailReason::UnknownTarget => "unknown-target",
        FailReason::TargetGone => "target-gone",
        FailReason::QueueFull => "queue-full",
        FailReason::NotOwner => "not-owner",
        FailReason::TooLarge => "too-large",
        FailReason::Disconnected => "disconnected",
        _ => "undeliverable",
    };
    format!(
        "{{\"to\":{},\"event\":{},\"seq\":{seq},\"reason\":\"{code}\",\"message\":{}}}",
        json_string(to),
        json_string(event),
        json_string(reason.as_str())
    )
    .into_bytes()
}

pub(super) fn local_info(id: &str) -> MachineInfo {
    MachineInfo {
        machine: id.to_string(),
        pid: std::process::id(),
        uid: rustix::process::getuid().as_raw(),
        executable: executable_name(),
        transport: TransportKind::InProcess,
        since_ms: 0,
    }
}

pub(super) fn executable_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "unknown".into())
}

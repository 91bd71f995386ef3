//! The JSON payloads the node makes, and the facts about this process it reports.

use interstate_core::wire::FailReason;
use interstate_core::TransportKind;

use crate::registry::MachineInfo;

/// `s` as a JSON string literal: quotes, backslashes and control characters escaped.
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

/// The payload of an `xstate.error.delivery` event (see [`super::DELIVERY_ERROR_EVENT`]):
/// which message failed (its target, event and sequence number, the one `send_from_port`
/// returned) and why, as a short code and a sentence, and, when there is something to add
/// (`detail` not empty: a stopped target's error), that too:
/// `{"to":"lamp","event":"TOGGLE","seq":7,"reason":"target-gone","message":"..."}`, or
/// `{..,"reason":"target-stopped","message":"...","detail":"eventless loop in ..."}`.
///
/// A publication's failure (for one subscriber, its `to`) also names the topic:
/// `{"to":"panel","event":"ALARM","topic":"plant/1/alarm","seq":7,...}`.
///
/// The one place this payload is made: a node reporting its own machines' and ports'
/// failures, and the serial bridge reporting what its device cannot receive.
pub fn delivery_error_payload(
    to: &str,
    event: &str,
    seq: u64,
    reason: FailReason,
    detail: &str,
) -> Vec<u8> {
    let (topic, event) = interstate_core::topic::split_publication(event);
    let topic = topic
        .map(|t| format!(",\"topic\":{}", json_string(t)))
        .unwrap_or_default();
    let detail = if detail.is_empty() {
        String::new()
    } else {
        format!(",\"detail\":{}", json_string(detail))
    };
    format!(
        "{{\"to\":{},\"event\":{}{topic},\"seq\":{seq},\"reason\":\"{}\",\"message\":{}{detail}}}",
        json_string(to),
        json_string(event),
        reason.code(),
        json_string(reason.as_str())
    )
    .into_bytes()
}

/// This process as the bus knows it: what its hub side, its link to the hub, its registry
/// copy and the facade's `process_info` say about it. The one place these facts are read.
pub struct ThisProcess {
    /// The process id.
    pub pid: u32,
    /// The user id.
    pub uid: u32,
    /// The executable's file name (`unknown` if it cannot be found).
    pub executable: String,
}

impl ThisProcess {
    /// Read now (not cached: a forked child is a process of its own).
    pub fn current() -> Self {
        ThisProcess {
            pid: std::process::id(),
            uid: rustix::process::getuid().as_raw(),
            executable: std::env::current_exe()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "unknown".into()),
        }
    }
}

/// The registry entry of machine `id` of this process.
pub(super) fn local_info(id: &str) -> MachineInfo {
    let me = ThisProcess::current();
    MachineInfo {
        machine: id.to_string(),
        pid: me.pid,
        uid: me.uid,
        executable: me.executable,
        transport: TransportKind::InProcess,
        since_ms: 0,
        durable: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(to: &str, event: &str, seq: u64, reason: FailReason) -> String {
        String::from_utf8(delivery_error_payload(to, event, seq, reason, "")).unwrap()
    }

    #[test]
    fn a_delivery_error_payload_carries_the_detail_when_there_is_one() {
        let p = delivery_error_payload("m", "GO", 1, FailReason::TargetStopped, "loop \"a\"");
        assert_eq!(
            String::from_utf8(p).unwrap(),
            format!(
                "{{\"to\":\"m\",\"event\":\"GO\",\"seq\":1,\"reason\":\"target-stopped\",\
                 \"message\":\"{}\",\"detail\":\"loop \\\"a\\\"\"}}",
                FailReason::TargetStopped.as_str()
            )
        );
    }

    #[test]
    fn a_delivery_error_payload_escapes_quotes_backslashes_and_control_characters() {
        assert_eq!(
            payload("a\"b\\c", "E\n\t\u{1}\u{1f}é", 42, FailReason::TargetGone),
            "{\"to\":\"a\\\"b\\\\c\",\"event\":\"E\\u000a\\u0009\\u0001\\u001fé\",\"seq\":42,\
             \"reason\":\"target-gone\",\"message\":\"the target's process went away\"}"
        );
    }

    #[test]
    fn a_publications_failure_names_the_event_and_the_topic_apart() {
        assert_eq!(
            payload("panel", "plant/1/alarm\0ALARM", 7, FailReason::TargetGone),
            "{\"to\":\"panel\",\"event\":\"ALARM\",\"topic\":\"plant/1/alarm\",\"seq\":7,\
             \"reason\":\"target-gone\",\"message\":\"the target's process went away\"}"
        );
    }

    #[test]
    fn a_delivery_error_payload_names_every_reason() {
        let all = [
            (FailReason::UnknownTarget, "unknown-target"),
            (FailReason::TargetGone, "target-gone"),
            (FailReason::QueueFull, "queue-full"),
            (FailReason::NotOwner, "not-owner"),
            (FailReason::TooLarge, "too-large"),
            (FailReason::Disconnected, "disconnected"),
            (FailReason::Reserved, "reserved"),
            (FailReason::TargetStopped, "target-stopped"),
        ];
        for (reason, code) in all {
            assert_eq!(
                payload("lamp", "TOGGLE", u64::MAX, reason),
                format!(
                    "{{\"to\":\"lamp\",\"event\":\"TOGGLE\",\"seq\":{},\"reason\":\"{code}\",\
                     \"message\":\"{}\"}}",
                    u64::MAX,
                    reason.as_str()
                )
            );
        }
    }
}

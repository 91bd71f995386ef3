//! A machine leaving the bus through `bus::Client` (`unregister`, or `stopped` when it
//! stopped on an error): the acknowledgements its id owes go out before it leaves, since the
//! hub takes acknowledgements only from an id's owner.

use interstate_core::bus::{Accepted, Client, FrameSink, OwnerSlot, PairSlot};
use interstate_core::endpoint::EndpointConfig;
use interstate_core::wire::{
    Deliver, DeliveryFailed, FailReason, Frame, RegisterStatus, Welcome, MAX_STOP_ERROR,
    PROTOCOL_VERSION,
};
use interstate_core::Instant;

/// The frames the client sent, as their debug text.
struct Frames(Vec<String>);

impl FrameSink for Frames {
    fn send_frame(&mut self, f: &Frame<'_>) -> bool {
        self.0.push(format!("{f:?}"));
        true
    }
    fn send_body(&mut self, _: &[u8]) -> bool {
        true
    }
    fn has_pending(&self) -> bool {
        false
    }
}

type C = Client<Vec<u8>, Vec<PairSlot>, Vec<OwnerSlot>, 8>;

/// A client, welcomed, owning `s`, that has delivered message 5 from `x` to `s`.
fn holding_a_delivery(sink: &mut Frames) -> C {
    let now = Instant::ZERO;
    let mut c: C = Client::new(
        EndpointConfig::new(1, "test"),
        now,
        vec![0; 4096],
        vec![PairSlot::default(); 64],
        vec![OwnerSlot::default(); 64],
    );
    c.connected(now, sink);
    let welcome = Frame::Welcome(Welcome {
        version: PROTOCOL_VERSION,
        max_frame: 65536,
        link: 1,
        hub_pid: 2,
    });
    c.handle_frame(now, welcome, sink);
    c.register("s", sink).unwrap();
    let ok = Frame::RegisterResult {
        machine: "s",
        status: RegisterStatus::Ok,
    };
    c.handle_frame(now, ok, sink);
    let d = Deliver {
        from: "x",
        to: "s",
        event: "E",
        payload: b"",
        seq: 5,
        correlation: Default::default(),
    };
    assert_eq!(c.accept(&d, true), Accepted::New);
    sink.0.clear();
    c
}

#[test]
fn unregister_sends_the_acknowledgements_owed_first() {
    let mut sink = Frames(Vec::new());
    let mut c = holding_a_delivery(&mut sink);
    c.unregister("s", &mut sink);
    let ack = Frame::Ack {
        from: "s",
        to: "x",
        seq: 5,
    };
    assert_eq!(
        sink.0,
        vec![
            format!("{ack:?}"),
            format!("{:?}", Frame::Unregister { machine: "s" })
        ]
    );
    sink.0.clear();
    c.unregister("s", &mut sink);
    assert!(
        sink.0.is_empty(),
        "an id no longer held is not unregistered twice"
    );
}

#[test]
fn a_stopped_machine_acknowledges_then_says_stopped_with_its_error_cut_to_the_bound() {
    let mut sink = Frames(Vec::new());
    let mut c = holding_a_delivery(&mut sink);
    // 200 bytes of two-byte characters: cut at a character boundary, at MAX_STOP_ERROR.
    let error = "é".repeat(100);
    c.stopped("s", &error, &mut sink);
    assert_eq!(sink.0.len(), 2, "{:?}", sink.0);
    assert!(sink.0[0].starts_with("Ack"), "{:?}", sink.0);
    let kept = "é".repeat(MAX_STOP_ERROR / 2);
    assert_eq!(
        sink.0[1],
        format!(
            "{:?}",
            Frame::Stopped {
                machine: "s",
                error: &kept
            }
        )
    );
    sink.0.clear();
    c.stopped("s", &error, &mut sink);
    assert!(sink.0.is_empty(), "said once");
}

#[test]
fn a_failure_found_here_is_reported_to_the_hub_only_while_connected() {
    let mut sink = Frames(Vec::new());
    let mut c = holding_a_delivery(&mut sink);
    sink.0.clear();
    let f = DeliveryFailed {
        from: "s",
        to: "big",
        event: "E",
        seq: 3,
        reason: FailReason::TooLarge,
        detail: "",
    };
    assert!(c.report_found_failure(&f, &mut sink));
    assert_eq!(sink.0, vec![format!("{:?}", Frame::NodeFailure(f))]);
    c.disconnected(Instant::from_millis(1));
    sink.0.clear();
    assert!(!c.report_found_failure(&f, &mut sink));
    assert!(sink.0.is_empty());
}

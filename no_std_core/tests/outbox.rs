//! The outbox by index: the host's pump takes the `i`th message without a view of every one
//! before it.

use interstate_core::{image, Event, Instant, Machine, NoBehavior, Target};

/// The `lamp` chart (`no_std_core/check/lamp.json`): TOGGLE sends `LAMP_ON` to `controller`,
/// and its timer `LAMP_OFF` 300 ms later.
static LAMP: &[u8] = include_bytes!("../check/lamp.isch");

#[test]
fn the_outbox_by_index_is_the_outbox_in_order() {
    let mut lamp: Machine<'static> = Machine::new(image::decode(LAMP).unwrap(), "lamp").unwrap();
    let t = Instant::ZERO;
    lamp.start(t, &mut NoBehavior).unwrap();
    lamp.send(t, Event::new("TOGGLE"), &mut NoBehavior).unwrap();
    let due = lamp.poll_timeout().expect("the lamp's timer");
    lamp.handle_timeout(due, &mut NoBehavior).unwrap();
    lamp.send(due, Event::new("TOGGLE"), &mut NoBehavior)
        .unwrap();
    let n = lamp.outbox_len();
    assert_eq!(n, 3);
    let events: Vec<_> = (0..n).map(|i| lamp.outbox_get(i).unwrap().event).collect();
    assert_eq!(events, ["LAMP_ON", "LAMP_OFF", "LAMP_ON"]);
    for (i, m) in lamp.outbox().enumerate() {
        let got = lamp.outbox_get(i).expect("within the outbox");
        assert_eq!(got.target, m.target);
        assert_eq!(got.event, m.event);
        assert_eq!(got.payload, m.payload);
        assert_eq!(got.target, Target::Machine("controller"));
    }
    assert!(lamp.outbox_get(n).is_none(), "past the end");
    lamp.consume_outbox(1);
    assert_eq!(
        lamp.outbox_get(0).map(|m| m.event),
        Some("LAMP_OFF"),
        "the oldest left is first"
    );
}

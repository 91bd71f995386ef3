//! Events to and from an in-process child never allocate.
//!
//! A counting global allocator (as in `no_alloc.rs`) is armed while a host loop drives a
//! parent and the child it invoked: the parent's `sendTo` by invoke id goes to the child's
//! machine id, the child answers with `sendParent` (with a payload), the parent counts the
//! answers; 10 000 round trips, each two macrosteps and two outbox deliveries. Everything is
//! built first (charts, bound closures, both machines, started); the test asserts that nothing
//! was allocated and that the round trips happened.
//!
//! Only one `#[test]` lives in this file: the counter is thread-local.

use std::sync::atomic::Ordering;

use interstate::core::Target;
use interstate::{compile_str, Behaviors, Event, Instant, Machine};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::{ALLOCATIONS, ARMED};

const PARENT: &str = r#"{
  "id": "p", "initial": "run",
  "states": {
    "run": {
      "invoke": {"src": "echo", "id": "kid"},
      "on": {
        "POKE": {"actions": {"type": "sendTo", "to": "kid", "event": "PING", "data": {"from": "event"}}},
        "PONG": {"actions": "counted"}
      }
    }
  }
}"#;

const CHILD: &str = r#"{
  "id": "echo", "initial": "a",
  "states": {
    "a": { "on": { "PING": { "target": "b", "actions": {"type": "sendParent", "event": "PONG", "data": {"from": "event"}} } } },
    "b": { "on": { "PING": { "target": "a", "actions": {"type": "sendParent", "event": "PONG", "data": {"from": "event"}} } } }
  }
}"#;

type M<'c> = Machine<'c, 1, 8, 8, 4, 4, 256, 32, 0>;

#[test]
fn events_to_and_from_an_in_process_child_do_not_allocate() {
    let parent_chart = compile_str(PARENT).unwrap();
    let child_chart = compile_str(CHILD).unwrap();
    let (pc, cc) = (parent_chart.chart(), child_chart.chart());
    let counted = std::rc::Rc::new(std::cell::Cell::new(0u64));
    let c = counted.clone();
    let mut parent_bound = Behaviors::new()
        .actor("echo")
        .action("counted", move |_| c.set(c.get() + 1))
        .bind(&pc)
        .unwrap();
    let mut child_bound = Behaviors::new().bind(&cc).unwrap();
    let mut parent = Box::new(M::new(pc, "p").unwrap());
    let mut child = Box::new(M::new(cc, "p/kid").unwrap());
    let now = Instant::ZERO;
    parent.start(now, &mut parent_bound).unwrap();
    assert_eq!(
        parent.child_changes().count(),
        1,
        "the parent started its child"
    );
    parent.clear_outbox();
    child.start(now, &mut child_bound).unwrap();
    let payload = br#"{"n":42}"#;
    let mut misrouted = 0u64;

    ARMED.with(|a| a.set(true));
    for _ in 0..10_000 {
        parent
            .send(
                now,
                Event::new("POKE").with_payload(payload),
                &mut parent_bound,
            )
            .unwrap();
        // The host routes by machine id: the child's is the parent's, a slash, the invoke id.
        for m in parent.outbox() {
            if m.target != Target::Machine("p/kid") {
                misrouted += 1;
                continue;
            }
            let ev = Event::new(m.event).with_payload(m.payload);
            child.send(now, ev, &mut child_bound).unwrap();
        }
        parent.clear_outbox();
        for m in child.outbox() {
            if m.target != Target::Machine("p") {
                misrouted += 1;
                continue;
            }
            let ev = Event::new(m.event).with_payload(m.payload);
            parent.send(now, ev, &mut parent_bound).unwrap();
        }
        child.clear_outbox();
    }
    ARMED.with(|a| a.set(false));

    assert_eq!(
        ALLOCATIONS.load(Ordering::Relaxed),
        0,
        "allocations while armed"
    );
    assert_eq!(misrouted, 0);
    assert_eq!(counted.get(), 10_000, "every PING came back as a PONG");
}

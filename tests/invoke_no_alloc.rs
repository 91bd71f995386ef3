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

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use interstate::core::Target;
use interstate::{compile_str, Behaviors, Event, Instant, Machine};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    // `try_with`: the allocator can be called while thread-locals are being torn down.
    if ARMED.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

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

//! A running machine never allocates.
//!
//! A counting global allocator wraps the system one; while it is armed on this thread, every
//! allocation is counted. The test builds everything first (the chart, the bound closures, the
//! machine, the pre-resolved events), then arms the counter and drives 100 000 events and the
//! timers they start through a hierarchical and parallel chart with `after` delays, delayed
//! sends, history and entry, exit and transition actions whose closures use the context
//! (`send` to another machine, `send_self`, `send_after`, the payload), draining the outbox
//! as a host would. It then disarms the counter and asserts that nothing was allocated, and
//! that the work really happened.
//!
//! Only one `#[test]` lives in this file, and the armed window is single-threaded: the flag is
//! thread-local, so the test harness's own threads cannot disturb the count.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::Ordering;

use interstate::core::{EventId, Target};
use interstate::{Behaviors, Duration, Event, Instant, Machine};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::{ALLOCATIONS, ARMED};

/// A worker with a job cycle, a parallel link monitor and a deep history, exercising every
/// kind of step the core has: hierarchy, parallel regions, `after`, `always`, `raise`,
/// delayed `sendTo`, `cancel`, history, guards.
const CHART: &str = r##"{
  "id": "worker",
  "type": "parallel",
  "states": {
    "job": {
      "initial": "idle",
      "states": {
        "idle": {
          "entry": "enterIdle",
          "exit": "exitIdle",
          "on": { "START": { "target": "busy", "actions": "onStart" } }
        },
        "busy": {
          "initial": "fetch",
          "entry": ["enterBusy", {"type": "sendTo", "to": "logger", "event": "BUSY", "delay": 15, "id": "busyNote"}],
          "exit": ["exitBusy", {"type": "cancel", "id": "busyNote"}],
          "after": { "40": { "target": "idle", "actions": "timedOut" } },
          "on": {
            "PAUSE": "paused",
            "DONE": { "target": "idle", "actions": "finished" }
          },
          "states": {
            "fetch": {
              "entry": "enterFetch",
              "on": { "NEXT": { "target": "work", "actions": "fetched" } }
            },
            "work": {
              "entry": "enterWork",
              "exit": "exitWork",
              "after": { "slowDelay": { "target": "fetch", "actions": "slow" } },
              "on": {
                "NEXT": [
                  { "guard": "everyThird", "target": "check" },
                  { "target": "fetch", "actions": "worked" }
                ]
              }
            },
            "check": {
              "entry": [{"type": "raise", "event": "CHECKED"}],
              "on": { "CHECKED": { "target": "fetch", "actions": "checked" } }
            },
            "hist": { "type": "history", "history": "deep" }
          }
        },
        "paused": {
          "entry": "enterPaused",
          "on": { "RESUME": "#worker.job.busy.hist" },
          "always": { "guard": "tooLong", "target": "idle" }
        }
      }
    },
    "link": {
      "initial": "down",
      "states": {
        "down": {
          "entry": "enterDown",
          "after": { "25": "up" },
          "on": { "PING": "up" }
        },
        "up": {
          "entry": "enterUp",
          "exit": "exitUp",
          "on": {
            "PING": { "actions": "pong" },
            "DROP": "down"
          }
        }
      }
    }
  }
}"##;

/// The host's inputs, in a fixed cycle.
const INPUTS: &[&str] = &[
    "START", "NEXT", "NEXT", "PING", "NEXT", "PAUSE", "RESUME", "NEXT", "DROP", "NEXT", "DONE",
    "START", "NEXT", "PAUSE", "PING", "RESUME", "DONE",
];

const EVENTS: u64 = 100_000;

#[derive(Default)]
struct Counters {
    actions: Cell<u64>,
    self_sends: Cell<u64>,
    guard_calls: Cell<u64>,
}

#[test]
fn a_running_machine_never_allocates() {
    // ----- set up, allocating freely -----
    let compiled = interstate::compile_str(CHART).expect("the chart compiles");
    let chart = compiled.chart();
    let counters = Rc::new(Counters::default());
    let action = |name: &'static str| {
        let c = counters.clone();
        move |cx: &mut interstate::Ctx<'_, '_>| {
            let n = c.actions.get() + 1;
            c.actions.set(n);
            match name {
                "enterBusy" | "fetched" => {
                    let bytes = n.to_le_bytes();
                    let _ = cx.send("logger", "PROGRESS", &bytes);
                }
                "enterUp" => {
                    // A postcard payload, encoded into the outbox's own storage.
                    let at = cx.now().as_millis();
                    let _ = cx.send_value("monitor", "LINK_UP", &(n as u32, at));
                }
                "worked" => {
                    c.self_sends.set(c.self_sends.get() + 1);
                    let _ = cx.send_self("PING", b"");
                }
                "checked" => {
                    let mut id = [0u8; 8];
                    let len = cx.machine_id().len().min(8);
                    id[..len].copy_from_slice(&cx.machine_id().as_bytes()[..len]);
                    let _ = cx.send_after(
                        Target::Machine("audit"),
                        "CHECK",
                        Duration::from_millis(5),
                        &id[..len],
                    );
                }
                _ => {}
            }
        }
    };
    let mut behaviors = Behaviors::new()
        .delay("slowDelay", Duration::from_millis(12))
        .on_log(|_, _| {});
    for name in [
        "enterIdle",
        "exitIdle",
        "onStart",
        "enterBusy",
        "exitBusy",
        "timedOut",
        "finished",
        "enterFetch",
        "fetched",
        "enterWork",
        "exitWork",
        "slow",
        "worked",
        "checked",
        "enterPaused",
        "enterDown",
        "enterUp",
        "exitUp",
        "pong",
    ] {
        behaviors = behaviors.action(name, action(name));
    }
    let gc = counters.clone();
    behaviors = behaviors.guard("everyThird", move |_| {
        let n = gc.guard_calls.get() + 1;
        gc.guard_calls.set(n);
        n % 3 == 0
    });
    behaviors = behaviors.guard("tooLong", |_| false);
    let mut bound = behaviors.bind(&chart).expect("every name is bound");

    let mut machine: Box<Machine<'_, 1, 8, 16, 8, 8, 512>> =
        Box::new(Machine::new(chart, "worker").expect("the capacities fit the chart"));
    let events: Vec<Event<'_>> = INPUTS
        .iter()
        .map(|name| Event::from_id(&chart, chart.event(name).expect("the chart knows it")))
        .collect();
    let mut self_events: heapless::Vec<EventId, 16> = heapless::Vec::new();
    let mut now = Instant::ZERO;
    let mut delivered_self = 0u64;
    let mut outbox_messages = 0u64;
    let mut payload_bytes = 0u64;
    let mut timers_fired = 0u64;
    let mut errors = 0u64;
    machine.start(now, &mut bound).expect("the machine starts");
    machine.clear_outbox();
    let microsteps_before = machine.stats().microsteps;

    // The counter works: one allocation made while armed is seen.
    ARMED.with(|a| a.set(true));
    let probe = std::hint::black_box(Box::new(7u64));
    ARMED.with(|a| a.set(false));
    drop(probe);
    assert_eq!(
        ALLOCATIONS.swap(0, Ordering::Relaxed),
        1,
        "the counter missed an allocation"
    );

    // ----- the armed window: nothing below may allocate -----
    ARMED.with(|a| a.set(true));
    for i in 0..EVENTS {
        now = now + Duration::from_millis(4);
        if machine
            .send(now, events[(i % events.len() as u64) as usize], &mut bound)
            .is_err()
        {
            errors += 1;
        }
        while machine.poll_timeout().is_some_and(|t| t <= now) {
            match machine.handle_timeout(now, &mut bound) {
                Ok(true) => timers_fired += 1,
                Ok(false) => break,
                Err(_) => {
                    errors += 1;
                    break;
                }
            }
        }
        // Drain the outbox as a host does: deliver what is for this machine, hand the rest on.
        for m in machine.outbox() {
            outbox_messages += 1;
            payload_bytes += m.payload.len() as u64;
            if let Target::ThisMachine = m.target {
                if let Some(id) = chart.event(m.event) {
                    let _ = self_events.push(id);
                }
            }
        }
        machine.clear_outbox();
        while let Some(id) = self_events.pop() {
            delivered_self += 1;
            if machine
                .send(now, Event::from_id(&chart, id), &mut bound)
                .is_err()
            {
                errors += 1;
            }
        }
        machine.clear_outbox();
    }
    ARMED.with(|a| a.set(false));
    // ----- disarmed -----

    let allocations = ALLOCATIONS.load(Ordering::Relaxed);
    let stats = machine.stats();
    let summary = format!(
        "allocations {allocations}, actions {}, guard calls {}, microsteps {}, timers fired \
         {timers_fired}, outbox messages {outbox_messages} ({payload_bytes} payload bytes), \
         self-sends {} delivered {delivered_self}, send failures {}, errors {errors}",
        counters.actions.get(),
        counters.guard_calls.get(),
        stats.microsteps - microsteps_before,
        counters.self_sends.get(),
        stats.send_failures,
    );
    eprintln!("{summary}");
    assert_eq!(allocations, 0, "the machine allocated: {summary}");
    assert_eq!(errors, 0, "{summary}");
    assert_eq!(stats.send_failures, 0, "{summary}");
    assert!(machine.is_active(chart.find_state("worker.job").unwrap()));
    // The work really happened.
    assert!(stats.events >= EVENTS, "{summary}");
    assert!(counters.actions.get() >= 2 * EVENTS, "{summary}");
    assert!(counters.guard_calls.get() >= EVENTS / 20, "{summary}");
    assert!(timers_fired >= EVENTS / 20, "{summary}");
    assert!(outbox_messages >= EVENTS / 4, "{summary}");
    assert!(payload_bytes >= EVENTS, "{summary}");
    assert!(delivered_self >= EVENTS / 100, "{summary}");
    assert_eq!(delivered_self, counters.self_sends.get(), "{summary}");
}

//! The behaviors the generated charts run with: scripted guard values and actions that log,
//! send, raise and cancel, bound through the facade's closures.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use interstate::core::Target;
use interstate::{Behaviors, Duration};

use crate::{ACTIONS, GUARDS};

/// Guard values: a cyclic list of booleans, read one per guard evaluation (deterministic for a
/// given input, but different from call to call).
#[derive(Clone)]
pub(crate) struct GuardScript {
    values: Rc<Vec<bool>>,
    calls: Rc<Cell<usize>>,
}

impl GuardScript {
    pub(crate) fn new(values: &[bool]) -> Self {
        let values = if values.is_empty() {
            vec![false]
        } else {
            values.to_vec()
        };
        GuardScript {
            values: Rc::new(values),
            calls: Rc::new(Cell::new(0)),
        }
    }
    pub(crate) fn next(&self, guard: usize) -> bool {
        let n = self.calls.get();
        self.calls.set(n + 1);
        self.values[(n + guard) % self.values.len()]
    }
}

/// Binds every name the generator uses, through the facade's closures.
pub(crate) fn behaviors(guards: &GuardScript, log: &Rc<RefCell<Vec<String>>>) -> Behaviors {
    let mut b = Behaviors::new()
        .delay("slow", Duration::from_millis(30))
        .on_log({
            let log = log.clone();
            move |_, msg| log.borrow_mut().push(format!("log:{msg}"))
        });
    for (i, &g) in GUARDS.iter().enumerate() {
        let script = guards.clone();
        b = b.guard(g, move |_| script.next(i));
    }
    let last_send = Rc::new(Cell::new(None));
    for &a in ACTIONS {
        let log = log.clone();
        let last_send = last_send.clone();
        b = b.action(a, move |cx| {
            log.borrow_mut().push(format!("{a}@{}", cx.event().name()));
            match a {
                "selfSend" => {
                    let _ = cx.send_self("B", b"");
                }
                "peerSend" => {
                    let _ = cx.send("peer", "HELLO", b"\x01\x02");
                }
                "laterSend" => {
                    let target = if cx.now().as_millis() % 2 == 0 {
                        Target::Machine("peer")
                    } else {
                        Target::ThisMachine
                    };
                    let delay = Duration::from_millis(cx.now().as_millis() % 20);
                    if let Ok(id) = cx.send_after(target, "A", delay, b"later") {
                        last_send.set(Some(id));
                    }
                }
                "cancelLater" => {
                    if let Some(id) = last_send.take() {
                        cx.cancel(id);
                    }
                }
                _ => {}
            }
        });
    }
    b
}

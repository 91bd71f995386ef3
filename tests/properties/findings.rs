//! What the properties (and `tests/no_alloc.rs`) found, pinned down as plain tests: each one a
//! small chart and the exact behaviour it must show.

use std::cell::RefCell;
use std::rc::Rc;

use interstate::core::Error;
use interstate::core::Target;
use interstate::{Behaviors, Chart, Duration, Event, Instant};

use crate::mutated::OwnedTables;
use crate::{M, MACHINE_ID};

/// Runs `interstate simulate` logic on a chart and returns the trace lines.
fn simulate(json: &str, inputs: &[&str]) -> Vec<String> {
    let compiled = interstate::compile_str(json).expect("the chart compiles");
    let mut out = Vec::new();
    interstate::simulate::run(
        &compiled.chart(),
        &Default::default(),
        inputs.iter().map(|s| s.to_string()),
        &mut out,
    )
    .expect("writing to a Vec cannot fail");
    String::from_utf8(out)
        .expect("the trace is UTF-8")
        .lines()
        .map(str::to_string)
        .collect()
}

/// Found by `random_charts_keep_legal_configurations`: a history state whose parent is
/// parallel, with no default target and no memory yet, stood for nothing, so a transition to
/// it exited the regions and entered none. XState v5.33.3 re-enters the regions (trace below,
/// from the oracle); so does interstate now.
#[test]
fn parallel_history_without_default_enters_every_region() {
    let chart = r##"{"id":"m","type":"parallel","states":{"a":{"entry":"en_a","exit":"ex_a"},"h":{"type":"history"}},"on":{"GO":{"target":"#m.h","actions":"t_go"}}}"##;
    assert_eq!(
        simulate(chart, &["GO"]),
        [
            r#"{"step":0,"input":null,"value":{"a":{}},"actions":["en_a"],"done":false}"#,
            r#"{"step":1,"input":"GO","value":{"a":{}},"actions":["ex_a","t_go","en_a"],"done":false}"#,
        ]
    );
}

/// Found by `random_charts_keep_legal_configurations`, and XState v5 does the same: in region
/// `r1`, `x` goes to the history state `h` that stands for `x` itself, so that transition's
/// domain is `x`: it exits nothing and re-enters `x`. `r2`'s transition to `out` exits all of
/// `p`, and the two do not conflict (the first exit set is empty). So `x` is entered again
/// after `p` was exited and stays active with no active parent: XState's value hides it, and
/// so does interstate's (its `select` walks down from the root). The trace matches the oracle's.
#[test]
fn xstate_quirk_history_standing_for_its_source() {
    let chart = r##"{"id":"m","initial":"p","states":{"p":{"type":"parallel","entry":"en_p","exit":"ex_p","states":{"r1":{"initial":"x","entry":"en_r1","exit":"ex_r1","states":{"x":{"entry":"en_x","exit":"ex_x","on":{"GO":"#m.p.r1.h"}},"h":{"type":"history"}}},"r2":{"initial":"y","states":{"y":{"entry":"en_y","exit":"ex_y","on":{"GO":"#m.out"}}}}}},"out":{"entry":"en_out"}}}"##;
    assert_eq!(
        simulate(chart, &["GO", "GO"]),
        [
            r#"{"step":0,"input":null,"value":{"p":{"r1":"x","r2":"y"}},"actions":["en_p","en_r1","en_x","en_y"],"done":false}"#,
            r#"{"step":1,"input":"GO","value":"out","actions":["ex_y","ex_x","ex_r1","ex_p","en_x","en_out"],"done":false}"#,
            r#"{"step":2,"input":"GO","value":"out","actions":[],"done":false}"#,
        ]
    );
}

/// Found by `tests/no_alloc.rs`: a delayed send from an action (`send_after`) stores its
/// target, event name and payload in the timer byte arena; removing the timer (it fires, is
/// cancelled, or the machine stops) freed the three spans lowest first without shifting the
/// later spans of the same message, so it panicked in `free_timer_bytes` ("slice index starts
/// at 10 but ends at 5") or, with other timers behind it, corrupted their bytes.
#[test]
fn delayed_sends_from_actions_fire_and_cancel_cleanly() {
    let compiled = interstate::compile_str(
        r#"{"id":"m","initial":"a","states":{"a":{"entry":"later","on":{"GO":"b"}},"b":{"entry":"cancelFirst"}}}"#,
    )
    .expect("the chart compiles");
    let chart = compiled.chart();
    let ids = Rc::new(RefCell::new(Vec::new()));
    let (ids1, ids2) = (ids.clone(), ids.clone());
    let mut b = Behaviors::new()
        .action("later", move |cx| {
            for (i, (to, event, payload)) in [
                ("audit", "CHECK", &b"xyz"[..]),
                ("peer", "PING", &b""[..]),
                ("logger", "NOTE", &b"0123456789"[..]),
            ]
            .into_iter()
            .enumerate()
            {
                let id = cx
                    .send_after(
                        Target::Machine(to),
                        event,
                        Duration::from_millis(10 + i as u64),
                        payload,
                    )
                    .expect("the timer table has room");
                ids1.borrow_mut().push(id);
            }
        })
        .action("cancelFirst", move |cx| {
            let first = ids2.borrow()[0];
            assert!(cx.cancel(first), "the first send is still pending");
        })
        .bind(&chart)
        .expect("every name is bound");
    let mut m = M::new(chart, MACHINE_ID).expect("capacities fit");
    m.start(Instant::ZERO, &mut b).expect("starts");
    // Cancel the oldest one (bytes behind it must move down intact)...
    m.send(Instant::ZERO, Event::new("GO"), &mut b).expect("GO");
    // ...then fire the other two.
    let at = Instant::from_millis(100);
    assert_eq!(m.handle_timeout(at, &mut b), Ok(true));
    assert_eq!(m.handle_timeout(at, &mut b), Ok(true));
    assert_eq!(m.handle_timeout(at, &mut b), Ok(false));
    let sent: Vec<(String, String, Vec<u8>)> = m
        .outbox()
        .map(|o| {
            let to = match o.target {
                Target::Machine(t) => t.to_string(),
                Target::ThisMachine => "self".to_string(),
                Target::Topic(t) => format!("topic {t}"),
                Target::Broadcast => "all".to_string(),
            };
            (to, o.event.to_string(), o.payload.to_vec())
        })
        .collect();
    assert_eq!(
        sent,
        [
            ("peer".to_string(), "PING".to_string(), vec![]),
            (
                "logger".to_string(),
                "NOTE".to_string(),
                b"0123456789".to_vec()
            ),
        ]
    );
}

/// The sibling-move flag of a transition record is what the compiler works out from the
/// chart, and `Chart::new` refuses tables where it is set on another transition or missing
/// from a sibling move: stepping trusts it to skip the exit and entry set computation.
#[test]
fn sibling_move_flags_are_checked() {
    use interstate::core::chart::raw::TransitionRecord;
    // `a -> b` is a sibling move; `b -> #m.c.d` (into a compound sibling) and the
    // re-entering `d -> d` are not.
    let compiled = interstate::compile_str(
        r##"{"id":"m","initial":"a","states":{
            "a":{"on":{"GO":"b"}},
            "b":{"on":{"GO":"#m.c.d"}},
            "c":{"initial":"d","states":{"d":{"on":{"GO":{"target":"d","reenter":true}}}}}}}"##,
    )
    .expect("compiles");
    let tables = OwnedTables::of(compiled.chart().tables());
    let flag_at = |t: usize| t * TransitionRecord::SIZE + 1;
    let flags: Vec<u8> = (0..3)
        .map(|t| tables.bytes[2][flag_at(t)] & TransitionRecord::SIBLING)
        .collect();
    assert_eq!(flags, [TransitionRecord::SIBLING, 0, 0]);
    for t in 0..3 {
        let mut bad = tables.clone();
        bad.bytes[2][flag_at(t)] ^= TransitionRecord::SIBLING;
        assert!(
            matches!(
                Chart::new(bad.tables()),
                Err(Error::InvalidChart {
                    table: "transitions",
                    ..
                })
            ),
            "transition {t} with its flag flipped was accepted"
        );
    }
}

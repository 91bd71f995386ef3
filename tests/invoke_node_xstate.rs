//! Conformance cases of invoked children replayed in a `Node`, against XState's traces.
//!
//! Each case (`cli/tests/conformance/cases/<name>.json`: the chart, its child charts by `src`,
//! the inputs and XState 5.33.3's trace, made with `../shared/oracle/xstate-trace.mjs
//! --actor SRC=CHILD.json`) runs here as machine `p` of a node, its children as child charts
//! of the same node on the real clock: an event input is sent to `p`, an `@advance` input
//! waits until the step's actions all came (the timers fire on their own), or its time when
//! it expects none; a step XState fails must fail `p`. Every user action
//! is traced as the oracle prints it (`<invoke id>/<action>` in a child), and each step's
//! actions must be XState's, in XState's order. No timing is asserted: a step waits for its
//! count of actions (20 s at most, a limit for a broken build), then for a few more turns in
//! which nothing more may come.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use interstate::bus::{add_json_machine, Node, NodeConfig, Role};
use interstate::core::ActionId;
use interstate::{Behaviors, CompiledChart};
use serde_json::Value;

type Log = Rc<RefCell<Vec<String>>>;

/// Behaviors tracing every action of `chart` as the oracle does: `name` in the root,
/// `<invoke id>/name` in a child (the last part of its machine id).
fn tracing(log: &Log, chart: &CompiledChart) -> Behaviors {
    let chart = chart.chart();
    let mut b = Behaviors::new();
    for i in 0..chart.action_count() as u16 {
        let name = chart.action_name(ActionId(i)).to_string();
        let log = log.clone();
        b = b.action(&name.clone(), move |cx| {
            let line = match cx.machine_id().rsplit_once('/') {
                Some((_, invoke_id)) => format!("{invoke_id}/{name}"),
                None => name.clone(),
            };
            log.borrow_mut().push(line);
        });
    }
    b
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// Replays case `name` in a node (see the module's notes).
fn replay(name: &str) {
    let path = format!(
        "{}/cli/tests/conformance/cases/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let case: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let dir = std::env::temp_dir().join(format!("istr-xs-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut c = NodeConfig::new("xs");
    c.dir = dir.clone();
    c.role = Role::Hub;
    c.transport = interstate::bus::Transport::UnixSocket;
    let mut n = Node::new(c).unwrap();
    n.set_logger(|_| {});

    let log = Log::default();
    let root = case["chart"].to_string();
    let compiled = interstate::compile_str(&root).unwrap();
    let mut b = tracing(&log, &compiled);
    // The case's guards (of the root chart), each a constant.
    for (guard, v) in case["guards"].as_object().into_iter().flatten() {
        let v = v.as_bool().unwrap();
        b = b.guard(guard, move |_| v);
    }
    for (src, child) in case["actors"].as_object().unwrap() {
        let child = interstate::compile_str(&child.to_string()).unwrap();
        let (log, traced) = (log.clone(), child.clone());
        b = b.child_chart(src, child, move || tracing(&log, &traced));
    }
    add_json_machine(&mut n, "p", &root, b).unwrap();

    for step in case["expected"].as_array().unwrap() {
        if step["error"].is_string() {
            // XState's step failed (its actions are not traced): so must `p`'s, at once or
            // on what its children do.
            let k = step["step"].as_u64().unwrap() as usize;
            let input = case["inputs"][k - 1].as_str().unwrap();
            let refused = n.send_local("p", input, &[]).is_err();
            n.run_until(Duration::from_secs(20), |n| {
                refused || n.machine_errors("p").next().is_some()
            })
            .unwrap();
            assert!(
                n.machine_errors("p").next().is_some(),
                "{name}, step {k}: p runs on"
            );
            log.borrow_mut().clear();
            continue;
        }
        let want = strings(&step["actions"]);
        match step["input"].as_str() {
            None => {}
            // A wait in which nothing happens: the clock moves on (a timer armed next is
            // due later than one armed before, as on XState's clock).
            Some(i) if i.starts_with("@advance") && want.is_empty() => {
                let ms: u64 = i["@advance".len()..].trim().parse().unwrap();
                n.run_for(Duration::from_millis(ms)).unwrap();
            }
            Some(i) if i.starts_with("@advance") => {}
            Some(event) => n.send_local("p", event, &[]).unwrap(),
        }
        let reached = n
            .run_until(Duration::from_secs(20), |_| {
                log.borrow().len() >= want.len()
            })
            .unwrap();
        assert!(
            reached,
            "{name}, step {step}: the trace stopped at {:?}",
            log.borrow()
        );
        for _ in 0..5 {
            n.run_once(Some(Duration::from_millis(1))).unwrap();
        }
        let got: Vec<String> = log.borrow_mut().drain(..).collect();
        assert_eq!(got, want, "{name}, step {step}");
    }
    drop(n);
    let _ = std::fs::remove_dir_all(dir);
}

/// A child started when `b` is entered arms its `after` before the parent's `after` of
/// `b.c` (entered later in the same step): at the same instant XState fires the child's
/// first (`["k/tc","tp"]`), though the child's slot comes after its parent's in the node.
#[test]
fn a_childs_timer_armed_at_its_start_fires_before_the_parents_armed_later() {
    replay("invoke-timers-armed-in-deferred-order");
}

/// The parent arms `b`'s `after` before `c`'s entry sends `X` to its child, whose `after`
/// is armed when it takes `X`: the parent's fires first (`["tp","k/tc"]`).
#[test]
fn a_parents_timer_armed_before_its_send_fires_before_the_childs_armed_on_it() {
    replay("invoke-timers-armed-among-sends");
}

/// A transition to a history state enters the active invoking state `g` again without
/// exiting it (XState's quirk): its child runs on and a second one starts beside it. The
/// transition's `sendTo` reaches the old child, the one in `g`'s entry the new child, after
/// its first step.
#[test]
fn a_state_entered_again_through_history_starts_a_second_child_beside_the_first() {
    replay("invoke-history-reentry-entry-send");
}

/// More conformance cases of invoked child charts, each replayed in a node as above. Left
/// out: those whose inputs go on after an `@advance` that expects actions (real time would
/// race the events).
#[test]
fn the_invoke_conformance_cases_agree_with_xstate_in_a_node() {
    for name in [
        "invoke-default-id",
        "invoke-delayed-sendto-missing-child",
        "invoke-entry-send-before-next-start",
        "invoke-first-step-failure-runs-nothing",
        "invoke-first-step-reentry-keeps-place",
        "invoke-first-step-sendto",
        "invoke-history-restarts",
        "invoke-initial-state-invokes",
        "invoke-nested-states",
        "invoke-ondone",
        "invoke-ondone-guarded",
        "invoke-onerror",
        "invoke-onerror-unhandled",
        "invoke-parallel-regions",
        "invoke-parent-final-stops",
        "invoke-ping-pong",
        "invoke-quick-done",
        "invoke-raise-and-invoke",
        "invoke-reenter-restarts",
        "invoke-root-invokes",
        "invoke-send-to-child-stopped-before-start",
        "invoke-sendparent-after-macrostep",
        "invoke-sendparent-then-done",
        "invoke-sendto-child",
        "invoke-sendto-done-child",
        "invoke-sendto-in-entry",
        "invoke-sendto-in-exit",
        "invoke-sendto-missing-child",
        "invoke-start-after-entry",
        "invoke-stop-on-exit",
        "invoke-targetless-keeps-child",
        "invoke-timer-race",
        "invoke-timer-race-child-first",
        "invoke-transient-never-starts",
        "invoke-two-same-src",
    ] {
        replay(name);
    }
}

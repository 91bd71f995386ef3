//! Invoked children as the core keeps them: the live table and its capacity, the starts and
//! stops a host reads beside the outbox (in order with the messages), the machine ids a
//! `sendTo` by invoke id and a `sendParent` address, and the binding of every `src`. The
//! order in which children run against XState's is checked by the conformance cases
//! (`cli/tests/conformance/cases/invoke-*.json`).

use interstate::core::machine::{ChildChangeKind, MAX_LIVE_CHILDREN};
use interstate::core::{Error, Status, Target};
use interstate::{compile_str, Behaviors, Event, Instant, Machine};

type M<'c> = Machine<'c, 2, 16, 16, 8, 4, 512, 64, 0>;

const PARENT: &str = r#"{
  "id": "p", "initial": "idle",
  "states": {
    "idle": { "on": { "GO": "run" } },
    "run": {
      "entry": {"type": "sendTo", "to": "logger", "event": "RUNNING"},
      "invoke": [{"src": "worker", "id": "a"}, {"src": "worker", "id": "b", "input": {"n": 1}}],
      "exit": {"type": "sendTo", "to": "b", "event": "BYE"},
      "on": {
        "STOP": "idle",
        "POKE": {"actions": {"type": "sendTo", "to": "a", "event": "PING"}},
        "LATER": {"actions": {"type": "sendTo", "to": "a", "event": "PING", "delay": 50}}
      }
    }
  }
}"#;

fn sent(m: &M<'_>) -> Vec<(String, String)> {
    m.outbox()
        .map(|o| {
            let to = match o.target {
                Target::Machine(t) => t.to_string(),
                Target::ThisMachine => "(self)".to_string(),
                other => format!("{other:?}"),
            };
            (to, o.event.to_string())
        })
        .collect()
}

#[test]
fn starts_and_stops_come_in_order_with_the_messages() {
    let compiled = compile_str(PARENT).unwrap();
    let chart = compiled.chart();
    let mut bound = Behaviors::new().actor("worker").bind(&chart).unwrap();
    let mut m = M::new(chart, "p").unwrap();
    m.start(Instant::ZERO, &mut bound).unwrap();
    assert_eq!(m.child_changes().count(), 0);

    m.send(Instant::ZERO, Event::new("GO"), &mut bound).unwrap();
    assert_eq!(sent(&m), [("logger".to_string(), "RUNNING".to_string())]);
    let changes: Vec<_> = m
        .child_changes()
        .map(|c| {
            (
                c.kind,
                c.invocation.id,
                c.invocation.src,
                c.invocation.input,
                c.after_messages,
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            (ChildChangeKind::Start, "a", "worker", None, 1),
            (ChildChangeKind::Start, "b", "worker", Some(r#"{"n":1}"#), 1),
        ]
    );
    let live: Vec<_> = m.live_children().map(|i| i.id).collect();
    assert_eq!(live, ["a", "b"]);
    m.clear_outbox();
    assert_eq!(m.child_changes().count(), 0, "cleared with the outbox");

    // A sendTo by invoke id goes to the child's machine id: the parent's, a slash, the id.
    m.send(Instant::ZERO, Event::new("POKE"), &mut bound)
        .unwrap();
    assert_eq!(sent(&m), [("p/a".to_string(), "PING".to_string())]);
    m.clear_outbox();

    // The exit's send reaches `b` before it stops; then both stop, in exit order.
    m.send(Instant::ZERO, Event::new("STOP"), &mut bound)
        .unwrap();
    assert_eq!(sent(&m), [("p/b".to_string(), "BYE".to_string())]);
    let changes: Vec<_> = m
        .child_changes()
        .map(|c| (c.kind, c.invocation.id, c.after_messages))
        .collect();
    assert_eq!(
        changes,
        [
            (ChildChangeKind::Stop, "a", 1),
            (ChildChangeKind::Stop, "b", 1)
        ]
    );
    assert_eq!(m.live_children().count(), 0);
    m.clear_outbox();

    // Not running any more: a sendTo to it fails the step, as in XState.
    let r = m.send(Instant::ZERO, Event::new("POKE"), &mut bound);
    assert_eq!(r, Ok(()), "POKE is not handled in idle");
}

/// A host that delivers a message at a time (the node) makes the changes due before each
/// message as it reaches it and forgets those it made, one by one: the changes behind a
/// message it could not deliver yet (backpressure) stay.
#[test]
fn a_host_delivering_message_by_message_forgets_only_the_changes_it_made() {
    let compiled = compile_str(PARENT).unwrap();
    let chart = compiled.chart();
    let mut bound = Behaviors::new().actor("worker").bind(&chart).unwrap();
    let mut m = M::new(chart, "p").unwrap();
    m.start(Instant::ZERO, &mut bound).unwrap();
    m.send(Instant::ZERO, Event::new("GO"), &mut bound).unwrap();
    let after = |m: &M<'_>| -> Vec<usize> { m.child_changes().map(|c| c.after_messages).collect() };
    let srcs = |m: &M<'_>| -> Vec<String> {
        m.child_changes()
            .map(|c| c.invocation.id.to_string())
            .collect()
    };
    assert_eq!(after(&m), [1, 1]);
    // RUNNING could not go yet: the host made nothing, the starts behind it stay.
    m.consume_outbox(0);
    m.forget_child_changes(0);
    assert_eq!(after(&m), [1, 1]);
    // RUNNING went, then the host made the first start, then the second.
    m.consume_outbox(1);
    assert_eq!(after(&m), [0, 0]);
    m.forget_child_changes(1);
    assert_eq!(srcs(&m), ["b"], "the first one made is the one forgotten");
    m.forget_child_changes(1);
    assert_eq!(m.child_changes().count(), 0);
    assert_eq!(
        m.live_children().count(),
        2,
        "forgetting changes stops no child"
    );

    // The stops come after BYE; with BYE still in the outbox the host makes none.
    m.send(Instant::ZERO, Event::new("STOP"), &mut bound)
        .unwrap();
    assert_eq!(after(&m), [1, 1]);
    m.consume_outbox(1);
    // More than there are: all of them.
    m.forget_child_changes(5);
    assert_eq!(m.child_changes().count(), 0);
}

#[test]
fn a_send_to_a_child_that_is_not_running_fails_the_step() {
    let chart_json = r#"{"id":"p","initial":"idle","states":{
        "idle":{"on":{"GO":"run","X":{"actions":{"type":"sendTo","to":"a","event":"PING"}}}},
        "run":{"invoke":{"src":"worker","id":"a"}}}}"#;
    let compiled = compile_str(chart_json).unwrap();
    let chart = compiled.chart();
    let mut bound = Behaviors::new().actor("worker").bind(&chart).unwrap();
    let mut m = M::new(chart, "p").unwrap();
    m.start(Instant::ZERO, &mut bound).unwrap();
    assert_eq!(
        m.send(Instant::ZERO, Event::new("X"), &mut bound),
        Err(Error::NoSuchChild)
    );
    assert_eq!(m.status(), Status::Failed);
}

#[test]
fn a_stop_cancels_the_delayed_sends_to_the_child() {
    let compiled = compile_str(PARENT).unwrap();
    let chart = compiled.chart();
    let mut bound = Behaviors::new().actor("worker").bind(&chart).unwrap();
    let mut m = M::new(chart, "p").unwrap();
    m.start(Instant::ZERO, &mut bound).unwrap();
    m.send(Instant::ZERO, Event::new("GO"), &mut bound).unwrap();
    m.send(Instant::ZERO, Event::new("LATER"), &mut bound)
        .unwrap();
    assert_eq!(m.pending_timers().count(), 1);
    m.send(Instant::ZERO, Event::new("STOP"), &mut bound)
        .unwrap();
    assert_eq!(
        m.pending_timers().count(),
        0,
        "the delayed PING to p/a died with it"
    );
}

#[test]
fn a_full_child_table_fails_the_invoking_step() {
    let compiled = compile_str(PARENT).unwrap();
    let chart = compiled.chart();
    let mut bound = Behaviors::new().actor("worker").bind(&chart).unwrap();
    let mut m = M::new(chart, "p").unwrap();
    m.set_child_capacity(1).unwrap();
    m.start(Instant::ZERO, &mut bound).unwrap();
    assert_eq!(
        m.send(Instant::ZERO, Event::new("GO"), &mut bound),
        Err(Error::ChildrenFull { capacity: 1 })
    );
    assert_eq!(m.status(), Status::Failed);
    assert_eq!(
        M::new(chart, "p")
            .unwrap()
            .set_child_capacity(MAX_LIVE_CHILDREN + 1),
        Err(Error::ChildrenFull {
            capacity: MAX_LIVE_CHILDREN
        })
    );
}

#[test]
fn send_parent_goes_to_the_id_the_child_was_named_after() {
    let child = r#"{"id":"w","initial":"a","states":{"a":{"entry":{"type":"sendParent","event":"HELLO","data":{"x":1}}}}}"#;
    let compiled = compile_str(child).unwrap();
    let chart = compiled.chart();
    let mut bound = Behaviors::new().bind(&chart).unwrap();
    let mut m = M::new(chart, "plant/p/job").unwrap();
    m.start(Instant::ZERO, &mut bound).unwrap();
    let out: Vec<_> = m
        .outbox()
        .map(|o| (o.target, o.event, o.payload.to_vec()))
        .collect();
    assert_eq!(
        out,
        [(Target::Machine("plant/p"), "HELLO", br#"{"x":1}"#.to_vec())]
    );
    // A machine nobody invoked has no parent.
    let mut solo = M::new(chart, "solo").unwrap();
    assert_eq!(solo.start(Instant::ZERO, &mut bound), Err(Error::NoParent));
}

#[test]
fn an_unbound_src_is_refused_at_bind_time_by_name() {
    let compiled = compile_str(PARENT).unwrap();
    let chart = compiled.chart();
    let err = match Behaviors::new().bind(&chart) {
        Err(e) => e,
        Ok(_) => panic!("bound a chart whose src has no actor"),
    };
    assert_eq!(err.actors, ["worker"]);
    assert!(
        err.to_string().contains("invoked actor srcs 'worker'"),
        "{err}"
    );
    // Even leniently: unbound actions may do nothing, a child that cannot start may not.
    let (_, unbound) = Behaviors::new().bind_lenient(&chart);
    assert_eq!(unbound.actors, ["worker"]);
}

#[test]
fn simulate_names_a_src_with_no_actor() {
    let compiled = compile_str(PARENT).unwrap();
    let mut out = Vec::new();
    let ok = interstate::simulate::run(
        &compiled.chart(),
        &interstate::simulate::Options::default(),
        Vec::<String>::new(),
        &mut out,
    )
    .unwrap();
    assert!(!ok);
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("invokes src 'worker' with no actor: pass --actor SRC=CHILD.json"),
        "{text}"
    );
}

/// A grandchild: the oracle's child charts cannot invoke, so this order follows XState's
/// rules as the conformance cases pin them down one level at a time: a machine's start runs
/// the children of its first snapshot before its own first actions (`invoke-root-invokes`),
/// and events go up one mailbox at a time (`invoke-sendparent-after-macrostep`).
#[test]
fn simulate_runs_grandchildren() {
    let parent = compile_str(
        r#"{"id":"p","initial":"idle","states":{"idle":{"on":{"GO":"run"}},
        "run":{"invoke":{"src":"mid","id":"mk","onDone":{"target":"over","actions":"t_mdone"}},
          "on":{"RELAY":{"actions":"t_relay"},"DOWN":{"actions":{"type":"sendTo","to":"mk","event":"DOWN"}}}},
        "over":{"entry":"en_over"}}}"#,
    )
    .unwrap();
    let mid = compile_str(
        r#"{"id":"mid","initial":"run","states":{"run":{"entry":"m_run",
        "invoke":{"src":"grand","id":"gk","onDone":{"target":"end","actions":"m_gdone"}},
        "on":{"UP":{"actions":["m_up",{"type":"sendParent","event":"RELAY"}]},
              "DOWN":{"actions":{"type":"sendTo","to":"gk","event":"DOWN"}}}},
        "end":{"type":"final","entry":"m_end"}}}"#,
    )
    .unwrap();
    let grand = compile_str(
        r#"{"id":"grand","initial":"a","states":{"a":{"entry":["g_a",{"type":"sendParent","event":"UP"}],
        "on":{"DOWN":"f"}},"f":{"type":"final","entry":"g_f"}}}"#,
    )
    .unwrap();
    let mut options = interstate::simulate::Options::default();
    options.actors.insert("mid".into(), mid);
    options.actors.insert("grand".into(), grand);
    let mut out = Vec::new();
    let inputs = ["GO", "DOWN"].map(String::from);
    assert!(interstate::simulate::run(&parent.chart(), &options, inputs, &mut out).unwrap());
    let lines: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines[1]["actions"],
        serde_json::json!(["gk/g_a", "mk/m_run", "mk/m_up", "t_relay"])
    );
    assert_eq!(
        lines[2]["actions"],
        serde_json::json!(["gk/g_f", "mk/m_gdone", "mk/m_end", "t_mdone", "en_over"])
    );
    assert_eq!(lines[2]["value"], "over");
}

/// The example pair `examples/charts/job_runner.json` and `job_worker.json` against the trace
/// XState 5.33.3 printed for them (`tests/invoke/job_runner.expected.jsonl`): a job that
/// finishes, one cancelled, one that times out.
#[test]
fn the_job_runner_example_agrees_with_xstate() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    let runner = compile_str(&read("examples/charts/job_runner.json")).unwrap();
    let worker = compile_str(&read("examples/charts/job_worker.json")).unwrap();
    let mut options = interstate::simulate::Options::default();
    options.actors.insert("worker".into(), worker);
    let expected: Vec<serde_json::Value> = read("tests/invoke/job_runner.expected.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let inputs: Vec<String> = expected[1..]
        .iter()
        .map(|l| l["input"].as_str().unwrap().to_string())
        .collect();
    let mut out = Vec::new();
    assert!(interstate::simulate::run(&runner.chart(), &options, inputs, &mut out).unwrap());
    let got: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(&expected) {
        for k in ["step", "value", "actions", "done"] {
            assert_eq!(g[k], e[k], "{k} of step {}", e["step"]);
        }
    }
}

/// A finished child's `output` is the data of its parent's `xstate.done.actor.<id>`: the
/// root's `output` when it has one, else the top-level final state's.
#[test]
fn the_done_event_carries_the_childs_output() {
    let parent = compile_str(
        r#"{"id":"p","initial":"run","states":{"run":{"invoke":{"src":"w","id":"k",
        "onDone":{"target":"over","actions":{"type":"sendTo","to":"archive","event":"RESULT","data":{"from":"event"}}}}},
        "over":{}}}"#,
    )
    .unwrap();
    let run = |child: &str| -> serde_json::Value {
        let mut options = interstate::simulate::Options::default();
        options
            .actors
            .insert("w".into(), compile_str(child).unwrap());
        let mut out = Vec::new();
        assert!(interstate::simulate::run(
            &parent.chart(),
            &options,
            Vec::<String>::new(),
            &mut out
        )
        .unwrap());
        let first: serde_json::Value =
            serde_json::from_str(String::from_utf8(out).unwrap().lines().next().unwrap()).unwrap();
        first["sent"].clone()
    };
    let from_final = run(
        r#"{"id":"w","initial":"a","states":{"a":{"always":"f"},"f":{"type":"final","output":{"n":1}}}}"#,
    );
    assert_eq!(
        from_final,
        serde_json::json!([{"to": "archive", "event": "RESULT", "data": {"n": 1}}])
    );
    let from_root = run(
        r#"{"id":"w","initial":"f","output":{"root":true},"states":{"f":{"type":"final","output":{"n":1}}}}"#,
    );
    assert_eq!(
        from_root,
        serde_json::json!([{"to": "archive", "event": "RESULT", "data": {"root": true}}])
    );
}

/// A child chart's first event, `xstate.init`, carries its invocation's `input` as
/// `{"input": ...}`, as XState's does (`createInitEvent(input)`: `event.input` in the child's
/// first entry actions; checked with XState 5.33.3, whose child without an input gets
/// `{"type":"xstate.init"}`): `{"$event": "input"}` keeps it in the child's context.
#[test]
fn simulate_gives_a_child_chart_its_input_with_its_first_event() {
    let parent = compile_str(
        r#"{"id":"p","initial":"idle","states":{"idle":{"on":{"JOB":"working"}},
        "working":{"invoke":[{"src":"w","id":"job","input":{"url":"/data","n":3}},{"src":"w","id":"bare"}]}}}"#,
    )
    .unwrap();
    let worker = compile_str(
        r#"{"id":"w","initial":"run","context":{"job":null},"states":{
        "run":{"entry":{"type":"assign","assignment":{"job":{"$event":"input"}}},
          "always":{"guard":{"type":"context","key":"job","op":"==","value":{"url":"/data","n":3}},"target":"got"}},
        "got":{"entry":"gotInput"}}}"#,
    )
    .unwrap();
    let mut options = interstate::simulate::Options::default();
    options.actors.insert("w".into(), worker);
    let mut out = Vec::new();
    let inputs = ["JOB"].map(String::from);
    assert!(interstate::simulate::run(&parent.chart(), &options, inputs, &mut out).unwrap());
    let lines: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[1]["actions"], serde_json::json!(["job/gotInput"]));
}

/// What a host needs to order a step's deferred work as XState does: when each timer was
/// armed among the messages and child changes (`timer_armed_after`), and the messages the
/// invoking state's entry sent (`entry_messages_from..after_messages`).
#[test]
fn a_host_can_tell_when_timers_were_armed_and_which_messages_an_invoking_entry_sent() {
    let chart_text = r#"{
      "id": "p", "initial": "idle",
      "states": {
        "idle": { "on": { "GO": "b" } },
        "b": {
          "initial": "c",
          "entry": [{"type": "sendTo", "to": "other", "event": "X"},
                    {"type": "sendTo", "to": "k", "event": "D"}],
          "after": { "100": "idle" },
          "invoke": {"src": "w", "id": "k"},
          "states": {
            "c": { "entry": {"type": "sendTo", "to": "k", "event": "E"}, "after": { "100": "d" } },
            "d": {}
          }
        }
      }
    }"#;
    let compiled = compile_str(chart_text).unwrap();
    let chart = compiled.chart();
    let mut bound = Behaviors::new().actor("w").bind(&chart).unwrap();
    let mut m = M::new(chart, "p").unwrap();
    m.start(Instant::ZERO, &mut bound).unwrap();
    m.send(Instant::ZERO, Event::new("GO"), &mut bound).unwrap();
    let mut seqs: Vec<u32> = m.pending_timers().map(|(_, s)| s).collect();
    seqs.sort_unstable();
    let armed: Vec<_> = seqs.iter().map(|&s| m.timer_armed_after(s)).collect();
    // b's `after` is armed in its entry, after its two sends and before the start; c's,
    // entered after b, after the start and c's own send.
    assert_eq!(armed, [Some((2, 0)), Some((3, 1))]);
    let changes: Vec<_> = m
        .child_changes()
        .map(|c| (c.kind, c.entry_messages_from, c.after_messages))
        .collect();
    // Both of b's messages come from its entry (the one to `k` is for the child it starts).
    assert_eq!(changes, [(ChildChangeKind::Start, 0, 2)]);
}

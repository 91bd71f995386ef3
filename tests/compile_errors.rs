//! The JSON compiler's errors: every bad chart is refused with the JSON path of the offending
//! value and a message saying what is wrong there, and no input makes the compiler panic.
//!
//! Each row of `CASES` is one mistake a chart author makes, with the exact text the author
//! reads (`path: message`, or only the message when the whole document is wrong).

use interstate::compile_str;

/// (what the case shows, chart, exact error text)
const CASES: &[(&str, &str, &str)] = &[
    // --- targets ---
    (
        "an unknown #id among several transitions",
        r##"{"id":"m","initial":"idle","states":{"idle":{},"running":{"on":{"STOP":[{"target":"idle","guard":"g"},{"target":"#idle2"}]}}}}"##,
        "states.running.on.STOP[1].target: no state '#idle2'",
    ),
    (
        "an unknown sibling",
        r#"{"id":"m","initial":"a","states":{"a":{"on":{"GO":"b"}}}}"#,
        "states.a.on.GO: no state 'b' in '#m'",
    ),
    (
        "an unknown child",
        r#"{"id":"m","initial":"a","states":{"a":{"on":{"GO":".b"}}}}"#,
        "states.a.on.GO: no state 'b' in '#m.a'",
    ),
    (
        "an unknown segment after an #id",
        r##"{"id":"m","initial":"a","states":{"a":{"on":{"GO":"#m.a.zz"}}}}"##,
        "states.a.on.GO: no state 'zz' in '#m.a'",
    ),
    (
        "a bare target on the root, which has no siblings",
        r#"{"id":"m","initial":"a","on":{"GO":"b"},"states":{"a":{},"b":{}}}"#,
        "on.GO: 'b' is not a valid target from the root state; did you mean '.b'?",
    ),
    (
        "several targets in the same region",
        r#"{"id":"m","initial":"a","states":{"a":{"on":{"GO":{"target":["b","c"]}}},"b":{},"c":{}}}"#,
        "states.a.on.GO: several targets must each lie in a different region of one parallel state",
    ),
    (
        "a target that is not a string",
        r#"{"id":"m","initial":"a","states":{"a":{"on":{"GO":{"target":["a",5]}}}}}"#,
        "states.a.on.GO.target[1]: a target is a string",
    ),
    (
        "a transition that is a number",
        r#"{"id":"m","initial":"a","states":{"a":{"on":{"GO":5}}}}"#,
        "states.a.on.GO: a transition is a target string, an object or an array of them",
    ),
    // --- unknown keys ---
    (
        "a misspelt state key",
        r#"{"id":"m","initial":"a","states":{"a":{"entry":"x","exti":"y"}}}"#,
        "states.a.exti: unknown key 'exti' (did you mean 'exit'?)",
    ),
    (
        "an unknown state key with no near spelling",
        r#"{"id":"m","initial":"a","states":{"a":{"xyzzy":1}}}"#,
        "states.a.xyzzy: unknown key 'xyzzy'",
    ),
    (
        "a misspelt transition key",
        r#"{"id":"m","initial":"a","states":{"a":{"on":{"GO":{"taget":"a"}}}}}"#,
        "states.a.on.GO.taget: unknown transition key 'taget' (did you mean 'target'?)",
    ),
    (
        "an invocation without a src",
        r#"{"id":"m","initial":"a","states":{"a":{"invoke":{"id":"job"}}}}"#,
        "states.a.invoke: missing 'src': the name of the actor to invoke",
    ),
    (
        "an inline actor as the src",
        r#"{"id":"m","initial":"a","states":{"a":{"invoke":{"src":{"id":"c"}}}}}"#,
        "states.a.invoke.src: an inline actor is not supported: 'src' names an actor the host binds (a chart given with --actor, a service)",
    ),
    (
        "a misspelt invoke key",
        r#"{"id":"m","initial":"a","states":{"a":{"invoke":[{"src":"w","id":"x"},{"src":"w","onDnoe":"a"}]}}}"#,
        "states.a.invoke[1].onDnoe: unknown invoke key 'onDnoe' (did you mean 'onDone'?)",
    ),
    (
        "onSnapshot",
        r#"{"id":"m","initial":"a","states":{"a":{"invoke":{"src":"w","onSnapshot":"a"}}}}"#,
        "states.a.invoke.onSnapshot: 'onSnapshot' is not supported",
    ),
    (
        "an invoke id with a slash",
        r#"{"id":"m","initial":"a","states":{"a":{"invoke":{"src":"w","id":"a/b"}}}}"#,
        "states.a.invoke.id: an invoke id is a non-empty name without '/' (it becomes part of the child's machine id)",
    ),
    (
        "two invocations with one id",
        r#"{"id":"m","initial":"a","states":{"a":{"invoke":[{"src":"w","id":"j"},{"src":"v","id":"j"}]}}}"#,
        "states.a.invoke[1].id: two invocations of one state have the id 'j'",
    ),
    (
        "an onDone target that does not exist",
        r#"{"id":"m","initial":"a","states":{"a":{"invoke":{"src":"w","id":"j","onDone":"nowhere"}}}}"#,
        "states.a.invoke.onDone: no state 'nowhere' in '#m'",
    ),
    (
        "a history state that invokes",
        r#"{"id":"m","initial":"a","states":{"a":{},"h":{"type":"history","invoke":{"src":"w"}}}}"#,
        "states.h.invoke: a history state has no transitions or actions of its own",
    ),
    (
        "a delayed sendParent that forwards the event's data",
        r#"{"id":"m","initial":"a","states":{"a":{"entry":{"type":"sendParent","event":"E","data":{"from":"event"},"delay":5}}}}"#,
        "states.a.entry.delay: a send that forwards the event's data is not delayed",
    ),
    // --- types ---
    (
        "a chart that is an array",
        "[]",
        "a chart is a JSON object (an XState machine config)",
    ),
    (
        "a state that is a string",
        r#"{"id":"m","initial":"a","states":{"a":"b"}}"#,
        "states.a: a state is a JSON object",
    ),
    (
        "'states' as an array",
        r#"{"id":"m","states":[]}"#,
        "states: 'states' is an object of child states",
    ),
    (
        "an id that is a number",
        r#"{"id":7}"#,
        "id: an id is a string",
    ),
    (
        "an unknown state type",
        r#"{"id":"m","initial":"a","states":{"a":{"type":"weird"}}}"#,
        "states.a.type: unknown state type 'weird' (atomic, compound, parallel, final or history)",
    ),
    (
        "a final root",
        r#"{"id":"m","type":"final"}"#,
        "type: the root state must be atomic, compound or parallel",
    ),
    (
        "an atomic state with children",
        r#"{"id":"m","initial":"a","states":{"a":{"type":"atomic","states":{"x":{}}}}}"#,
        "states.a.states: only compound and parallel states have child states",
    ),
    (
        "a compound state with no children",
        r#"{"id":"m","initial":"a","states":{"a":{"type":"compound"}}}"#,
        "states.a: a compound state needs child states",
    ),
    (
        "'on' as an array",
        r#"{"id":"m","initial":"a","states":{"a":{"on":[]}}}"#,
        "states.a.on: 'on' is an object of event names to transitions",
    ),
    (
        "'reenter' as a string",
        r#"{"id":"m","initial":"a","states":{"a":{"on":{"GO":{"target":"a","reenter":"yes"}}}}}"#,
        "states.a.on.GO.reenter: 'reenter' is true or false",
    ),
    (
        "'reenter' and XStateNet's 'internal' saying opposite things",
        r#"{"id":"m","initial":"a","states":{"a":{"on":{"GO":{"target":"a","reenter":true,"internal":true}}}}}"#,
        "states.a.on.GO: 'reenter' and 'internal' contradict each other",
    ),
    (
        "an empty state key",
        r#"{"id":"m","initial":"a","states":{"a":{},"":{}}}"#,
        "states.: a state key cannot be empty",
    ),
    // --- initial states ---
    (
        "a compound state with no initial state",
        r#"{"id":"m","initial":"a","states":{"a":{"states":{"x":{},"y":{}}}}}"#,
        "states.a: no initial state for this compound state; add \"initial\": \"x\"",
    ),
    (
        "an initial state that is not a child",
        r#"{"id":"m","initial":"c","states":{"a":{},"b":{}}}"#,
        "initial: no child state 'c' (children: a, b)",
    ),
    (
        "an initial state given as a number",
        r#"{"id":"m","initial":3,"states":{"a":{}}}"#,
        "initial: 'initial' is the key of a child state",
    ),
    (
        "an initial state on a final state",
        r#"{"id":"m","initial":"a","states":{"a":{"type":"final","initial":"x"}}}"#,
        "states.a.initial: only compound states have an initial state",
    ),
    // --- wildcards ---
    (
        "a wildcard inside a segment",
        r#"{"id":"m","initial":"a","states":{"a":{"on":{"a*b":"a"}}}}"#,
        "states.a.on.a*b: a wildcard '*' may only stand as the last segment of an event descriptor",
    ),
    (
        "a wildcard as the first segment",
        r#"{"id":"m","initial":"a","states":{"a":{"on":{"*.done":"a"}}}}"#,
        "states.a.on.*.done: a wildcard '*' may only stand as the last segment of an event descriptor",
    ),
    (
        "a wildcard glued to a word",
        r#"{"id":"m","initial":"a","states":{"a":{"on":{"foo*":"a"}}}}"#,
        "states.a.on.foo*: a wildcard '*' may only stand as the last segment of an event descriptor",
    ),
    // --- history ---
    (
        "an unknown history depth",
        r#"{"id":"m","initial":"a","states":{"a":{},"h":{"type":"history","history":"medium"}}}"#,
        "states.h.history: 'history' is \"shallow\" or \"deep\"",
    ),
    (
        "a history state with transitions",
        r#"{"id":"m","initial":"a","states":{"a":{},"h":{"type":"history","on":{"X":"a"}}}}"#,
        "states.h.on: a history state has no transitions or actions of its own",
    ),
    (
        "a history default target outside the history state's parent",
        r##"{"id":"m","initial":"p","states":{"p":{"initial":"a","states":{"a":{},"h":{"type":"history","target":"#m.q"}}},"q":{}}}"##,
        "states.p.states.h.target: a history default target must be a state inside the history state's parent, not a history state",
    ),
    (
        "history default targets in the same region",
        r#"{"id":"m","initial":"a","states":{"a":{},"b":{},"h":{"type":"history","target":["a","b"]}}}"#,
        "states.h.target: several default targets must lie in different parallel regions",
    ),
    (
        "an initial history state with no default",
        r#"{"id":"m","initial":"h","states":{"h":{"type":"history"},"a":{}}}"#,
        "initial: initial state 'h' is a history state with no default 'target'; give it one",
    ),
    (
        "a 'target' on a state that is not history",
        r#"{"id":"m","initial":"a","states":{"a":{"target":"b"},"b":{}}}"#,
        "states.a.target: only history states have a 'target' (transitions go in 'on')",
    ),
    // --- ids ---
    (
        "two states with one id",
        r#"{"id":"m","initial":"a","states":{"a":{"id":"x"},"b":{"id":"x"}}}"#,
        "states.b.id: duplicate state id 'x' (also used by 'states.a')",
    ),
    (
        "an explicit id equal to another state's default id",
        r#"{"id":"m","initial":"a","states":{"a":{"initial":"b","states":{"b":{}}},"c":{"id":"m.a"}}}"#,
        "states.c.id: duplicate state id 'm.a' (also used by 'states.a')",
    ),
    // --- delays ---
    (
        "'after' as a number",
        r#"{"id":"m","initial":"a","states":{"a":{"after":500}}}"#,
        "states.a.after: 'after' is an object of delays to transitions",
    ),
    (
        "a negative delay",
        r#"{"id":"m","initial":"a","states":{"a":{"entry":{"type":"xstate.sendTo","to":"x","event":"E","delay":-1}}}}"#,
        "states.a.entry.delay: a delay is a whole number of milliseconds (0 to 4294967295) or a delay name",
    ),
    (
        "a fractional delay",
        r#"{"id":"m","initial":"a","states":{"a":{"entry":{"type":"raise","event":"E","delay":1.5}}}}"#,
        "states.a.entry.delay: a delay is a whole number of milliseconds (0 to 4294967295) or a delay name",
    ),
    (
        "a delay that is true",
        r#"{"id":"m","initial":"a","states":{"a":{"entry":[{"type":"sendTo","to":"x","event":"E","delay":true}]}}}"#,
        "states.a.entry[0].delay: a delay is a number of milliseconds or a delay name",
    ),
    (
        "a delay on an action that cannot wait",
        r#"{"id":"m","initial":"a","states":{"a":{"entry":{"type":"xstate.log","message":"hi","delay":5}}}}"#,
        "states.a.entry.delay: only raise, sendTo, sendParent, publish and broadcast take a delay",
    ),
    // --- built-in actions ---
    (
        "sendTo with no 'to'",
        r#"{"id":"m","initial":"a","states":{"a":{"entry":{"type":"xstate.sendTo","event":"E"}}}}"#,
        "states.a.entry: missing 'to'",
    ),
    (
        "sendTo with no event",
        r#"{"id":"m","initial":"a","states":{"a":{"entry":{"type":"xstate.sendTo","to":"x"}}}}"#,
        "states.a.entry.event: an event is a name or an object with a 'type'",
    ),
    (
        "raise with an event object that has no type",
        r#"{"id":"m","initial":"a","states":{"a":{"entry":{"type":"raise","event":{"name":"E"}}}}}"#,
        "states.a.entry.event: an event object needs a string 'type'",
    ),
    (
        "raise with a payload",
        r#"{"id":"m","initial":"a","states":{"a":{"entry":{"type":"raise","event":{"type":"E","data":1}}}}}"#,
        "states.a.entry.event.data: raised events carry no payload",
    ),
    (
        "cancel with no send id",
        r#"{"id":"m","initial":"a","states":{"a":{"exit":{"type":"xstate.cancel"}}}}"#,
        "states.a.exit: missing 'id': the send id to cancel",
    ),
    (
        "an unknown built-in action",
        r#"{"id":"m","initial":"a","states":{"a":{"entry":{"type":"xstate.stop"}}}}"#,
        "states.a.entry.type: unknown built-in action 'xstate.stop' (raise, sendTo, sendParent, request, cancel, log, assign, publish, broadcast)",
    ),
    // --- context ---
    (
        "a context that is not an object",
        r#"{"id":"m","context":[1],"initial":"a","states":{"a":{}}}"#,
        "context: the context is a JSON object",
    ),
    (
        "an assign with no assignment",
        r#"{"id":"m","initial":"a","states":{"a":{"entry":{"type":"xstate.assign"}}}}"#,
        "states.a.entry.assignment: an assign action needs an 'assignment' object: {\"key\": value, ...}",
    ),
    (
        "an assign with an unknown key",
        r#"{"id":"m","initial":"a","states":{"a":{"entry":{"type":"assign","assignment":{},"params":1}}}}"#,
        "states.a.entry.params: unknown key 'params' of an assign action (type, assignment)",
    ),
    (
        "an unknown assign operator",
        r#"{"id":"m","initial":"a","states":{"a":{"entry":{"type":"assign","assignment":{"n":{"$mul":2}}}}}}"#,
        "states.a.entry.assignment.n.$mul: unknown assign operator '$mul' ($event, $add)",
    ),
    (
        "$add of a string",
        r#"{"id":"m","initial":"a","states":{"a":{"entry":{"type":"assign","assignment":{"n":{"$add":"1"}}}}}}"#,
        "states.a.entry.assignment.n.$add: '$add' takes a number",
    ),
    (
        "a context guard with an unknown comparison",
        r#"{"id":"m","initial":"a","states":{"a":{"on":{"GO":{"guard":{"type":"context","key":"n","op":"=~","value":1}}}}}}"#,
        "states.a.on.GO.guard.op: unknown comparison '=~' (==, !=, <, <=, >, >=)",
    ),
    (
        "a context guard ordering a string",
        r#"{"id":"m","initial":"a","states":{"a":{"on":{"GO":{"guard":{"type":"context","key":"n","op":"<","value":"b"}}}}}}"#,
        "states.a.on.GO.guard.value: '<', '<=', '>' and '>=' compare numbers",
    ),
    (
        "a context guard with no value",
        r#"{"id":"m","initial":"a","states":{"a":{"on":{"GO":{"guard":{"type":"context","key":"n"}}}}}}"#,
        "states.a.on.GO.guard: missing 'value': the literal the context key is compared with",
    ),
    // --- publish and subscribe (interstate extensions) ---
    (
        "a subscription filter with # before the last level",
        r#"{"id":"m","subscribe":["a/+","plant/#/alarm"],"initial":"a","states":{"a":{}}}"#,
        "subscribe[1]: bad topic filter 'plant/#/alarm': '#' may only be the last level of a filter",
    ),
    (
        "a subscription filter with a wildcard sharing its level",
        r#"{"id":"m","subscribe":"plant/x+","initial":"a","states":{"a":{}}}"#,
        "subscribe: bad topic filter 'plant/x+': a wildcard must be a whole level: '+' or '#' between slashes (e.g. 'a/+/c', 'a/#')",
    ),
    (
        "a subscription that is not a string",
        r#"{"id":"m","subscribe":[3],"initial":"a","states":{"a":{}}}"#,
        "subscribe[0]: a subscription is a topic filter string, e.g. \"plant/+/alarm\"",
    ),
    (
        "a subscription below the root",
        r#"{"id":"m","initial":"a","states":{"a":{"subscribe":["x"]}}}"#,
        "states.a.subscribe: unknown key 'subscribe'",
    ),
    (
        "a publication to a topic with a wildcard",
        r#"{"id":"m","initial":"a","states":{"a":{"entry":{"type":"publish","topic":"a/#","event":"E"}}}}"#,
        "states.a.entry.topic: bad topic 'a/#': a topic to publish to cannot contain the wildcards + or # (only filters can)",
    ),
    (
        "a publication with no event",
        r#"{"id":"m","initial":"a","states":{"a":{"entry":{"type":"publish","topic":"a"}}}}"#,
        "states.a.entry.event: an event is a name or an object with a 'type'",
    ),
    // --- replies and requests ---
    (
        "a request without a timeout",
        r#"{"id":"m","initial":"a","states":{"a":{"entry":{"type":"request","to":"w","event":"E"}}}}"#,
        "states.a.entry: missing 'timeout': how long to wait for the reply (milliseconds or a delay name)",
    ),
    (
        "a delayed request",
        r#"{"id":"m","initial":"a","states":{"a":{"entry":{"type":"request","to":"w","event":"E","timeout":5,"delay":5}}}}"#,
        "states.a.entry.delay: a request is not delayed (its 'timeout' is how long it waits for the reply)",
    ),
    (
        "a request to the sender",
        r#"{"id":"m","initial":"a","states":{"a":{"entry":{"type":"request","to":{"sender":true},"event":"E","timeout":5}}}}"#,
        "states.a.entry.to: 'to' is a machine id",
    ),
    (
        "a sendTo to an object that is not the sender",
        r#"{"id":"m","initial":"a","states":{"a":{"entry":{"type":"sendTo","to":{"sender":false},"event":"E"}}}}"#,
        r#"states.a.entry.to: 'to' is a machine id or {"sender": true} (the event's sender)"#,
    ),
    (
        "a delayed sendTo to the sender",
        r#"{"id":"m","initial":"a","states":{"a":{"entry":{"type":"sendTo","to":{"sender":true},"event":"E","delay":5}}}}"#,
        "states.a.entry.delay: a send to the sender is not delayed",
    ),
    (
        "a delayed sendTo that forwards the event's data",
        r#"{"id":"m","initial":"a","states":{"a":{"entry":{"type":"sendTo","to":"w","event":"E","data":{"from":"event"},"delay":5}}}}"#,
        "states.a.entry.delay: a send that forwards the event's data is not delayed",
    ),
    (
        "an empty action name",
        r#"{"id":"m","initial":"a","states":{"a":{"entry":""}}}"#,
        "states.a.entry: an action name cannot be empty",
    ),
    (
        "an action that is a boolean",
        r#"{"id":"m","initial":"a","states":{"a":{"entry":[true]}}}"#,
        "states.a.entry[0]: an action is a name or an object with a 'type'",
    ),
    // --- guards ---
    (
        "both 'guard' and 'cond'",
        r#"{"id":"m","initial":"a","states":{"a":{"on":{"GO":{"target":"a","guard":"g","cond":"g"}}}}}"#,
        "states.a.on.GO: both 'guard' and 'cond' given; 'cond' is the older name of 'guard', use one",
    ),
    (
        "a guard that is a number",
        r#"{"id":"m","initial":"a","states":{"a":{"on":{"GO":{"target":"a","guard":42}}}}}"#,
        "states.a.on.GO.guard: a guard is a name or an object with a 'type'",
    ),
    (
        "an empty guard name",
        r#"{"id":"m","initial":"a","states":{"a":{"on":{"GO":{"target":"a","cond":""}}}}}"#,
        "states.a.on.GO.cond: a guard name cannot be empty",
    ),
    (
        "a stateIn guard with no state",
        r#"{"id":"m","initial":"a","states":{"a":{"on":{"GO":{"target":"a","guard":{"type":"xstate.stateIn"}}}}}}"#,
        "states.a.on.GO.guard: missing 'state'",
    ),
    (
        "a stateIn guard on the root",
        r##"{"id":"m","initial":"a","states":{"a":{"on":{"GO":{"target":"a","guard":{"type":"stateIn","state":"#m"}}}}}}"##,
        "states.a.on.GO.guard.state: the root is always active; name a state below it",
    ),
    (
        "'in' together with a guard",
        r##"{"id":"m","initial":"a","states":{"a":{"on":{"GO":{"target":"a","guard":"g","in":"#m.a"}}}}}"##,
        "states.a.on.GO.in: 'in' and a guard cannot be combined on one transition",
    ),
    (
        "'in' naming no state",
        r##"{"id":"m","initial":"a","states":{"a":{"on":{"GO":{"target":"a","in":"#m.zz"}}}}}"##,
        "states.a.on.GO.in: no state 'zz' in '#m'",
    ),
    // --- completion ---
    (
        "onDone on an atomic state",
        r#"{"id":"m","initial":"a","states":{"a":{"onDone":"a"}}}"#,
        "states.a.onDone: only compound and parallel states complete; 'onDone' needs one",
    ),
    // --- the document itself ---
    (
        "text that is not JSON",
        r#"{"id": }"#,
        "not valid JSON: expected value at line 1 column 8",
    ),
];

#[test]
fn every_bad_chart_is_refused_with_its_path_and_message() {
    assert!(CASES.len() >= 25);
    let mut failures = Vec::new();
    for (what, chart, expected) in CASES {
        match compile_str(chart) {
            Ok(_) => failures.push(format!("{what}: compiled, expected `{expected}`")),
            Err(e) if e.to_string() == *expected => {}
            Err(e) => failures.push(format!(
                "{what}:\n  expected `{expected}`\n  got      `{e}`"
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

#[test]
fn the_error_path_and_message_are_separate_fields() {
    let e = compile_str(r##"{"id":"m","initial":"a","states":{"a":{"on":{"GO":"#nope"}}}}"##)
        .expect_err("an unknown target");
    assert_eq!(e.path, "states.a.on.GO");
    assert_eq!(e.message, "no state '#nope'");
    // A whole-document error has an empty path and displays as its message alone.
    let e = compile_str("null").expect_err("not an object");
    assert_eq!(e.path, "");
    assert_eq!(e.to_string(), e.message);
}

#[test]
fn states_nested_too_deep_are_refused() {
    let mut inner = String::from("{}");
    for _ in 0..33 {
        inner = format!(r#"{{"initial":"a","states":{{"a":{inner}}}}}"#);
    }
    let chart = format!(r#"{{"id":"m","initial":"a","states":{{"a":{inner}}}}}"#);
    let e = compile_str(&chart).expect_err("34 levels deep");
    assert_eq!(e.message, "states nested deeper than 32 levels");
    assert!(e.path.starts_with("states.a.states.a."), "{}", e.path);
}

/// Any JSON value: numbers, strings, arrays, objects with the keys a chart uses, and the
/// keys it refuses. The compiler must return `Ok` or `Err`, never panic.
#[test]
fn arbitrary_json_values_never_panic() {
    let mut values: Vec<String> = [
        "null",
        "true",
        "0",
        "-1",
        "1e400",
        "18446744073709551616",
        "\"\"",
        "\"states\"",
        "[]",
        "[{}]",
        "{}",
        r#"{"states":null}"#,
        r#"{"states":{}}"#,
        r#"{"states":{"a":null}}"#,
        r#"{"initial":null,"states":{"a":{}}}"#,
        r#"{"initial":"a","states":{"a":{"on":null,"after":null,"always":null,"entry":null}}}"#,
        r#"{"initial":"a","states":{"a":{"on":{"":{"target":""}}}}}"#,
        r#"{"initial":"a","states":{"a":{"on":{"*":[null,[],{},""]}}}}"#,
        r#"{"initial":"a","states":{"a":{"on":{".*":"a","*.*":"a"}}}}"#,
        r##"{"initial":"a","states":{"a":{"on":{"GO":"#"}}}}"##,
        r#"{"initial":"a","states":{"a":{"on":{"GO":"."}}}}"#,
        r#"{"initial":"a","states":{"a":{"on":{"GO":".."}}}}"#,
        r##"{"initial":"a","states":{"a":{"on":{"GO":"#.a"}}}}"##,
        r#"{"initial":".","states":{"a":{}}}"#,
        r#"{"initial":{"target":{}},"states":{"a":{}}}"#,
        r#"{"type":"history"}"#,
        r#"{"history":"deep"}"#,
        r#"{"type":"parallel","states":{"h":{"type":"history"}}}"#,
        r#"{"type":"parallel","states":{"h":{"type":"history","target":"h"}}}"#,
        r#"{"initial":"h","states":{"h":{"type":"history","target":"h"}}}"#,
        r#"{"initial":"a","states":{"a":{"after":{"":"a","0":"a","4294967296":"a"}}}}"#,
        r#"{"initial":"a","states":{"a":{"entry":{"type":"xstate."}}}}"#,
        r#"{"initial":"a","states":{"a":{"entry":{"type":"xstate.sendTo","to":"","event":""}}}}"#,
        r#"{"initial":"a","states":{"a":{"entry":{"type":"xstate.log","message":{"x":[1,2]}}}}}"#,
        r#"{"initial":"a","states":{"a":{"on":{"GO":{"guard":{"type":"stateIn","state":5}}}}}}"#,
        r##"{"initial":"a","states":{"a":{"on":{"GO":{"in":"#"}}}}}"##,
        r#"{"id":"","initial":"a","states":{"a":{"id":""}}}"#,
        r#"{"0":1,"id":"m","initial":"1","states":{"1":{},"0":{}}}"#,
    ]
    .into_iter()
    .map(String::from)
    .collect();
    // Deep nesting: serde_json stops at its recursion limit with an error.
    values.push("[".repeat(10_000) + &"]".repeat(10_000));
    values.push(r#"{"a":"#.repeat(10_000) + "1" + &"}".repeat(10_000));
    values.push(r#"{"initial":"a","states":{"a":"#.repeat(10_000) + "{}" + &"}}".repeat(10_000));
    // Unterminated and truncated documents.
    values.push(r#"{"states":{"a":{"on":{"GO":"#.to_string());
    values.push("\u{0}".to_string());

    for v in &values {
        let outcome = std::panic::catch_unwind(|| compile_str(v).map(|_| ()));
        assert!(
            outcome.is_ok(),
            "the compiler panicked on {}",
            &v[..v.len().min(80)]
        );
    }
    let deep = compile_str(&values[values.len() - 3]).expect_err("10000 nested states");
    assert!(
        deep.message
            .starts_with("not valid JSON: recursion limit exceeded"),
        "{deep}"
    );
}

/// A chart that compiles is accepted by the core too: the compiler never hands out tables
/// that `Chart::new` or the image decoder would refuse.
#[test]
fn accepted_charts_round_trip_through_an_image() {
    for chart in [
        r#"{"id":"m"}"#,
        r#"{"id":"m","type":"parallel","states":{"a":{},"b":{"initial":"x","states":{"x":{},"h":{"type":"history","history":"deep"}}}}}"#,
        r##"{"id":"m","initial":"a","on":{"R":"#m"},"states":{"a":{"on":{"x.*":".","*":"b"}},"b":{"always":{"target":"a","in":"#m.a"}}}}"##,
    ] {
        let compiled = compile_str(chart).expect("compiles");
        let image = compiled.to_image();
        let decoded = interstate::core::image::decode(&image).expect("the image decodes");
        assert_eq!(
            interstate::diagram::summary(&decoded),
            interstate::diagram::summary(&compiled.chart())
        );
    }
}

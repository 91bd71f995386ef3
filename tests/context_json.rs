//! The JSON context (`context`, `assign`, context guards) against XState v5: each case's
//! expected trace was printed by XState 5.33.3 through `scripts/difftest/context-trace.mjs`
//! (the reference oracle with the context extension mapped onto XState's `assign` and guard
//! functions), and `interstate simulate --context` must print the same state values, actions,
//! `done` and contexts, step by step. XState's events carry their fields beside `type`, so the
//! oracle was given `{"type":"ADD","amount":7}` where the simulator takes
//! `{"type":"ADD","data":{"amount":7}}`.

use serde_json::Value;

struct Case {
    name: &'static str,
    chart: &'static str,
    inputs: &'static [&'static str],
    /// XState's trace lines, without `input`.
    expected: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        name: "counter",
        chart: r#"{"id":"counter","context":{"count":0,"name":"c","nested":{"a":[1,2]}},"initial":"active","states":{"active":{"on":{"INC":{"actions":{"type":"assign","assignment":{"count":{"$add":1}}}},"ADD":{"actions":{"type":"assign","assignment":{"count":{"$add":0.5},"last":{"$event":"amount"}}}},"RESET":{"actions":[{"type":"assign","assignment":{"count":0,"name":"reset"}},"didReset"]},"CHECK":[{"guard":{"type":"context","key":"count","op":">=","value":3},"target":"big"},{"guard":{"type":"context","key":"name","value":"reset"},"target":"wasReset"}]}},"big":{"entry":"enteredBig"},"wasReset":{}}}"#,
        inputs: &[
            r#"INC"#,
            r#"INC"#,
            r#"{"type":"ADD","data":{"amount":7}}"#,
            r#"CHECK"#,
            r#"RESET"#,
            r#"{"type":"ADD","data":{"x":7}}"#,
            r#"CHECK"#,
        ],
        expected: &[
            r#"{"step":0,"value":"active","actions":[],"done":false,"context":{"count":0,"name":"c","nested":{"a":[1,2]}}}"#,
            r#"{"step":1,"value":"active","actions":[],"done":false,"context":{"count":1,"name":"c","nested":{"a":[1,2]}}}"#,
            r#"{"step":2,"value":"active","actions":[],"done":false,"context":{"count":2,"name":"c","nested":{"a":[1,2]}}}"#,
            r#"{"step":3,"value":"active","actions":[],"done":false,"context":{"count":2.5,"name":"c","nested":{"a":[1,2]},"last":7}}"#,
            r#"{"step":4,"value":"active","actions":[],"done":false,"context":{"count":2.5,"name":"c","nested":{"a":[1,2]},"last":7}}"#,
            r#"{"step":5,"value":"active","actions":["didReset"],"done":false,"context":{"count":0,"name":"reset","nested":{"a":[1,2]},"last":7}}"#,
            r#"{"step":6,"value":"active","actions":[],"done":false,"context":{"count":0.5,"name":"reset","nested":{"a":[1,2]}}}"#,
            r#"{"step":7,"value":"wasReset","actions":[],"done":false,"context":{"count":0.5,"name":"reset","nested":{"a":[1,2]}}}"#,
        ],
    },
    Case {
        name: "microstep_order",
        chart: r#"{"id":"m","context":{"n":0,"log":"start"},"initial":"a","states":{"a":{"exit":{"type":"assign","assignment":{"log":"exitA"}},"on":{"GO":{"target":"b","actions":[{"type":"assign","assignment":{"n":{"$add":10}}},"afterAdd"]}}},"b":{"entry":{"type":"assign","assignment":{"n":{"$add":1},"log":"entryB"}},"always":[{"guard":{"type":"context","key":"n","op":">","value":20},"target":"fin"}],"on":{"GO":{"target":"b","reenter":true},"SET":{"actions":{"type":"assign","assignment":{"who":{"$event":"who"}}}},"IFWHO":{"guard":{"type":"context","key":"who","op":"!=","value":null},"target":"a"},"ISX":{"guard":{"type":"context","key":"who","value":{"x":[1,"y"]}},"actions":"matchedX"}}},"fin":{"type":"final"}}}"#,
        inputs: &[
            r#"IFWHO"#,
            r#"GO"#,
            r#"{"type":"SET","data":{"who":{"x":[1,"y"]}}}"#,
            r#"ISX"#,
            r#"IFWHO"#,
            r#"GO"#,
            r#"GO"#,
            r#"GO"#,
        ],
        expected: &[
            r#"{"step":0,"value":"a","actions":[],"done":false,"context":{"n":0,"log":"start"}}"#,
            r#"{"step":1,"value":"a","actions":[],"done":false,"context":{"n":0,"log":"start"}}"#,
            r#"{"step":2,"value":"b","actions":["afterAdd"],"done":false,"context":{"n":11,"log":"entryB"}}"#,
            r#"{"step":3,"value":"b","actions":[],"done":false,"context":{"n":11,"log":"entryB","who":{"x":[1,"y"]}}}"#,
            r#"{"step":4,"value":"b","actions":["matchedX"],"done":false,"context":{"n":11,"log":"entryB","who":{"x":[1,"y"]}}}"#,
            r#"{"step":5,"value":"a","actions":[],"done":false,"context":{"n":11,"log":"entryB","who":{"x":[1,"y"]}}}"#,
            r#"{"step":6,"value":"fin","actions":["afterAdd"],"done":true,"context":{"n":22,"log":"entryB","who":{"x":[1,"y"]}}}"#,
            r#"{"step":7,"value":"fin","actions":[],"done":true,"context":{"n":22,"log":"entryB","who":{"x":[1,"y"]}}}"#,
            r#"{"step":8,"value":"fin","actions":[],"done":true,"context":{"n":22,"log":"entryB","who":{"x":[1,"y"]}}}"#,
        ],
    },
    Case {
        name: "parallel_regions",
        chart: r#"{"id":"p","context":{"a":0,"b":0,"s":"x"},"type":"parallel","states":{"r1":{"initial":"i","states":{"i":{"on":{"T":{"target":"j","actions":{"type":"assign","assignment":{"a":{"$add":1},"s":"r1"}}}}},"j":{"on":{"T":{"guard":{"type":"context","key":"b","op":">=","value":1},"target":"i"}}}}},"r2":{"initial":"i","states":{"i":{"on":{"T":{"target":"j","actions":{"type":"assign","assignment":{"b":{"$add":-0.25},"s":"r2"}}}}},"j":{"entry":{"type":"assign","assignment":{"b":{"$add":2}}},"on":{"U":{"guard":{"type":"context","key":"s","value":"r2"},"target":"i"}}}}}}}"#,
        inputs: &[r#"T"#, r#"U"#, r#"T"#, r#"T"#, r#"U"#],
        expected: &[
            r#"{"step":0,"value":{"r1":"i","r2":"i"},"actions":[],"done":false,"context":{"a":0,"b":0,"s":"x"}}"#,
            r#"{"step":1,"value":{"r1":"j","r2":"j"},"actions":[],"done":false,"context":{"a":1,"b":1.75,"s":"r2"}}"#,
            r#"{"step":2,"value":{"r1":"j","r2":"i"},"actions":[],"done":false,"context":{"a":1,"b":1.75,"s":"r2"}}"#,
            r#"{"step":3,"value":{"r1":"i","r2":"j"},"actions":[],"done":false,"context":{"a":1,"b":3.5,"s":"r2"}}"#,
            r#"{"step":4,"value":{"r1":"j","r2":"j"},"actions":[],"done":false,"context":{"a":2,"b":3.5,"s":"r1"}}"#,
            r#"{"step":5,"value":{"r1":"j","r2":"j"},"actions":[],"done":false,"context":{"a":2,"b":3.5,"s":"r1"}}"#,
        ],
    },
];

#[test]
fn json_context_matches_xstate() {
    let mut failures = Vec::new();
    for case in CASES {
        let compiled = interstate::compile_str(case.chart).expect("the case's chart compiles");
        let options = interstate::simulate::Options {
            context: true,
            ..Default::default()
        };
        let mut out = Vec::new();
        let ok = interstate::simulate::run(
            &compiled.chart(),
            &options,
            case.inputs.iter().map(|s| s.to_string()),
            &mut out,
        )
        .unwrap();
        assert!(ok, "{}: the simulation stopped with an error", case.name);
        let got: Vec<Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| {
                let mut v: Value = serde_json::from_str(l).unwrap();
                v.as_object_mut().unwrap().remove("input");
                v
            })
            .collect();
        let expected: Vec<Value> = case
            .expected
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(got.len(), expected.len(), "{}: trace length", case.name);
        for (g, e) in got.iter().zip(&expected) {
            if g != e {
                failures.push(format!(
                    "{}:\n  interstate {g}\n  xstate     {e}",
                    case.name
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn without_the_option_the_trace_has_no_context() {
    let compiled = interstate::compile_str(CASES[0].chart).unwrap();
    let mut out = Vec::new();
    interstate::simulate::run(
        &compiled.chart(),
        &interstate::simulate::Options::default(),
        ["INC".to_string()],
        &mut out,
    )
    .unwrap();
    assert!(!String::from_utf8(out).unwrap().contains("context"));
}

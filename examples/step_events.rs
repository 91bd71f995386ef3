//! Events through one machine, for counting instructions per event under valgrind: the three
//! charts of `benches/step.rs` (the same JSON, the same machine capacities, the same kind of
//! `Behavior`), one event `T` sent `N` times.
//!
//! `scripts/step_instructions.sh` runs it under `callgrind` for two values of `N` and prints
//! the difference per event, which leaves out the start-up (compiling the chart, starting
//! the machine). Run by hand: `cargo run --release --example step_events -- flat 1000`
//! (`flat`, `deep` or `parallel`).

use std::hint::black_box;

use interstate::core::{ActionContext, ActionId, Behavior, GuardContext, GuardId, Instant};
use interstate::{Event, Machine};

type M<'c> = Machine<'c, 1, 8, 8, 8, 8, 64>;

/// Counts action calls by id, as the benchmark does.
struct Counts([u64; 32]);

impl Behavior for Counts {
    #[inline]
    fn action(&mut self, action: ActionId, _: &mut ActionContext<'_>) {
        self.0[action.index() & 31] += 1;
    }
    fn guard(&mut self, _: GuardId, _: &GuardContext<'_>) -> bool {
        false
    }
}

const FLAT: &str = r#"{"id":"flat","initial":"a","states":{
  "a":{"entry":"enA","on":{"T":"b"}},
  "b":{"entry":"enB","on":{"T":"a"}}}}"#;

fn deep_chart() -> String {
    // a1 > a2 > ... > a5 and b1 > ... > b5 under the root; T moves a5 <-> b5.
    fn branch(p: &str, level: usize, other: &str) -> String {
        let name = format!("{p}{level}");
        let inner = if level == 5 {
            format!(r#""on":{{"T":"{other}"}}"#)
        } else {
            format!(
                r#""initial":"{p}{}","states":{{"{p}{}":{}}}"#,
                level + 1,
                level + 1,
                branch(p, level + 1, other)
            )
        };
        format!(r#"{{"entry":"en_{name}","exit":"ex_{name}",{inner}}}"#)
    }
    let a = branch("a", 1, "#deep.b1.b2.b3.b4.b5");
    let b = branch("b", 1, "#deep.a1.a2.a3.a4.a5");
    format!(r#"{{"id":"deep","initial":"a1","states":{{"a1":{a},"b1":{b}}}}}"#)
}

fn parallel_chart() -> String {
    let regions: Vec<String> = (1..=4)
        .map(|r| {
            format!(
                r#""r{r}":{{"initial":"x","states":{{"x":{{"entry":"en_r{r}x","on":{{"T":"y"}}}},"y":{{"entry":"en_r{r}y","on":{{"T":"x"}}}}}}}}"#
            )
        })
        .collect();
    format!(
        r#"{{"id":"par","type":"parallel","states":{{{}}}}}"#,
        regions.join(",")
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: step_events flat|deep|parallel N";
    let json = match args.get(1).map(String::as_str) {
        Some("flat") => FLAT.to_string(),
        Some("deep") => deep_chart(),
        Some("parallel") => parallel_chart(),
        _ => panic!("{usage}"),
    };
    let n: usize = args.get(2).and_then(|n| n.parse().ok()).expect(usage);
    let compiled = interstate::compile_str(&json).expect("compiles");
    let chart = compiled.chart();
    let mut m = Box::new(M::new(chart, "bench").expect("capacities fit"));
    let mut counts = Counts([0; 32]);
    m.start(Instant::ZERO, &mut counts).expect("starts");
    let t = chart.event("T").expect("the chart has T");
    let ev = Event::from_id(&chart, t);
    for _ in 0..n {
        m.send(Instant::ZERO, black_box(ev), &mut counts)
            .expect("steps");
    }
    black_box(&counts.0);
}

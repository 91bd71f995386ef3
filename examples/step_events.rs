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

#[path = "../benches/common/step_charts.rs"]
mod step_charts;
use step_charts::{deep_chart, parallel_chart, FLAT};

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

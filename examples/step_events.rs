//! Events through one machine, for counting instructions per event under valgrind: the three
//! charts of `benches/step.rs` (the same JSON, the same machine capacities, the same kind of
//! `Behavior`), one event `T` sent `N` times.
//!
//! `scripts/step_instructions.sh` runs it under `callgrind` for two values of `N` and prints
//! the difference per event, which leaves out the start-up (compiling the chart, starting
//! the machine). Run by hand: `cargo run --release --example step_events -- flat 1000`
//! (`flat`, `deep` or `parallel`). A third argument `native` runs the chart's generated
//! machine (`benches/common/native_*.rs`, `interstate compile --native`) instead of the
//! interpreter, `hand` the benchmark's hand-written machine (`benches/common/hand_written.rs`)
//! with the same event sent the same way (each machine's event through one `black_box` of a
//! register-sized value, as in the benchmark: the hand-written machine's `EventId`, a
//! reference to the native machine's `Event`).

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

#[path = "../benches/common/hand_written.rs"]
mod hand_written;
use hand_written::{Ab, Actions, HandDeep, HandFlat, HandParallel};

impl Actions for Counts {
    #[inline]
    fn action(&mut self, action: ActionId) {
        self.0[action.index() & 31] += 1;
    }
}

/// The benchmark's hand-written machine of `case`, `n` events `T` (the ids from the chart, as
/// the benchmark takes them).
fn run_hand(case: &str, n: usize) {
    let json = match case {
        "flat" => FLAT.to_string(),
        "deep" => deep_chart(),
        _ => parallel_chart(),
    };
    let compiled = interstate::compile_str(&json).expect("compiles");
    let chart = compiled.chart();
    let action = |name: &str| chart.action(name).expect("the chart has the action");
    let t = chart.event("T").expect("the chart has T");
    let mut counts = Counts([0; 32]);
    match case {
        "flat" => {
            let mut m = HandFlat {
                state: Ab::A,
                t,
                en_a: action("enA"),
                en_b: action("enB"),
            };
            for _ in 0..n {
                m.send(black_box(t), &mut counts);
            }
        }
        "deep" => {
            let ids = |kind: &str, p: &str| -> [ActionId; 5] {
                std::array::from_fn(|i| action(&format!("{kind}_{p}{}", i + 1)))
            };
            let mut m = HandDeep {
                state: Ab::A,
                t,
                en: [ids("en", "a"), ids("en", "b")],
                ex: [ids("ex", "a"), ids("ex", "b")],
            };
            for _ in 0..n {
                m.send(black_box(t), &mut counts);
            }
        }
        _ => {
            let mut m = HandParallel {
                regions: [Ab::A; 4],
                t,
                en: std::array::from_fn(|r| {
                    [
                        action(&format!("en_r{}x", r + 1)),
                        action(&format!("en_r{}y", r + 1)),
                    ]
                }),
            };
            for _ in 0..n {
                m.send(black_box(t), &mut counts);
            }
        }
    }
    black_box(&counts.0);
}

#[allow(dead_code)]
mod native_flat {
    include!("../benches/common/native_flat.rs");
}
#[allow(dead_code)]
mod native_deep {
    include!("../benches/common/native_deep.rs");
}
#[allow(dead_code)]
mod native_parallel {
    include!("../benches/common/native_parallel.rs");
}

/// The generated machine of `N` with `M`'s capacities, `n` events `T`.
fn run_native<N: interstate::core::machine::NativeChart, const W: usize>(n: usize) {
    let mut m = Box::new(
        interstate::core::machine::NativeMachine::<N, W, 8, 8, 8, 8, 64>::new("bench")
            .expect("capacities fit"),
    );
    let mut counts = Counts([0; 32]);
    m.start(Instant::ZERO, &mut counts).expect("starts");
    let chart = N::chart();
    let ev = Event::from_id(&chart, chart.event("T").expect("the chart has T"));
    for _ in 0..n {
        m.send_ref(Instant::ZERO, black_box(&ev), &mut counts)
            .expect("steps");
    }
    black_box(&counts.0);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: step_events flat|deep|parallel N [native|hand]";
    if args.get(3).map(String::as_str) == Some("hand") {
        let n: usize = args.get(2).and_then(|n| n.parse().ok()).expect(usage);
        match args.get(1).map(String::as_str) {
            Some(case @ ("flat" | "deep" | "parallel")) => run_hand(case, n),
            _ => panic!("{usage}"),
        }
        return;
    }
    if args.get(3).map(String::as_str) == Some("native") {
        let n: usize = args.get(2).and_then(|n| n.parse().ok()).expect(usage);
        match args.get(1).map(String::as_str) {
            Some("flat") => run_native::<native_flat::Native, { native_flat::WORDS }>(n),
            Some("deep") => run_native::<native_deep::Native, { native_deep::WORDS }>(n),
            Some("parallel") => {
                run_native::<native_parallel::Native, { native_parallel::WORDS }>(n)
            }
            _ => panic!("{usage}"),
        }
        return;
    }
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

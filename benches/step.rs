//! Events per second through a machine, beside hand-written `match` machines doing the same
//! work.
//!
//! Three charts, each measured three times in the same run (the interpreter, the chart
//! compiled to native Rust by `interstate compile --native`, and a hand-written machine):
//! - `flat_toggle`: two states, one event toggling, an entry action on each;
//! - `hierarchy5`: two leaves 5 levels deep whose nearest common ancestor is the root, one
//!   event moving between them, entry and exit actions on every level (10 actions per event);
//! - `parallel4`: 4 parallel regions each toggling on the same event (4 entry actions).
//!
//! The interstate side sends events made with `Event::from_id` (pre-resolved ids) and binds
//! actions with a core `Behavior` impl (static dispatch, a `match` on the id). The
//! hand-written side is a `match` on (state, event) that makes the same action calls, in the
//! same order, through the same kind of callback (a generic trait method taking the
//! `ActionId`). `flat_toggle/interstate_bound` measures the facade's boxed-closure binding
//! (`Behaviors` -> `Bound`) on the flat toggle.
//!
//! The `native` side is the generated module of each chart, checked in as
//! `benches/common/native_*.rs` (`tests/native_modules.rs` keeps them up to date), in a
//! `NativeMachine` of the same capacities, with the same `Behavior`.
//!
//! Fairness: every routine returns `()` (a step's `Result` is checked with `expect`, a
//! compare and a branch: returned, criterion's `black_box` would read its 40 bytes one by
//! one on every iteration, which the hand-written routine, returning nothing, never paid),
//! and every routine gets its event through one `black_box` of a register-sized value: the
//! hand-written machine its `EventId`, the native machine a reference to its `Event`
//! (`send_ref`; `black_box` of the 64-byte `Event` itself would copy it on every
//! iteration). The interpreter's `send` takes the event by value, as its step context
//! holds a copy anyway.
//!
//! Run: `cargo bench --bench step`. Results are in docs/performance.md.

use std::cell::Cell;
use std::hint::black_box;
use std::rc::Rc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use interstate::core::{
    ActionContext, ActionId, Behavior, Chart, EventId, GuardContext, GuardId, Instant,
};
use interstate::{Behaviors, Event, Machine};

type M<'c> = Machine<'c, 1, 8, 8, 8, 8, 64>;

/// Counts action calls by id: the work both sides do per action.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Counts([u64; 32]);

impl Counts {
    #[inline]
    fn hit(&mut self, a: ActionId) {
        self.0[a.index() & 31] += 1;
    }
}

impl Behavior for Counts {
    #[inline]
    fn action(&mut self, action: ActionId, _: &mut ActionContext<'_>) {
        self.hit(action);
    }
    fn guard(&mut self, _: GuardId, _: &GuardContext<'_>) -> bool {
        false
    }
}

impl Actions for Counts {
    #[inline]
    fn action(&mut self, action: ActionId) {
        self.hit(action);
    }
}

fn action(chart: &Chart<'_>, name: &str) -> ActionId {
    chart
        .action(name)
        .unwrap_or_else(|| panic!("no action {name}"))
}

fn event(chart: &Chart<'_>, name: &str) -> EventId {
    chart
        .event(name)
        .unwrap_or_else(|| panic!("no event {name}"))
}

// ----- charts --------------------------------------------------------------------------------

#[path = "common/step_charts.rs"]
mod step_charts;
use step_charts::{deep_chart, parallel_chart, FLAT};

// ----- the charts compiled to native Rust ---------------------------------------------------

#[allow(dead_code)]
mod native_flat {
    include!("common/native_flat.rs");
}
#[allow(dead_code)]
mod native_deep {
    include!("common/native_deep.rs");
}
#[allow(dead_code)]
mod native_parallel {
    include!("common/native_parallel.rs");
}

/// A generated machine with `M`'s capacities.
type Native<N, const W: usize> = interstate::core::machine::NativeMachine<N, W, 8, 8, 8, 8, 64>;

/// Starts the generated machine of `N` with `Counts`; checks it does the interpreter's work
/// on `CHECK_EVENTS` events (`expected`: the interpreter's counts after them, from the same
/// start).
fn start_native<N: interstate::core::machine::NativeChart, const W: usize>(
    t: &str,
    expected: &Counts,
) -> (Box<Native<N, W>>, Counts, Event<'static>) {
    let mut m = Box::new(Native::<N, W>::new("bench").expect("capacities fit"));
    let mut counts = Counts::default();
    m.start(NOW, &mut counts).expect("starts");
    let chart = N::chart();
    let ev = Event::from_id(&chart, event(&chart, t));
    for _ in 0..CHECK_EVENTS {
        m.send(NOW, ev, &mut counts).expect("steps");
    }
    assert_eq!(&counts, expected, "the native machine does different work");
    (m, counts, ev)
}

// ----- hand-written machines -----------------------------------------------------------------

#[path = "common/hand_written.rs"]
mod hand_written;
use hand_written::{Ab, Actions, HandDeep, HandFlat, HandParallel};

// ----- benchmarks ----------------------------------------------------------------------------

const NOW: Instant = Instant::ZERO;
const CHECK_EVENTS: usize = 1001;

/// Runs `chart` with `Counts`, returning the machine, the behaviour and the event.
fn start<'c>(chart: Chart<'c>, t: &str) -> (Box<M<'c>>, Counts, Event<'c>) {
    let mut m = Box::new(M::new(chart, "bench").expect("capacities fit"));
    let mut counts = Counts::default();
    m.start(NOW, &mut counts).expect("starts");
    let ev = Event::from_id(&chart, event(&chart, t));
    (m, counts, ev)
}

fn bench_flat(c: &mut Criterion) {
    let compiled = interstate::compile_str(FLAT).expect("compiles");
    let chart = compiled.chart();
    let mut g = c.benchmark_group("flat_toggle");
    g.throughput(Throughput::Elements(1));

    let (mut m, mut counts, ev) = start(chart, "T");
    let mut hand = HandFlat {
        state: Ab::A,
        t: event(&chart, "T"),
        en_a: action(&chart, "enA"),
        en_b: action(&chart, "enB"),
    };
    let mut hand_counts = Counts::default();
    hand_counts.hit(hand.en_a); // the initial entry the machine made when it started
    for _ in 0..CHECK_EVENTS {
        m.send(NOW, ev, &mut counts).expect("steps");
        hand.send(hand.t, &mut hand_counts);
    }
    assert_eq!(counts, hand_counts, "the two machines do different work");
    let (mut nm, mut native_counts, nev) =
        start_native::<native_flat::Native, { native_flat::WORDS }>("T", &counts);

    g.bench_function("interstate", |b| {
        b.iter(|| m.send(NOW, black_box(ev), &mut counts).expect("steps"))
    });
    g.bench_function("native", |b| {
        b.iter(|| {
            nm.send_ref(NOW, black_box(&nev), &mut native_counts)
                .expect("steps")
        })
    });
    let t = hand.t;
    g.bench_function("hand_written", |b| {
        b.iter(|| hand.send(black_box(t), &mut hand_counts))
    });

    // The facade's binding: boxed closures resolved by name, called through `Bound`.
    let hits = Rc::new(Cell::new(0u64));
    let (h1, h2) = (hits.clone(), hits.clone());
    let mut bound = Behaviors::new()
        .action("enA", move |_| h1.set(h1.get() + 1))
        .action("enB", move |_| h2.set(h2.get() + 1))
        .bind(&chart)
        .expect("binds");
    let mut mb = Box::new(M::new(chart, "bench").expect("capacities fit"));
    mb.start(NOW, &mut bound).expect("starts");
    g.bench_function("interstate_bound", |b| {
        b.iter(|| mb.send(NOW, black_box(ev), &mut bound).expect("steps"))
    });
    assert!(hits.get() > 0);
    g.finish();
    black_box((counts, hand_counts));
}

fn bench_deep(c: &mut Criterion) {
    let json = deep_chart();
    let compiled = interstate::compile_str(&json).expect("compiles");
    let chart = compiled.chart();
    let mut g = c.benchmark_group("hierarchy5");
    g.throughput(Throughput::Elements(1));

    let (mut m, mut counts, ev) = start(chart, "T");
    let ids = |kind: &str, p: &str| -> [ActionId; 5] {
        std::array::from_fn(|i| action(&chart, &format!("{kind}_{p}{}", i + 1)))
    };
    let mut hand = HandDeep {
        state: Ab::A,
        t: event(&chart, "T"),
        en: [ids("en", "a"), ids("en", "b")],
        ex: [ids("ex", "a"), ids("ex", "b")],
    };
    let mut hand_counts = Counts::default();
    for &a in &hand.en[0] {
        hand_counts.hit(a);
    }
    for _ in 0..CHECK_EVENTS {
        m.send(NOW, ev, &mut counts).expect("steps");
        hand.send(hand.t, &mut hand_counts);
    }
    assert_eq!(counts, hand_counts, "the two machines do different work");
    let (mut nm, mut native_counts, nev) =
        start_native::<native_deep::Native, { native_deep::WORDS }>("T", &counts);

    g.bench_function("interstate", |b| {
        b.iter(|| m.send(NOW, black_box(ev), &mut counts).expect("steps"))
    });
    g.bench_function("native", |b| {
        b.iter(|| {
            nm.send_ref(NOW, black_box(&nev), &mut native_counts)
                .expect("steps")
        })
    });
    let t = hand.t;
    g.bench_function("hand_written", |b| {
        b.iter(|| hand.send(black_box(t), &mut hand_counts))
    });
    g.finish();
    black_box((counts, hand_counts, native_counts));
}

fn bench_parallel(c: &mut Criterion) {
    let json = parallel_chart();
    let compiled = interstate::compile_str(&json).expect("compiles");
    let chart = compiled.chart();
    let mut g = c.benchmark_group("parallel4");
    g.throughput(Throughput::Elements(1));

    let (mut m, mut counts, ev) = start(chart, "T");
    let mut hand = HandParallel {
        regions: [Ab::A; 4],
        t: event(&chart, "T"),
        en: std::array::from_fn(|r| {
            [
                action(&chart, &format!("en_r{}x", r + 1)),
                action(&chart, &format!("en_r{}y", r + 1)),
            ]
        }),
    };
    let mut hand_counts = Counts::default();
    for r in &hand.en {
        hand_counts.hit(r[0]);
    }
    for _ in 0..CHECK_EVENTS {
        m.send(NOW, ev, &mut counts).expect("steps");
        hand.send(hand.t, &mut hand_counts);
    }
    assert_eq!(counts, hand_counts, "the two machines do different work");
    let (mut nm, mut native_counts, nev) =
        start_native::<native_parallel::Native, { native_parallel::WORDS }>("T", &counts);

    g.bench_function("interstate", |b| {
        b.iter(|| m.send(NOW, black_box(ev), &mut counts).expect("steps"))
    });
    g.bench_function("native", |b| {
        b.iter(|| {
            nm.send_ref(NOW, black_box(&nev), &mut native_counts)
                .expect("steps")
        })
    });
    let t = hand.t;
    g.bench_function("hand_written", |b| {
        b.iter(|| hand.send(black_box(t), &mut hand_counts))
    });
    g.finish();
    black_box((counts, hand_counts, native_counts));
}

criterion_group!(benches, bench_flat, bench_deep, bench_parallel);
criterion_main!(benches);

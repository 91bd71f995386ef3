//! What the fuzz targets do, as plain functions.
//!
//! Each `fuzz_targets/<name>.rs` is a one-line call into this file, and the main crate's
//! `tests/fuzz_corpus.rs` includes this same file (with `#[path]`) to replay every checked-in
//! corpus input through exactly the same code on every `cargo test`. So this file may only use
//! what both crates have: `interstate`, `interstate_core`, `interstate_platform` and
//! `arbitrary`.
//!
//! - [`json_chart`]: bytes -> `interstate::compile_str` -> if it compiles, the image must load
//!   back, and a machine is started and sent every event the chart knows, with timers fired.
//! - [`chart_image`]: bytes -> `interstate_core::image::decode` -> if it loads, the chart must
//!   survive a round trip through `CompiledChart`, and a machine is stepped with events
//!   derived from the input.
//! - [`drive_machine`]: an [`arbitrary`] list of [`Op`]s (quinn-proto style) applied to one of
//!   a few fixed, rich charts; the configuration's legality is checked after every step.
//!
//! - [`frame_decode`], [`hub`], [`endpoint`], [`conn`] (in [`protocol`]): the bus protocol's
//!   frame decoder, the hub, the client endpoint and the platform's framed stream, fed bytes
//!   and `arbitrary` operations.
//! - [`serial`](fn@serial) (in [`mod@serial`]): COBS framing on serial lines and the device-side link.
//! - [`shm_ring`] (in [`ring`]): the shared-memory ring over memory a hostile peer writes.
//! - [`restore_snapshot`] (in [`mod@snapshot`]): `Machine::restore` of hostile bytes, plain,
//!   behind a valid header, or a real snapshot with bits flipped.
//!
//! Every function panics on a broken invariant; errors returned by the machine are fine.
//!
//! The bus targets live in submodules of this file (`protocol/`, `serial.rs`, `ring.rs`
//! beside it), which `tests/fuzz_corpus.rs` picks up along with this file; they also use
//! `interstate_platform` (for the ring), which the main crate depends on too.

pub mod protocol;
pub mod ring;
pub mod serial;
pub mod snapshot;

pub use protocol::{conn, endpoint, frame_decode, hub};
pub use ring::shm_ring;
pub use serial::serial;
pub use snapshot::restore_snapshot;

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use interstate::CompiledChart;
use interstate_core::chart::StateKind;
use interstate_core::{
    image, ActionContext, ActionId, Behavior, Chart, DelayId, Duration, Error, Event, GuardContext,
    GuardId, Instant, Machine, SendId, StateId, Status, Target,
};

/// Generous capacities, as a host would use.
pub type FuzzMachine<'c> = Machine<'c, 4, 64, 64, 64, 64, 4096>;

/// Low, so that eventless loops end quickly.
const MICROSTEP_LIMIT: u32 = 200;
/// Inputs longer than this are cut: longer ones only slow the fuzzer down.
const MAX_OPS: usize = 256;
const MACHINE_ID: &str = "fuzz";

/// The host side of a fuzzed machine: guards from a bit pattern, actions that send, send to
/// the machine itself, send later and cancel, all deterministic.
#[derive(Debug, Default)]
pub struct FuzzBehavior {
    guards: u64,
    calls: u32,
    actions: u64,
    last_send: Option<SendId>,
}

impl FuzzBehavior {
    /// Guards answer from the bits of `guards`, rotating on every call.
    pub fn new(guards: u64) -> Self {
        FuzzBehavior {
            guards,
            ..Default::default()
        }
    }
}

impl Behavior for FuzzBehavior {
    fn action(&mut self, action: ActionId, cx: &mut ActionContext<'_>) {
        self.actions += 1;
        let pick = (action.0 as u64 + self.actions) % 8;
        let n = self.actions.to_le_bytes();
        match pick {
            0 => {
                let _ = cx.send("peer", "PING", &n);
            }
            1 => {
                let _ = cx.send_self("A", b"");
            }
            2 => {
                let target = if self.actions % 2 == 0 {
                    Target::Machine("peer")
                } else {
                    Target::ThisMachine
                };
                let delay = Duration::from_millis(self.actions % 17);
                if let Ok(id) = cx.send_after(target, "B", delay, &n[..(self.actions % 9) as usize])
                {
                    self.last_send = Some(id);
                }
            }
            3 => {
                if let Some(id) = self.last_send.take() {
                    cx.cancel(id);
                }
            }
            4 => {
                let _ = cx.send_value("peer", "VALUE", &(self.actions, cx.event().name().len()));
            }
            _ => {}
        }
    }
    fn guard(&mut self, guard: GuardId, _: &GuardContext<'_>) -> bool {
        self.calls = self.calls.wrapping_add(1);
        (self.guards >> ((guard.0 as u32).wrapping_add(self.calls) % 64)) & 1 == 1
    }
    fn delay(&mut self, delay: DelayId) -> Option<Duration> {
        Some(Duration::from_millis(5 + 7 * delay.0 as u64))
    }
}

/// Checks the configuration: the root is active; an active compound state has exactly one
/// active non-history child; an active parallel state has all its non-history children
/// active; every active state's parent is active; no history state is active.
pub fn check_config(m: &FuzzMachine<'_>) -> Result<(), String> {
    let chart = *m.chart();
    if !m.is_active(StateId(0)) {
        return Err("the root is not active".into());
    }
    for s in m.active_states() {
        let name = chart.state_id(s);
        let kind = chart.kind(s);
        if kind.is_history() {
            return Err(format!("history state '{name}' is active"));
        }
        if let Some(p) = chart.parent(s) {
            if !m.is_active(p) {
                return Err(format!("'{name}' is active but its parent is not"));
            }
        }
        let (mut regions, mut active) = (0, 0);
        for c in chart.children(s) {
            if !chart.kind(c).is_history() {
                regions += 1;
                active += usize::from(m.is_active(c));
            }
        }
        match kind {
            StateKind::Compound if active != 1 => {
                return Err(format!("compound '{name}' has {active} active children"))
            }
            StateKind::Parallel if active != regions => {
                return Err(format!(
                    "parallel '{name}' has {active} of {regions} regions active"
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// A step's result: `Ok` must leave a legal configuration (and a done machine done); an error
/// must leave the machine `Failed`, refusing events. Returns whether the machine still runs.
fn after_step(
    m: &mut FuzzMachine<'_>,
    r: Result<(), Error>,
    done: &mut Option<Vec<StateId>>,
    legal: bool,
) -> bool {
    match r {
        Ok(()) => {
            assert_ne!(m.status(), Status::Failed, "Ok but Failed");
            if legal {
                if let Err(e) = check_config(m) {
                    panic!("illegal configuration: {e}");
                }
            }
            if let Some(cfg) = done {
                assert_eq!(m.status(), Status::Done, "a done machine came back to life");
                assert!(
                    m.active_states().eq(cfg.iter().copied()),
                    "a done machine changed"
                );
            } else if m.status() == Status::Done {
                *done = Some(m.active_states().collect());
            }
            true
        }
        // Delivering a fired delayed send into a full outbox is the one recoverable error:
        // the timer stays and the machine keeps running.
        Err(Error::OutboxFull { .. } | Error::PayloadSpaceFull { .. })
            if m.status() == Status::Active =>
        {
            true
        }
        Err(e) => {
            assert_eq!(
                m.status(),
                Status::Failed,
                "error {e:?} left the machine running"
            );
            let again = m.send(Instant::ZERO, Event::new("A"), &mut FuzzBehavior::default());
            assert_eq!(
                again,
                Err(Error::NotRunning),
                "a failed machine took an event"
            );
            false
        }
    }
}

/// Fires due timers (at most `budget`), checking after each.
fn fire_due(
    m: &mut FuzzMachine<'_>,
    b: &mut FuzzBehavior,
    now: Instant,
    budget: usize,
    done: &mut Option<Vec<StateId>>,
    legal: bool,
) -> bool {
    for _ in 0..budget {
        if m.poll_timeout().is_none_or(|t| t > now) {
            break;
        }
        let r = m.handle_timeout(now, b).map(|_| ());
        if !after_step(m, r, done, legal) {
            return false;
        }
    }
    true
}

/// Reads the outbox as a host would, then delivers up to `budget` of the events the machine
/// sent itself. Returns whether the machine still runs.
fn drain(
    m: &mut FuzzMachine<'_>,
    b: &mut FuzzBehavior,
    now: Instant,
    budget: usize,
    done: &mut Option<Vec<StateId>>,
    legal: bool,
) -> bool {
    let mut mine: Vec<(String, Vec<u8>)> = Vec::new();
    for o in m.outbox() {
        let to_me = match o.target {
            Target::ThisMachine => true,
            Target::Machine(t) => t == MACHINE_ID,
            Target::Topic(_) | Target::Broadcast => false,
        };
        if to_me {
            mine.push((o.event.to_string(), o.payload.to_vec()));
        }
    }
    m.clear_outbox();
    for (event, payload) in mine.iter().take(budget) {
        let r = m.send(now, Event::new(event).with_payload(payload), b);
        if !after_step(m, r, done, legal) {
            return false;
        }
    }
    true
}

/// Starts `chart` and sends it `events` (with a clock advancing between them), checking
/// results but not legality (arbitrary charts may hit known XState corner cases).
fn run_events<'c>(chart: Chart<'c>, events: impl Iterator<Item = (Event<'c>, u64)>, guards: u64) {
    let Ok(m) = FuzzMachine::new(chart, MACHINE_ID) else {
        return;
    };
    let mut m = Box::new(m);
    m.set_microstep_limit(MICROSTEP_LIMIT);
    let mut b = FuzzBehavior::new(guards);
    let mut done = None;
    let mut now = Instant::ZERO;
    let r = m.start(now, &mut b);
    if !after_step(&mut m, r, &mut done, false) {
        return;
    }
    let mut value = String::new();
    for (event, advance) in events.take(MAX_OPS) {
        let r = m.send(now, event, &mut b);
        if !after_step(&mut m, r, &mut done, false) {
            return;
        }
        now = now + Duration::from_millis(advance);
        if !fire_due(&mut m, &mut b, now, 16, &mut done, false)
            || !drain(&mut m, &mut b, now, 4, &mut done, false)
        {
            return;
        }
        value.clear();
        let _ = m.write_value(&mut value);
    }
}

/// Target `json_chart`: JSON text in. Compiling never panics; a compiled chart's image loads
/// back to the same tables; a machine runs every event the chart knows.
pub fn json_chart(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(compiled) = interstate::compile_str(text) else {
        return;
    };
    let chart = compiled.chart();
    let bytes = compiled.to_image();
    match image::decode(&bytes) {
        Ok(back) => assert_eq!(
            back.tables(),
            chart.tables(),
            "the image changed the tables"
        ),
        Err(e) => panic!("a compiled chart's image does not load: {e}"),
    }
    let n = chart.event_count() as u16;
    let events = (0..n)
        .map(|e| Event::from_id(&chart, interstate_core::EventId(e)))
        .chain([Event::new("unknown.event"), Event::new("A")])
        .zip([0, 1, 10, 100, 1000].into_iter().cycle());
    run_events(
        chart,
        events,
        (data.len() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
}

/// Target `chart_image`: image bytes in. Decoding never panics; a decoded chart survives a
/// round trip through `CompiledChart`; a machine is stepped with events chosen by the input.
pub fn chart_image(data: &[u8]) {
    let Ok(chart) = image::decode(data) else {
        return;
    };
    let copy = CompiledChart::from_chart(&chart);
    let again = copy.to_image();
    match image::decode(&again) {
        Ok(back) => assert_eq!(
            back.tables(),
            chart.tables(),
            "the round trip changed the tables"
        ),
        Err(e) => panic!("a decoded chart's image does not load again: {e}"),
    }
    let n = chart.event_count();
    let events = data.iter().rev().map(|&b| {
        let event = if n > 0 && b < 0xF0 {
            Event::from_id(&chart, interstate_core::EventId((b as usize % n) as u16))
        } else {
            Event::new("unknown")
        };
        (event, (b % 4 == 0) as u64 * b as u64)
    });
    run_events(
        chart,
        events,
        u64::from_le_bytes(core::array::from_fn(|i| data.get(i).copied().unwrap_or(0))),
    );
}

/// One operation of a [`drive_machine`] session.
#[derive(Arbitrary, Debug, Clone)]
pub enum Op {
    /// Send one of the chart's events (by index, wrapping; past the end: an unknown name).
    Send(u8),
    /// Send an event by an arbitrary name.
    SendNamed(String),
    /// Send one of the chart's events with a payload.
    SendPayload(u8, Vec<u8>),
    /// Advance the clock and fire every timer due (up to a bound).
    Advance(u16),
    /// Fire at most one due timer after advancing a little.
    FireOne(u8),
    /// Drain the outbox, delivering what the machine sent itself.
    Drain,
}

/// A [`drive_machine`] input: which chart, the guard bits, and the operations.
#[derive(Arbitrary, Debug, Clone)]
pub struct Session {
    /// Index into [`CHARTS`] (wrapping).
    pub chart: u8,
    /// Guard answers, see [`FuzzBehavior::new`].
    pub guards: u64,
    /// What the host does.
    pub ops: Vec<Op>,
}

/// The fixed charts `drive_machine` runs: hierarchy, parallel regions, shallow and deep
/// history, `after`, `always`, `raise`, delayed sends, wildcards, multiple targets, `in`.
pub const CHARTS: &[&str] = &[
    // 0: a media player: deep hierarchy, deep and shallow history, after, always, done.
    r##"{"id":"player","initial":"off","states":{
      "off":{"entry":"enOff","on":{"POWER":"on","*":{"actions":"ignored"}}},
      "on":{"initial":"stopped","entry":"enOn","exit":"exOn",
        "on":{"POWER":"off","A":"#player.on.hist","B":"#player.on.shallow"},
        "states":{
          "stopped":{"on":{"PLAY":"playing"},"always":{"guard":"autoplay","target":"playing"}},
          "playing":{"initial":"normal","entry":"enPlaying","exit":"exPlaying",
            "after":{"100":{"target":"stopped","actions":"timeout"}},
            "on":{"PAUSE":"paused","STOP":"stopped","foo.*":{"actions":"fooAction"}},
            "states":{
              "normal":{"on":{"FAST":"fast"}},
              "fast":{"after":{"slowDelay":"normal"},"on":{"FAST":{"target":"fast","reenter":true}}}}},
          "paused":{"on":{"PLAY":"playing","STOP":"stopped"},"after":{"30":"#player.on.ended"}},
          "ended":{"type":"final"},
          "hist":{"type":"history","history":"deep","target":"playing.fast"},
          "shallow":{"type":"history"}},
        "onDone":{"target":"off","actions":"finished"}}}}"##,
    // 1: parallel regions, cross-region targets, in-state guards, done of a parallel state.
    r##"{"id":"robot","type":"parallel","states":{
      "arm":{"initial":"down","states":{
        "down":{"entry":"armDown","on":{"A":"up","GO":"#robot.arm.up"}},
        "up":{"entry":"armUp","exit":"armExit","on":{"A":{"target":"down","guard":"canLower"},"B":{"target":"#robot.arm.down","in":"#robot.wheels.stopped"}}}}},
      "wheels":{"initial":"stopped","states":{
        "stopped":{"on":{"GO":{"target":"rolling","actions":["start",{"type":"raise","event":"ROLLING"}]}}},
        "rolling":{"after":{"50":"stopped"},"on":{"B":"stopped","ROLLING":{"actions":"rolled"},"STOP":["#robot.wheels.stopped","#robot.arm.down"]}}}},
      "job":{"initial":"work","states":{
        "work":{"type":"parallel","states":{
          "p1":{"initial":"a","states":{"a":{"on":{"A":"b"}},"b":{"type":"final"}}},
          "p2":{"initial":"c","states":{"c":{"on":{"B":"d"}},"d":{"type":"final"}}},
          "h":{"type":"history","history":"deep","target":["#robot.job.work.p1.b","#robot.job.work.p2.c"]}},
          "onDone":"rest"},
        "rest":{"after":{"20":"work"},"on":{"RESUME":"#robot.job.work.h"}}}}}}"##,
    // 2: wildcards, raise, delayed raise and cancel, sendTo self and others, eventless loops.
    r##"{"id":"bus","initial":"idle","states":{
      "idle":{"on":{"*":{"target":"busy","actions":"any"},"foo.*":"#bus.special","foo.bar":"#bus.exact"}},
      "busy":{"entry":[{"type":"raise","event":"C","delay":5,"id":"tick"},{"type":"sendTo","to":"fuzz","event":"B"}],
        "exit":[{"type":"cancel","id":"tick"},{"type":"sendTo","to":"logger","event":"LEFT","data":{"x":1},"delay":"slowDelay"}],
        "on":{"C":[{"guard":"again","target":"busy","reenter":true},{"target":"idle"}],"B":{"actions":[{"type":"raise","event":"D"}]},"D":{"actions":"gotD"}}},
      "special":{"always":[{"guard":"loop","target":"exact"},{"target":"idle","actions":"back"}]},
      "exact":{"always":{"guard":"loop","target":"special"},"on":{"A":"idle"},"entry":{"type":"log","message":"exact"}}}}"##,
];

fn charts() -> &'static [CompiledChart] {
    static CELL: OnceLock<Vec<CompiledChart>> = OnceLock::new();
    CELL.get_or_init(|| {
        CHARTS
            .iter()
            .map(|json| match interstate::compile_str(json) {
                Ok(c) => c,
                Err(e) => panic!("a fixed fuzz chart does not compile: {e}"),
            })
            .collect()
    })
}

/// Target `drive_machine`: decodes a [`Session`] and runs it.
pub fn drive_machine(data: &[u8]) {
    if let Ok(session) = Session::arbitrary_take_rest(arbitrary::Unstructured::new(data)) {
        run_session(&session);
    }
}

/// Runs a session, checking every invariant after every step.
pub fn run_session(session: &Session) {
    let all = charts();
    let chart = all[session.chart as usize % all.len()].chart();
    let mut m = Box::new(FuzzMachine::new(chart, MACHINE_ID).expect("the fixed charts fit"));
    m.set_microstep_limit(MICROSTEP_LIMIT);
    let mut b = FuzzBehavior::new(session.guards);
    let mut done = None;
    let mut now = Instant::ZERO;
    let r = m.start(now, &mut b);
    if !after_step(&mut m, r, &mut done, true) {
        return;
    }
    let n = chart.event_count();
    let event = |i: u8| {
        if (i as usize) < n {
            Event::from_id(&chart, interstate_core::EventId(i as u16))
        } else {
            Event::new(["A", "B", "foo.bar.baz", "xstate.init", ""][i as usize % 5])
        }
    };
    for op in session.ops.iter().take(MAX_OPS) {
        let running = match op {
            Op::Send(i) => {
                let r = m.send(now, event(*i), &mut b);
                after_step(&mut m, r, &mut done, true)
            }
            Op::SendNamed(name) => {
                let name: String = name.chars().take(64).collect();
                let r = m.send(now, Event::new(&name), &mut b);
                after_step(&mut m, r, &mut done, true)
            }
            Op::SendPayload(i, payload) => {
                let r = m.send(now, event(*i).with_payload(payload), &mut b);
                after_step(&mut m, r, &mut done, true)
            }
            Op::Advance(ms) => {
                now = now + Duration::from_millis(*ms as u64);
                fire_due(&mut m, &mut b, now, 64, &mut done, true)
            }
            Op::FireOne(ms) => {
                now = now + Duration::from_millis(*ms as u64);
                fire_due(&mut m, &mut b, now, 1, &mut done, true)
            }
            Op::Drain => drain(&mut m, &mut b, now, 8, &mut done, true),
        };
        if !running {
            return;
        }
        // A host that never drains sees OutboxFull; one that drains now and then does not.
        if m.outbox_len() > 48 {
            m.clear_outbox();
        }
    }
}

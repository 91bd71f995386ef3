//! Target `restore_snapshot`: a machine restored from hostile bytes.
//!
//! Input: a chart byte (one of the `drive_machine` charts, which have history, parallel
//! regions and timers), a mode byte, then the body:
//! - mode 0: the body is the snapshot, as is;
//! - mode 1: a valid header (magic, version, the chart's fingerprint) followed by the body,
//!   so the fuzzer need not find the fingerprint;
//! - mode 2: a real snapshot, taken after the events the body's first 8 bytes pick, with the
//!   rest of the body applied as (position, xor) pairs.
//!
//! What must hold: `restore` never panics; when it fails, the machine is as `new` made it
//! (idle, nothing active) and starts; when it succeeds, the configuration is legal (or the
//! machine is idle), a snapshot of it restores to the same snapshot, and it steps on with the
//! configuration legal after every step.

use interstate_core::machine::{SNAPSHOT_MAGIC, SNAPSHOT_VERSION};
use interstate_core::{Event, EventId, Instant, Status};

use super::{after_step, charts, FuzzBehavior, FuzzMachine, MACHINE_ID, MICROSTEP_LIMIT};

fn fresh(chart: interstate_core::Chart<'static>) -> Box<FuzzMachine<'static>> {
    let mut m = Box::new(FuzzMachine::new(chart, MACHINE_ID).expect("the fixed charts fit"));
    m.set_microstep_limit(MICROSTEP_LIMIT);
    m
}

/// Target `restore_snapshot`.
pub fn restore_snapshot(data: &[u8]) {
    let [chart_byte, mode, body @ ..] = data else {
        return;
    };
    let all = charts();
    let chart = all[*chart_byte as usize % all.len()].chart();
    let bytes = match mode % 3 {
        0 => body.to_vec(),
        1 => {
            let mut b = SNAPSHOT_MAGIC.to_vec();
            // postcard: both crates that build this file depend on it.
            b.extend(postcard::to_allocvec(&SNAPSHOT_VERSION).expect("encodes"));
            b.extend(postcard::to_allocvec(&chart.fingerprint()).expect("encodes"));
            b.extend_from_slice(body);
            b
        }
        _ => {
            let (events, flips) = body.split_at(body.len().min(8));
            let mut m = fresh(chart);
            let mut b = FuzzBehavior::new(0x5555_5555_5555_5555);
            let mut now = Instant::ZERO;
            if m.start(now, &mut b).is_err() {
                return;
            }
            for &e in events {
                now = Instant::from_millis(now.as_millis() + 7);
                let n = chart.event_count() as u16;
                let _ = m.send(now, Event::from_id(&chart, EventId(e as u16 % n)), &mut b);
                let _ = m.handle_timeout(now, &mut b);
                m.clear_outbox();
            }
            let mut buf = vec![0u8; 1 << 16];
            let Ok(n) = m.snapshot(now, &mut buf) else {
                return;
            };
            buf.truncate(n);
            for pair in flips.chunks_exact(2) {
                if !buf.is_empty() {
                    let i = pair[0] as usize % buf.len();
                    buf[i] ^= pair[1];
                }
            }
            buf
        }
    };
    let mut m = fresh(chart);
    let mut b = FuzzBehavior::new(0x0f0f_0f0f_0f0f_0f0f);
    if m.restore(Instant::ZERO, &bytes).is_err() {
        assert_eq!(
            m.status(),
            Status::Idle,
            "a refused restore changed the status"
        );
        assert_eq!(
            m.active_states().count(),
            0,
            "a refused restore left states active"
        );
        let r = m.start(Instant::ZERO, &mut b);
        after_step(&mut m, r, &mut None, true);
        return;
    }
    let mut done = None;
    if m.status() != Status::Idle {
        assert!(after_step(&mut m, Ok(()), &mut done, true));
    }
    // What was restored snapshots, and that snapshot restores to itself.
    let mut first = vec![0u8; 1 << 16];
    let n = m
        .snapshot(Instant::ZERO, &mut first)
        .expect("a restored machine snapshots");
    let mut again = fresh(chart);
    again
        .restore(Instant::ZERO, &first[..n])
        .expect("a snapshot of a restored machine restores");
    let mut second = vec![0u8; 1 << 16];
    let k = again
        .snapshot(Instant::ZERO, &mut second)
        .expect("and snapshots again");
    assert_eq!(
        first[..n],
        second[..k],
        "snapshot, restore, snapshot changed the bytes"
    );
    if m.status() == Status::Idle {
        let r = m.start(Instant::ZERO, &mut b);
        if !after_step(&mut m, r, &mut done, true) {
            return;
        }
    }
    let mut now = Instant::ZERO;
    for i in 0..chart.event_count().min(12) {
        now = Instant::from_millis(now.as_millis() + 11);
        let r = m.send(now, Event::from_id(&chart, EventId(i as u16)), &mut b);
        if !after_step(&mut m, r, &mut done, true) {
            return;
        }
        let r = m.handle_timeout(now, &mut b).map(|_| ());
        if !after_step(&mut m, r, &mut done, true) {
            return;
        }
        m.clear_outbox();
    }
}

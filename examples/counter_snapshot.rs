//! A counter whose count lives in the machine's context, snapshotted and restored.
//!
//! Part 1, a Rust machine: the `count` action keeps a typed context (`Tally`) through
//! `ctx.update_context`, the `underLimit` guard reads it, and an `after` timer is pending when
//! the machine is snapshotted. A fresh machine restored from the snapshot, later on the
//! host's clock, has the same count, the same state and the timer with the time it had left.
//!
//! Part 2, a JSON chart: the same idea with the chart's `context`, `assign` and a context
//! guard, no Rust code at all; and a snapshot offered to another revision of the chart is
//! refused, not misapplied.
//!
//! Run: `cargo run --example counter_snapshot`.

use interstate::core::NoBehavior;
use interstate::{Behaviors, Event, Instant, Machine};
use serde::{Deserialize, Serialize};

/// The typed context of part 1.
#[derive(Serialize, Deserialize, Default, Debug)]
struct Tally {
    count: u32,
    last_key: Option<u8>,
}

const COUNTER: &str = r#"{
  "id": "counter", "initial": "counting",
  "states": {
    "counting": {
      "on": { "KEY": { "guard": "underLimit", "actions": "count" }, "PAUSE": "paused" }
    },
    "paused": { "after": { "5000": "counting" } }
  }
}"#;

const JSON_COUNTER: &str = r#"{
  "id": "counter", "initial": "counting", "context": { "count": 0 },
  "states": {
    "counting": {
      "on": {
        "KEY": {
          "guard": { "type": "context", "key": "count", "op": "<", "value": 3 },
          "actions": { "type": "assign", "assignment": { "count": { "$add": 1 }, "key": { "$event": "key" } } }
        }
      }
    }
  }
}"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // ----- part 1: a typed context -----------------------------------------------------------
    let compiled = interstate::compile_str(COUNTER)?;
    let chart = compiled.chart();
    let behaviors = || {
        Behaviors::new()
            .action("count", |ctx| {
                let key = ctx.payload().first().copied();
                // The step fails with the error if the context outgrew its storage.
                let _ = ctx.update_context(|t: &mut Tally| {
                    t.count += 1;
                    t.last_key = key;
                });
            })
            .guard("underLimit", |g| {
                g.context::<Tally>().map_or(true, |t| t.count < 10)
            })
            .bind(&chart)
    };
    let mut b = behaviors()?;
    let mut machine: Machine<'_> = Machine::new(chart, "counter")?;
    machine.start(Instant::ZERO, &mut b)?;
    for key in [b'a', b'b', b'c'] {
        machine.send(
            Instant::ZERO,
            Event::new("KEY").with_payload(&[key]),
            &mut b,
        )?;
    }
    machine.send(Instant::from_millis(1000), Event::new("PAUSE"), &mut b)?;
    println!("original: {:?}", machine.context::<Tally>()?);

    // Two seconds into the five-second pause: 3000 ms left on the timer.
    let mut buf = [0u8; 256];
    let n = machine.snapshot(Instant::from_millis(3000), &mut buf)?;
    println!("snapshot: {n} bytes");

    // Restored an hour later on the host's clock, into a fresh machine.
    let later = Instant::from_millis(3_600_000);
    let mut restored: Machine<'_> = Machine::new(chart, "counter")?;
    restored.restore(later, &buf[..n])?;
    let mut b2 = behaviors()?;
    println!("restored: {:?}", restored.context::<Tally>()?);
    let due = restored
        .poll_timeout()
        .map(|t| t.as_millis() - later.as_millis());
    println!(
        "restored: the pause timer is due in {} ms",
        due.unwrap_or(0)
    );
    restored.handle_timeout(later + interstate::Duration::from_millis(3000), &mut b2)?;
    restored.send(later, Event::new("KEY").with_payload(b"d"), &mut b2)?;
    println!(
        "restored, after the pause and one more key: {:?}",
        restored.context::<Tally>()?
    );

    // ----- part 2: a JSON context --------------------------------------------------------------
    let compiled = interstate::compile_str(JSON_COUNTER)?;
    let mut json: Machine<'_, 2, 4, 4, 2, 4, 40, 64> = Machine::new(compiled.chart(), "counter")?;
    json.start(Instant::ZERO, &mut NoBehavior)?;
    for key in ["x", "y", "z", "w"] {
        let data = format!("{{\"key\":\"{key}\"}}");
        json.send(
            Instant::ZERO,
            Event::new("KEY").with_payload(data.as_bytes()),
            &mut NoBehavior,
        )?;
    }
    // The guard stopped counting at 3: the fourth key changed nothing.
    println!("json context: {}", json.context_json().unwrap_or("none"));
    let mut buf = [0u8; 256];
    let n = json.snapshot(Instant::ZERO, &mut buf)?;
    let mut back: Machine<'_, 2, 4, 4, 2, 4, 40, 64> = Machine::new(compiled.chart(), "counter")?;
    back.restore(Instant::ZERO, &buf[..n])?;
    println!(
        "json context restored: {}",
        back.context_json().unwrap_or("none")
    );

    // Another revision of the chart (the limit raised to 5) refuses the snapshot.
    let revised = interstate::compile_str(&JSON_COUNTER.replace("\"value\": 3", "\"value\": 5"))?;
    let mut other: Machine<'_, 2, 4, 4, 2, 4, 40, 64> = Machine::new(revised.chart(), "counter")?;
    match other.restore(Instant::ZERO, &buf[..n]) {
        Ok(()) => println!("the revised chart took the snapshot (it should not)"),
        Err(e) => println!("the revised chart refused it: {e}"),
    }
    Ok(())
}

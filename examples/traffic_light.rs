//! A pedestrian crossing, driven on a virtual clock.
//!
//! Shows the facade end to end: a JSON chart (`examples/charts/traffic_light.json`: a parallel
//! state with car and pedestrian regions, `after` timers with a fixed and a named delay, a
//! guard, raised events, a `sendTo`) compiled with [`interstate::compile_str`]; its action,
//! guard and delay names bound to closures with [`interstate::Behaviors`]; and an
//! [`interstate::Machine`] driven by a host loop that owns the clock: it passes `now` into
//! `send` and `handle_timeout`, asks `poll_timeout` when the next timer is due, and reads the
//! outbox after every step.
//!
//! Run it with `cargo run --example traffic_light`. It replays a fixed script of button
//! presses and faults over 25 simulated seconds and exits at once.

use std::cell::Cell;
use std::error::Error;
use std::rc::Rc;

use interstate::core::Target;
use interstate::{compile_str, Behaviors, Duration, Event, Instant, Machine};

/// The inputs from the outside world: (milliseconds since start, event).
const SCRIPT: &[(u64, &str)] = &[
    (1_000, "PUSH_BUTTON"),
    (20_000, "FAULT"),
    (22_000, "RESUME"),
    (25_000, "SHUTDOWN"),
];

fn main() -> Result<(), Box<dyn Error>> {
    let compiled = compile_str(include_str!("charts/traffic_light.json"))?;
    let chart = compiled.chart();
    println!("chart: {}", interstate::diagram::summary(&chart));

    // The guard reads what the `registerRequest` and `clearRequest` actions write.
    let request = Rc::new(Cell::new(false));
    let (set, clear, waiting) = (request.clone(), request.clone(), request);
    let mut behavior = Behaviors::new()
        .action("showCarsGreen", |_| println!("    cars: green"))
        .action("showCarsYellow", |_| println!("    cars: yellow"))
        .action("showCarsRed", |_| println!("    cars: red"))
        .action("showWalk", |_| println!("    pedestrians: walk"))
        .action("showDontWalk", |_| println!("    pedestrians: don't walk"))
        .action("registerRequest", move |ctx| {
            println!("    button pressed at {} ms", ctx.now().as_millis());
            set.set(true);
        })
        .action("clearRequest", move |_| clear.set(false))
        .action("startFlashing", |_| {
            println!("    all lights: flashing yellow")
        })
        .guard("pedestrianWaiting", move |_| waiting.get())
        .delay("maxGreen", Duration::from_millis(10_000))
        // Every name the chart uses must be bound: `bind` lists any that are not.
        .bind(&chart)?;

    // Default capacities: up to 128 states, 8 queued events, 8 outbox messages, 8 timers.
    let mut machine: Machine<'_> = Machine::new(chart, "crossing")?;
    let mut now = Instant::ZERO;
    machine.start(now, &mut behavior)?;
    report(&mut machine, now, "start");

    for &(at, event) in SCRIPT {
        let at = Instant::from_millis(at);
        // Fire every timer that falls due before the next input, at its own time.
        while let Some(due) = machine.poll_timeout().filter(|&due| due <= at) {
            now = due;
            machine.handle_timeout(now, &mut behavior)?;
            report(&mut machine, now, "timer");
        }
        now = at;
        machine.send(now, Event::new(event), &mut behavior)?;
        report(&mut machine, now, event);
    }
    println!("done: {}", machine.is_done());
    Ok(())
}

/// Prints the state value and the messages the step left in the outbox, then empties it:
/// a real host would deliver them to their target machines here.
fn report(machine: &mut Machine<'_>, now: Instant, what: &str) {
    let mut value = String::new();
    // Writing into a String cannot fail.
    let _ = machine.write_value(&mut value);
    println!("[{:>6} ms] {what:<12} -> {value}", now.as_millis());
    for message in machine.outbox() {
        let to = match message.target {
            Target::ThisMachine => "itself",
            Target::Machine(id) => id,
            Target::Topic(topic) => topic,
            Target::Broadcast => "everyone",
        };
        println!(
            "    outbox: {} to {to} with {}",
            message.event,
            String::from_utf8_lossy(message.payload)
        );
    }
    machine.clear_outbox();
}

//! A traffic light compiled to native Rust by `build.rs` (`interstate::native::build`), run
//! with a `Behavior` that matches on the generated action ids: `cargo run -p
//! interstate-example-native-build`.

use interstate_core::{ActionContext, ActionId, Behavior, Event, GuardContext, GuardId, Instant};

mod traffic {
    include!(concat!(env!("OUT_DIR"), "/traffic_native.rs"));
}

use traffic::{actions, events, guards};

/// The lamps, and what the `crossingClear` guard answers.
#[derive(Default)]
struct Lamps {
    shown: Vec<&'static str>,
    crossing_clear: bool,
}

impl Behavior for Lamps {
    fn action(&mut self, action: ActionId, _: &mut ActionContext<'_>) {
        self.shown.push(match action {
            actions::SHOW_GREEN => "green",
            actions::SHOW_YELLOW => "yellow",
            actions::SHOW_RED => "red",
            actions::FLASH => "flashing",
            _ => "?",
        });
    }
    fn guard(&mut self, guard: GuardId, _: &GuardContext<'_>) -> bool {
        guard == guards::CROSSING_CLEAR && self.crossing_clear
    }
}

/// Runs the light through a cycle: green, the timers to red, GO once the crossing is clear,
/// then a fault. Returns what the lamps showed and the state value at the end.
fn run() -> Result<(Vec<&'static str>, String), interstate_core::Error> {
    let mut light = traffic::Machine::new("traffic")?;
    let chart = *light.chart();
    let mut lamps = Lamps::default();
    light.start(Instant::ZERO, &mut lamps)?;
    // The `after` timers fire as the interpreter's do.
    while let Some(due) = light.poll_timeout() {
        light.handle_timeout(due, &mut lamps)?;
    }
    let go = Event::from_id(&chart, events::GO);
    light.send(Instant::from_millis(5000), go, &mut lamps)?; // refused: the crossing is busy
    lamps.crossing_clear = true;
    light.send(Instant::from_millis(6000), go, &mut lamps)?;
    light.send(
        Instant::from_millis(7000),
        Event::from_id(&chart, events::FAULT),
        &mut lamps,
    )?;
    let mut value = String::new();
    let _ = light.write_value(&mut value);
    Ok((lamps.shown, value))
}

fn main() -> Result<(), interstate_core::Error> {
    let (shown, value) = run()?;
    println!("lamps: {}", shown.join(" -> "));
    println!("state: {value}");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_light_cycles_then_flashes() {
        let (shown, value) = super::run().unwrap();
        assert_eq!(shown, ["green", "yellow", "red", "green", "flashing"]);
        assert_eq!(value, "\"flashing\"");
    }
}

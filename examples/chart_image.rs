//! A chart image run the way a device runs it: `interstate-core` alone, no allocation.
//!
//! The host compiles the JSON chart once into an image (what `interstate compile` writes).
//! The device side, `run_on_device`, uses nothing but `interstate_core`: it borrows the
//! chart's tables straight out of the image bytes with [`image::decode`], runs a
//! [`Machine`] with small fixed capacities, and binds the chart's names with a `Behavior`
//! written as a plain `match`, or with [`NoBehavior`] (actions do nothing, guards are false).
//!
//! Run it with `cargo run --example chart_image`.

use interstate_core::{
    image, ActionContext, ActionId, Behavior, Chart, Event, GuardContext, GuardId, Instant,
    Machine, NoBehavior,
};

/// A blinking LED that stops blinking when its battery runs low.
const CHART: &str = r#"{
  "id": "led",
  "initial": "off",
  "states": {
    "off": {
      "entry": "ledOff",
      "after": { "500": [{ "target": "on", "guard": "batteryOk" }, { "target": "sleeping" }] }
    },
    "on": { "entry": "ledOn", "after": { "500": "off" } },
    "sleeping": { "entry": "ledOff", "on": { "CHARGED": "off" } }
  }
}"#;

/// The device's own state: what the actions drive and the guard reads.
struct Led<'c> {
    chart: Chart<'c>,
    lit: bool,
    battery_mv: u32,
}

impl Behavior for Led<'_> {
    fn action(&mut self, action: ActionId, _cx: &mut ActionContext<'_>) {
        // Names are matched as written in the chart; a device with many actions would look
        // the ids up once with `chart.action(name)` instead.
        match self.chart.action_name(action) {
            "ledOn" => {
                self.lit = true;
                // Each flash costs some charge.
                self.battery_mv = self.battery_mv.saturating_sub(100);
            }
            "ledOff" => self.lit = false,
            _ => {}
        }
    }

    fn guard(&mut self, guard: GuardId, _cx: &GuardContext<'_>) -> bool {
        match self.chart.guard_name(guard) {
            "batteryOk" => self.battery_mv >= 3_000,
            _ => false,
        }
    }
}

/// Everything here but `println!` (the device's log) is `no_std`-compatible: the image is a
/// byte slice (in flash, say), the machine lives on the stack, and time is whatever the
/// device's tick counter says.
fn run_on_device(image_bytes: &[u8]) -> Result<(), interstate_core::Error> {
    let chart = image::decode(image_bytes)?;
    println!(
        "device: image of {} bytes, {} states, {} transitions",
        image_bytes.len(),
        chart.state_count(),
        chart.transition_count()
    );

    // 1 word of state set (64 states), 4 queued events, 4 outbox messages, 4 timers,
    // no history memory, 64 bytes of message storage.
    let mut machine: Machine<'_, 1, 4, 4, 4, 0, 64> = Machine::new(chart, "led")?;
    let mut led = Led {
        chart,
        lit: false,
        battery_mv: 3_300,
    };
    let mut now = Instant::ZERO;
    machine.start(now, &mut led)?;
    // A device sleeps until the deadline; here the tick counter jumps straight to it.
    while let Some(due) = machine.poll_timeout() {
        now = due;
        machine.handle_timeout(now, &mut led)?;
        let mut value = heapless::String::<32>::new();
        // 32 bytes hold every state value of this chart.
        let _ = machine.write_value(&mut value);
        println!(
            "device: {:>5} ms {:<10} lit: {:<5} battery: {} mV",
            now.as_millis(),
            value,
            led.lit,
            led.battery_mv
        );
    }
    // Nothing is due any more: the LED is asleep until it is charged.
    led.battery_mv = 3_700;
    machine.send(now, Event::new("CHARGED"), &mut led)?;
    match machine.poll_timeout() {
        Some(due) => println!(
            "device: charged; blinking again in {} ms",
            (due - now).as_millis()
        ),
        None => println!("device: charged, but no timer is armed"),
    }

    // The same image with no behaviour at all: guards are false, so the LED never lights.
    let mut idle: Machine<'_, 1, 4, 4, 4, 0, 64> = Machine::new(chart, "led")?;
    idle.start(Instant::ZERO, &mut NoBehavior)?;
    let due = idle.poll_timeout().unwrap_or(Instant::ZERO);
    idle.handle_timeout(due, &mut NoBehavior)?;
    let mut value = heapless::String::<32>::new();
    let _ = idle.write_value(&mut value);
    println!(
        "device: with NoBehavior, after {} ms: {value}",
        due.as_millis()
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The host side: compile the JSON once. The image is what would be flashed.
    let compiled = interstate::compile_str(CHART)?;
    let image = compiled.to_image();
    println!("host: compiled the chart into a {}-byte image", image.len());
    run_on_device(&image)?;
    Ok(())
}

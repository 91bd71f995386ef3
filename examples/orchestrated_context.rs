//! Two machines in one process, talking through their outboxes.
//!
//! A `customer` machine orders from a `kitchen` machine. Their actions use everything the
//! orchestrated context offers ([`interstate::Ctx`]):
//! - `send_value` / `send`: a message to another machine, postcard-encoded or raw bytes;
//! - `payload_as`: the current event's payload decoded into a serde struct;
//! - `send_after` and `cancel`: a delayed message (the customer's patience, the kitchen's
//!   "served" notice) and its cancellation;
//! - `send_self`: an event back to the same machine after the current step;
//! - `machine_id` and `process_info`: who is running, and where another machine lives, from
//!   a [`LocalDirectory`] set with `Bound::set_directory`.
//!
//! Actions never deliver anything themselves: every send waits in the sending machine's
//! bounded outbox (or its timer table, for delayed sends) until the host loop below collects
//! it and hands it to the target machine. The host also owns the clock: it jumps from one
//! timer to the next, so the run takes simulated seconds and no real time.
//!
//! Run it with `cargo run --example orchestrated_context`. It plays two orders: a small one
//! that is served before the customer's patience runs out, and a big one that is not.

use std::cell::Cell;
use std::collections::VecDeque;
use std::error::Error;
use std::rc::Rc;

use interstate::core::{SendId, Target};
use interstate::{
    compile_str, Behaviors, Bound, CompiledChart, Duration, Event, Instant, LocalDirectory, Machine,
};
use serde::{Deserialize, Serialize};

const CUSTOMER: &str = r#"{
  "id": "customer",
  "initial": "hungry",
  "states": {
    "hungry": { "on": { "ORDER": { "target": "waiting", "actions": "placeOrder" } } },
    "waiting": {
      "entry": "startPatience",
      "on": {
        "ACCEPTED": { "actions": "noteAccepted" },
        "SERVED": { "target": "eating", "actions": ["stopPatience", "receive"] },
        "GIVE_UP": "leftHungry"
      }
    },
    "eating": { "entry": "eat", "on": { "FINISHED": "satisfied" } },
    "satisfied": { "type": "final" },
    "leftHungry": { "type": "final" }
  }
}"#;

const KITCHEN: &str = r#"{
  "id": "kitchen",
  "initial": "idle",
  "states": {
    "idle": { "on": { "ORDER": "cooking" } },
    "cooking": { "entry": "acceptOrder", "after": { "1500": "idle" } }
  }
}"#;

/// How long the customer waits before giving up.
const PATIENCE: Duration = Duration::from_millis(5_000);
/// Cooking time per portion.
const PER_PORTION: Duration = Duration::from_millis(1_000);

/// The payload of `ORDER`: decoded in place, borrowing its strings from the payload bytes.
#[derive(Serialize, Deserialize, Debug)]
struct Order<'a> {
    customer: &'a str,
    dish: &'a str,
    portions: u8,
}

/// The payload of `SERVED`.
#[derive(Serialize, Deserialize, Debug)]
struct Served<'a> {
    dish: &'a str,
    portions: u8,
}

/// A message collected from an outbox, owned so that the host can deliver it to any machine.
struct Envelope {
    from: String,
    to: String,
    event: String,
    payload: Vec<u8>,
}

fn customer_behavior(chart: &CompiledChart, started: Instant) -> Result<Bound, Box<dyn Error>> {
    let patience: Rc<Cell<Option<SendId>>> = Rc::new(Cell::new(None));
    let (arm, disarm) = (patience.clone(), patience);
    let mut bound = Behaviors::new()
        .action("placeOrder", |ctx| {
            // The host put the order in the ORDER event's payload.
            let order: Order<'_> = match ctx.payload_as() {
                Ok(order) => order,
                Err(e) => return eprintln!("    customer: unreadable order: {e}"),
            };
            if let Some(info) = ctx.process_info("kitchen") {
                println!(
                    "    customer: the kitchen runs in process {} ({:?}, local: {})",
                    info.pid, info.transport, info.local
                );
            }
            // The kitchen answers the machine named in the order: this one.
            let me = ctx.machine_id().to_string();
            let order = Order {
                customer: &me,
                ..order
            };
            println!("    customer: ordering {} x {}", order.portions, order.dish);
            if let Err(e) = ctx.send_value("kitchen", "ORDER", &order) {
                eprintln!("    customer: could not order: {e}");
            }
        })
        .action("startPatience", move |ctx| {
            match ctx.send_after(Target::ThisMachine, "GIVE_UP", PATIENCE, &[]) {
                Ok(id) => arm.set(Some(id)),
                Err(e) => eprintln!("    customer: no timer left: {e}"),
            }
        })
        .action("noteAccepted", |_| {
            println!("    customer: the kitchen accepted the order")
        })
        .action("stopPatience", move |ctx| {
            if let Some(id) = disarm.take() {
                let pending = ctx.cancel(id);
                println!("    customer: patience timer cancelled (was pending: {pending})");
            }
        })
        .action("receive", |ctx| match ctx.payload_as::<Served<'_>>() {
            Ok(served) => println!(
                "    customer: received {} x {}",
                served.portions, served.dish
            ),
            Err(e) => eprintln!("    customer: unreadable SERVED payload: {e}"),
        })
        .action("eat", |ctx| {
            println!("    customer: eating");
            if let Err(e) = ctx.send_self("FINISHED", &[]) {
                eprintln!("    customer: {e}");
            }
        })
        .bind(&chart.chart())?;
    bound.set_directory(Box::new(LocalDirectory::new(
        ["customer", "kitchen"],
        started,
    )));
    Ok(bound)
}

fn kitchen_behavior(chart: &CompiledChart) -> Result<Bound, Box<dyn Error>> {
    Ok(Behaviors::new()
        .action("acceptOrder", |ctx| {
            let order: Order<'_> = match ctx.payload_as() {
                Ok(order) => order,
                Err(e) => return eprintln!("    kitchen: unreadable order: {e}"),
            };
            println!(
                "    kitchen: cooking {} x {} for {}",
                order.portions, order.dish, order.customer
            );
            if let Err(e) = ctx.send(order.customer, "ACCEPTED", &[]) {
                eprintln!("    kitchen: {e}");
            }
            let served = Served {
                dish: order.dish,
                portions: order.portions,
            };
            let cooking = Duration::from_millis(PER_PORTION.as_millis() * order.portions as u64);
            let sent = postcard::to_allocvec(&served)
                .map_err(|e| e.to_string())
                .and_then(|payload| {
                    ctx.send_after(Target::Machine(order.customer), "SERVED", cooking, &payload)
                        .map_err(|e| e.to_string())
                });
            if let Err(e) = sent {
                eprintln!("    kitchen: cannot schedule the SERVED notice: {e}");
            }
        })
        .bind(&chart.chart())?)
}

/// Moves every message out of a machine's outbox into the host's mail queue.
fn collect(machine: &mut Machine<'_>, mail: &mut VecDeque<Envelope>) {
    for m in machine.outbox() {
        mail.push_back(Envelope {
            from: machine.id().to_string(),
            to: match m.target {
                Target::ThisMachine => machine.id().to_string(),
                Target::Machine(id) => id.to_string(),
                // This example's host routes by machine id only.
                Target::Topic(_) | Target::Broadcast => continue,
            },
            event: m.event.to_string(),
            payload: m.payload.to_vec(),
        });
    }
    machine.clear_outbox();
}

fn value(machine: &Machine<'_>) -> String {
    let mut v = String::new();
    // Writing into a String cannot fail.
    let _ = machine.write_value(&mut v);
    v
}

fn serve(
    customer_chart: &CompiledChart,
    kitchen_chart: &CompiledChart,
    dish: &str,
    portions: u8,
) -> Result<(), Box<dyn Error>> {
    let mut now = Instant::ZERO;
    let mut customer: Machine<'_> = Machine::new(customer_chart.chart(), "customer")?;
    let mut kitchen: Machine<'_> = Machine::new(kitchen_chart.chart(), "kitchen")?;
    let mut customer_does = customer_behavior(customer_chart, now)?;
    let mut kitchen_does = kitchen_behavior(kitchen_chart)?;
    customer.start(now, &mut customer_does)?;
    kitchen.start(now, &mut kitchen_does)?;

    let order = postcard::to_allocvec(&Order {
        customer: "",
        dish,
        portions,
    })?;
    println!("[{:>5} ms] host -> customer: ORDER", now.as_millis());
    customer.send(
        now,
        Event::new("ORDER").with_payload(&order),
        &mut customer_does,
    )?;

    let mut mail = VecDeque::new();
    loop {
        // Deliver until every outbox stays empty: a delivery may send more.
        collect(&mut customer, &mut mail);
        collect(&mut kitchen, &mut mail);
        while let Some(m) = mail.pop_front() {
            println!(
                "[{:>5} ms] {} -> {}: {} ({} payload bytes)",
                now.as_millis(),
                m.from,
                m.to,
                m.event,
                m.payload.len()
            );
            let event = Event::new(&m.event).with_payload(&m.payload);
            match m.to.as_str() {
                "customer" => customer.send(now, event, &mut customer_does)?,
                "kitchen" => kitchen.send(now, event, &mut kitchen_does)?,
                other => println!("    host: no machine '{other}'; dropped"),
            }
            collect(&mut customer, &mut mail);
            collect(&mut kitchen, &mut mail);
        }
        if customer.is_done() {
            break;
        }
        // Jump the clock to the earliest timer of either machine.
        let Some(next) = [customer.poll_timeout(), kitchen.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
        else {
            break;
        };
        now = next;
        customer.handle_timeout(now, &mut customer_does)?;
        kitchen.handle_timeout(now, &mut kitchen_does)?;
    }
    println!(
        "[{:>5} ms] customer: {}, kitchen: {}\n",
        now.as_millis(),
        value(&customer),
        value(&kitchen)
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let customer = compile_str(CUSTOMER)?;
    let kitchen = compile_str(KITCHEN)?;
    println!("A small order: served in time.");
    serve(&customer, &kitchen, "ramen", 2)?;
    println!("A big order: the customer gives up first.");
    serve(&customer, &kitchen, "paella", 8)?;
    Ok(())
}

//! The report printed as tables: one per transport and payload size, a line per path with
//! its latency, throughput and ratios to the baseline, then the targets.

use serde_json::Value;

/// Prints a report as tables.
pub fn print_table(v: &Value) -> Result<(), String> {
    crate::outln!(
        "machine: {} ({} cores); load average {} before, {} after; {} s",
        v["machine"]["cpu"].as_str().unwrap_or("?"),
        v["machine"]["cores"],
        v["load_before"],
        v["load_after"],
        v["seconds"]
    )?;
    crate::outln!(
        "placement: {} (this process on CPU {}, peers on CPU {})",
        v["pin"].as_str().unwrap_or("?"),
        v["cpus"]["bench"],
        v["cpus"]["peers"]
    )?;
    for run in v["runs"].as_array().into_iter().flatten() {
        crate::outln!("")?;
        crate::outln!(
            "transport {}, {}-byte payloads, {} round trips, {} messages one way",
            run["transport"].as_str().unwrap_or("?"),
            run["payload_bytes"],
            run["round_trips"],
            run["messages"]
        )?;
        crate::outln!(
            "{:<12} {:>11} {:>11} {:>12} {:>15} {:>10} {:>10}",
            "path",
            "rtt p50 us",
            "rtt p99 us",
            "rtt p99.9 us",
            "msgs/s one way",
            "p50 x",
            "thru x"
        )?;
        for (name, r) in run["paths"].as_object().into_iter().flatten() {
            if let Some(e) = r["error"].as_str() {
                crate::outln!("{name:<12} {e}")?;
                continue;
            }
            let q = &run["ratios"];
            let f = |x: &Value| x.as_f64().map(|x| format!("{x}")).unwrap_or_default();
            crate::outln!(
                "{:<12} {:>11} {:>11} {:>12} {:>15} {:>10} {:>10}",
                name,
                f(&r["rtt_p50_us"]),
                f(&r["rtt_p99_us"]),
                f(&r["rtt_p999_us"]),
                r["msgs_per_s"]
                    .as_f64()
                    .map(|x| format!("{x:.0}"))
                    .unwrap_or_default(),
                f(&q[format!("{name}_rtt_p50_vs_baseline")]),
                f(&q[format!("{name}_throughput_vs_baseline")]),
            )?;
        }
        for name in run["paths"].as_object().into_iter().flatten().map(|p| p.0) {
            if name == "unix_hub" {
                crate::outln!(
                    "  hub_spin: p50 x and thru x are against unix_hub, the same endpoints \
                     through a hub over Unix sockets in this run"
                )?;
            }
            if let Some(w) = name.strip_prefix("pair_") {
                crate::outln!(
                    "  {name}: two clients of a separate hub, over their own direct ring (set up \
                     through the hub); p50 x and thru x are against direct_{w} of this run"
                )?;
            }
            if let Some(n) = name.strip_prefix("pubsub_") {
                crate::outln!(
                    "  {name}: msgs/s are publications per second, each delivered to all {n} \
                     subscribers (in one peer process); rtt: a publication out, every answer back"
                )?;
            }
        }
        crate::outln!(
            "  msgs/s one way: messages from a port of this process taken by a machine of the \
             peer process (each a step of its chart), from the first send until that machine \
             says it has them all; raw: bytes through the ring or socket, read unparsed"
        )?;
        for t in run["targets"].as_array().into_iter().flatten() {
            let met = match t["met"].as_bool() {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "not measured",
            };
            crate::outln!(
                "  target {}: {} ({})",
                t["target"].as_str().unwrap_or("?"),
                met,
                t["value"]
            )?;
        }
    }
    Ok(())
}

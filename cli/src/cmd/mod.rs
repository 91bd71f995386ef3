//! The verbs that act on a bus or an app; the chart verbs (`check`, `simulate`, `compile`,
//! `diagram`) are thin enough to live in `main.rs` over the facade. Here too: what several
//! verbs share (reading a chart file or stdin, guard and delay values, how much to say).

pub mod app;
pub mod bridge;
pub mod bus;
pub mod buses;
pub mod child;
pub mod request;
pub mod serial;
pub mod stats;
pub mod status;
pub mod topics;

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use interstate::{Behaviors, Chart};

/// How much a chatty verb says (`--quiet`, `--verbose`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Errors and the output of the machines or processes only.
    Quiet,
    /// What the verb says by default.
    #[default]
    Normal,
    /// Settings at start, counters at the end.
    Verbose,
}

/// Whether `path` means stdin or stdout (`-`).
pub fn is_std(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// A file's bytes, or stdin's for `-`; errors name the file.
pub fn read_input(path: &Path) -> Result<Vec<u8>, String> {
    if is_std(path) {
        let mut bytes = Vec::new();
        std::io::stdin()
            .lock()
            .read_to_end(&mut bytes)
            .map_err(|e| format!("reading stdin: {e}"))?;
        return Ok(bytes);
    }
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// How errors name a chart file (`<stdin>` for `-`).
pub fn display_name(path: &Path) -> String {
    if is_std(path) {
        "<stdin>".to_string()
    } else {
        path.display().to_string()
    }
}

/// A chart from a file or stdin: JSON or an image.
pub fn load_chart(path: &Path) -> Result<interstate::CompiledChart, String> {
    let bytes = read_input(path)?;
    interstate::load_chart_bytes(&bytes).map_err(|e| format!("{}: {e}", display_name(path)))
}

/// Guard and named-delay values from `--guard NAME=true|false` and `--delay NAME=MS`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Values {
    /// Guard values by name.
    pub guards: HashMap<String, bool>,
    /// Named delays by name, in milliseconds.
    pub delays: HashMap<String, u64>,
}

impl Values {
    /// Parses the flags' values; an error names the flag and the bad value.
    pub fn parse(guards: &[String], delays: &[String]) -> Result<Values, String> {
        Ok(Values {
            guards: parse_pairs(guards, "guard", "true or false", |v| match v {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            })?
            .into_iter()
            .collect(),
            delays: parse_pairs(delays, "delay", "milliseconds", |v| v.parse().ok())?
                .into_iter()
                .collect(),
        })
    }

    /// Fails naming every guard and named delay of `chart` that has no value.
    pub fn check_complete(&self, chart: &Chart<'_>) -> Result<(), String> {
        let guards: Vec<String> = (0..chart.guard_count() as u16)
            .map(|i| chart.guard_name(interstate::core::GuardId(i)))
            .filter(|n| !self.guards.contains_key(*n))
            .map(|n| format!("'{n}'"))
            .collect();
        let delays: Vec<String> = (0..chart.delay_count() as u16)
            .map(|i| chart.delay_name(interstate::core::DelayId(i)))
            .filter(|n| !self.delays.contains_key(*n))
            .map(|n| format!("'{n}'"))
            .collect();
        let mut missing = Vec::new();
        let mut flags = Vec::new();
        if !guards.is_empty() {
            missing.push(format!("guard(s) {}", guards.join(", ")));
            flags.push("--guard NAME=true|false");
        }
        if !delays.is_empty() {
            missing.push(format!("named delay(s) {}", delays.join(", ")));
            flags.push("--delay NAME=MS");
        }
        if missing.is_empty() {
            return Ok(());
        }
        Err(format!(
            "the chart uses {} with no value: pass {} for each",
            missing.join(" and "),
            flags.join(" and ")
        ))
    }

    /// `behaviors` with these guards (constant) and delays bound.
    pub fn bind(&self, mut behaviors: Behaviors) -> Behaviors {
        for (name, &v) in &self.guards {
            behaviors = behaviors.guard(name, move |_| v);
        }
        for (name, &ms) in &self.delays {
            behaviors = behaviors.delay(name, interstate::Duration::from_millis(ms));
        }
        behaviors
    }
}

fn parse_pairs<T>(
    list: &[String],
    what: &str,
    expected: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Vec<(String, T)>, String> {
    list.iter()
        .map(|p| {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| format!("--{what} {p}: expected NAME=VALUE"))?;
            let v = parse(v)
                .ok_or_else(|| format!("--{what} {p}: bad value '{v}' (expected {expected})"))?;
            Ok((k.to_string(), v))
        })
        .collect()
}

/// Node settings for `bus` (else `INTERSTATE_BUS`, else `default`), with every
/// `INTERSTATE_*` variable checked: a bad value is an error naming it.
pub fn node_config(bus: Option<&str>) -> Result<interstate::bus::NodeConfig, String> {
    use interstate::bus::{NodeConfig, Transport};
    if let Ok(v) = std::env::var("INTERSTATE_DIRECT_PAIRS") {
        if v.parse::<usize>().is_err() {
            return Err(format!(
                "INTERSTATE_DIRECT_PAIRS: '{v}' is not a number of direct ring pairs (0, 1, 2...)"
            ));
        }
    }
    if let Ok(v) = std::env::var("INTERSTATE_HUB_READ_QUANTUM") {
        if v.parse::<u32>()
            .ok()
            .filter(|&q| q > 0 && q <= i32::MAX as u32)
            .is_none()
        {
            return Err(format!(
                "INTERSTATE_HUB_READ_QUANTUM: '{v}' is not a number of bytes from 1 to {} \
                 (the default is 262144)",
                i32::MAX
            ));
        }
    }
    match bus {
        Some(b) => {
            let transport = Transport::try_from_env().map_err(|e| e.to_string())?;
            let dir = interstate::bus::busdir::try_default_dir().map_err(|e| e.to_string())?;
            let mut config = NodeConfig::new(b);
            config.transport = transport;
            config.dir = dir;
            config.durable_hold =
                NodeConfig::try_durable_hold_from_env().map_err(|e| e.to_string())?;
            Ok(config)
        }
        None => NodeConfig::try_from_env().map_err(|e| e.to_string()),
    }
}

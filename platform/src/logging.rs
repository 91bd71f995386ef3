//! The platform's diagnostics through the `log` facade. Targets: `interstate::hub` (the
//! hub: connections, refusals, protocol violations), `interstate::node` (a process's bus
//! connection and its machines), `interstate::supervisor`, `interstate::serial`,
//! `interstate::mqtt`. The application installs the logger (the `interstate` command
//! installs its own; see `docs/operations.md`); without one, nothing is printed.
//!
//! The node and the bridges make their lines as text; a line that starts with `info: `
//! (connections, sessions) is logged at `Info` without that word, `debug: ` at `Debug`,
//! anything else at `Warn` (what went wrong, and what the node did about it).

/// The target of the hub's lines.
pub const HUB: &str = "interstate::hub";
/// The target of a node's lines.
pub const NODE: &str = "interstate::node";
/// The target of the supervisor's lines.
pub const SUPERVISOR: &str = "interstate::supervisor";
/// The target of the serial bridge's lines.
pub const SERIAL: &str = "interstate::serial";
/// The target of the MQTT bridge's lines.
pub const MQTT: &str = "interstate::mqtt";

/// The level a line asks for, and the line without its level word.
pub fn level_of(line: &str) -> (log::Level, &str) {
    if let Some(rest) = line.strip_prefix("info: ") {
        (log::Level::Info, rest)
    } else if let Some(rest) = line.strip_prefix("debug: ") {
        (log::Level::Debug, rest)
    } else {
        (log::Level::Warn, line)
    }
}

/// Logs a node's line: the hub's (`hub: ...`) under [`HUB`], others under [`NODE`].
pub fn node_line(line: &str) {
    let (target, rest) = match line.strip_prefix("hub: ") {
        Some(rest) => (HUB, rest),
        None => (NODE, line),
    };
    let (level, text) = level_of(rest);
    log::log!(target: target, level, "{text}");
}

/// A logger for a bridge's lines under `target` (`info: ` lines at `Info`, others at
/// `Warn`).
pub fn bridge_line(target: &'static str) -> impl FnMut(&str) {
    move |line: &str| {
        let (level, text) = level_of(line);
        log::log!(target: target, level, "{text}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_level_word_is_read_and_taken_off() {
        assert_eq!(level_of("info: link 3"), (log::Level::Info, "link 3"));
        assert_eq!(level_of("debug: x"), (log::Level::Debug, "x"));
        assert_eq!(level_of("lost the hub"), (log::Level::Warn, "lost the hub"));
    }

    /// Records what reaches the facade (the one logger of this test binary).
    struct Capture(std::sync::Mutex<Vec<(log::Level, String, String)>>);

    impl log::Log for Capture {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }
        fn log(&self, r: &log::Record<'_>) {
            let line = (r.level(), r.target().to_string(), r.args().to_string());
            self.0.lock().unwrap().push(line);
        }
        fn flush(&self) {}
    }

    #[test]
    fn node_lines_go_to_the_hub_or_node_target_at_their_level() {
        static CAPTURE: Capture = Capture(std::sync::Mutex::new(Vec::new()));
        log::set_logger(&CAPTURE).expect("the only logger of this binary");
        log::set_max_level(log::LevelFilter::Trace);
        node_line("hub: info: link 3 connected: pid 1");
        node_line("hub: link 4: no hello in time");
        node_line("lost the hub (gone); reconnecting");
        bridge_line(SERIAL)("info: the line hung up");
        let got = CAPTURE.0.lock().unwrap().clone();
        let want = [
            (log::Level::Info, HUB, "link 3 connected: pid 1"),
            (log::Level::Warn, HUB, "link 4: no hello in time"),
            (log::Level::Warn, NODE, "lost the hub (gone); reconnecting"),
            (log::Level::Info, SERIAL, "the line hung up"),
        ];
        let want: Vec<_> = want
            .iter()
            .map(|(l, t, m)| (*l, t.to_string(), m.to_string()))
            .collect();
        assert_eq!(got, want);
    }
}

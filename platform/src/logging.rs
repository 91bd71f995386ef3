//! The platform's diagnostics through the `log` facade. Targets: `interstate::hub` (the
//! hub: connections, refusals, protocol violations), `interstate::node` (a process's bus
//! connection and its machines), `interstate::supervisor`, `interstate::serial`,
//! `interstate::mqtt`. The application installs the logger (the `interstate` command
//! installs its own; see `docs/operations.md`); without one, nothing is printed.
//!
//! The node and the bridges make their lines as text; a line that starts with `info: `
//! (connections, sessions) is logged at `Info` without that word, `debug: ` at `Debug`,
//! anything else at `Warn` (what went wrong, and what the node did about it).
//!
//! # The stderr logger
//!
//! [`install`] sets up the logger the `interstate` command (and the examples) use, written
//! here rather than taken from `env_logger`: the format keeps the lines the command has
//! always printed (`interstate: hub: link 3: no hello in time`), switches to journald's
//! `<N>` priority prefixes, and honours `--quiet`/`--verbose`; that is less code than
//! configuring a general crate to do it, and adds no dependency.
//!
//! - Level: `--quiet` shows warnings and errors, the default adds `info`, `--verbose` adds
//!   `debug`. `RUST_LOG` overrides: `RUST_LOG=debug`, `RUST_LOG=interstate::hub=trace`,
//!   `RUST_LOG=warn,interstate::node=debug` (comma-separated; a bare level sets the
//!   default; `target=level` sets the level of that target and the targets under it,
//!   `target::...`; the longest matching target wins; `off` silences).
//! - Line: `interstate: SCOPE: LEVEL: message`, where SCOPE is the target after
//!   `interstate::` (none for the command's own target, `interstate`) and LEVEL is left out
//!   for warnings (the usual diagnostic of a running bus, printed as it always was).
//! - Under systemd (`JOURNAL_STREAM` names stderr's device and inode): `<N>SCOPE: message`,
//!   N the sd-daemon priority (3 error, 4 warning, 6 info, 7 debug and trace), so that the
//!   journal records each line's priority.

use std::io::Write;

use log::{Level, LevelFilter, Log, Metadata, Record};

/// The `interstate` command's own target (lines without a scope).
pub const CLI: &str = "interstate";

/// What the logger lets through: a default level, and levels per target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    default: LevelFilter,
    /// (target, level), as given.
    targets: Vec<(String, LevelFilter)>,
}

impl Filter {
    /// `default` for every target.
    pub fn new(default: LevelFilter) -> Self {
        Filter {
            default,
            targets: Vec::new(),
        }
    }

    /// `default`, overridden by a `RUST_LOG` value (`None`: no override). A part that is not
    /// a level nor `target=level` is an error naming it.
    pub fn with_spec(default: LevelFilter, spec: Option<&str>) -> Result<Self, String> {
        let mut f = Filter::new(default);
        let Some(spec) = spec else { return Ok(f) };
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                None => f.default = parse_level(part)?,
                Some((target, level)) => {
                    let target = target.trim();
                    if target.is_empty() {
                        return Err(format!("RUST_LOG: '{part}' names no target"));
                    }
                    f.targets
                        .push((target.to_string(), parse_level(level.trim())?));
                }
            }
        }
        Ok(f)
    }

    /// The level allowed for `target`.
    pub fn level_for(&self, target: &str) -> LevelFilter {
        self.targets
            .iter()
            .filter(|(t, _)| {
                target == t
                    || target
                        .strip_prefix(t.as_str())
                        .is_some_and(|rest| rest.starts_with("::"))
            })
            .max_by_key(|(t, _)| t.len())
            .map_or(self.default, |(_, l)| *l)
    }

    /// The most verbose level any target allows (for `log::set_max_level`).
    pub fn max(&self) -> LevelFilter {
        self.targets
            .iter()
            .map(|(_, l)| *l)
            .chain([self.default])
            .max()
            .unwrap_or(LevelFilter::Off)
    }
}

fn parse_level(s: &str) -> Result<LevelFilter, String> {
    s.parse().map_err(|_| {
        format!("RUST_LOG: '{s}' is not a level (off, error, warn, info, debug, trace)")
    })
}

/// The sd-daemon priority of a level (`<N>` at the start of a journal line).
pub fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// One line as the logger writes it (without the newline).
pub fn format_line(journal: bool, level: Level, target: &str, message: &str) -> String {
    let scope = target
        .strip_prefix("interstate::")
        .map(|s| format!("{s}: "))
        .unwrap_or_else(|| {
            if target == CLI {
                String::new()
            } else {
                format!("{target}: ")
            }
        });
    if journal {
        return format!("<{}>{scope}{message}", priority(level));
    }
    let word = match level {
        Level::Warn => "",
        Level::Error => "error: ",
        Level::Info => "info: ",
        Level::Debug => "debug: ",
        Level::Trace => "trace: ",
    };
    format!("interstate: {scope}{word}{message}")
}

/// Whether `JOURNAL_STREAM` (`DEVICE:INODE`, as systemd sets it) names the file stderr is.
pub fn stderr_is_journal(journal_stream: Option<&str>) -> bool {
    let Some((dev, ino)) = journal_stream.and_then(|v| v.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    match rustix::fs::fstat(std::io::stderr()) {
        // The types of `st_dev` and `st_ino` differ between targets.
        #[allow(clippy::unnecessary_cast)]
        Ok(st) => st.st_dev as u64 == dev && st.st_ino as u64 == ino,
        Err(_) => false,
    }
}

/// The logger: a filter and the line format.
pub struct StderrLogger {
    filter: Filter,
    journal: bool,
}

impl Log for StderrLogger {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.level() <= self.filter.level_for(m.target())
    }

    fn log(&self, r: &Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let line = format_line(self.journal, r.level(), r.target(), &r.args().to_string());
        // One write per line, so that lines of several threads do not interleave.
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

/// Installs the logger: `default` (from `--quiet`/`--verbose`), overridden by `RUST_LOG`;
/// journal lines when `JOURNAL_STREAM` names stderr. A bad `RUST_LOG` is an error.
pub fn install(default: LevelFilter) -> Result<(), String> {
    let spec = std::env::var("RUST_LOG").ok();
    let filter = Filter::with_spec(default, spec.as_deref())?;
    let journal = stderr_is_journal(std::env::var("JOURNAL_STREAM").ok().as_deref());
    log::set_max_level(filter.max());
    log::set_boxed_logger(Box::new(StderrLogger { filter, journal }))
        .map_err(|e| format!("installing the logger: {e}"))
}

/// The target of the hub's lines.
pub const HUB: &str = "interstate::hub";
/// The target of the hub's connection and disconnection lines (`info`), under [`HUB`]:
/// `RUST_LOG=interstate::hub=warn` leaves them out with the hub's other `info` lines,
/// `RUST_LOG=interstate::hub::connections=off` only them.
pub const HUB_CONNECTIONS: &str = "interstate::hub::connections";
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

/// Logs a node's line: the hub's (`hub: ...`) under [`HUB`], its connection lines
/// (`connections: ...`, at `info`) under [`HUB_CONNECTIONS`], others under [`NODE`].
pub fn node_line(line: &str) {
    if let Some(rest) = line.strip_prefix("connections: ") {
        log::log!(target: HUB_CONNECTIONS, log::Level::Info, "{rest}");
        return;
    }
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
        node_line("connections: link 3 connected: pid 1");
        node_line("hub: link 4: no hello in time");
        node_line("lost the hub (gone); reconnecting");
        bridge_line(SERIAL)("info: the line hung up");
        let got = CAPTURE.0.lock().unwrap().clone();
        let want = [
            (log::Level::Info, HUB_CONNECTIONS, "link 3 connected: pid 1"),
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

    #[test]
    fn rust_log_sets_the_default_and_levels_per_target() {
        let f = Filter::with_spec(LevelFilter::Info, Some("warn,interstate::hub=trace"))
            .expect("valid");
        assert_eq!(f.level_for("interstate::node"), LevelFilter::Warn);
        assert_eq!(f.level_for("interstate::hub"), LevelFilter::Trace);
        assert_eq!(f.max(), LevelFilter::Trace);
        // A target's level covers the targets under it, not others that share a prefix.
        let f = Filter::with_spec(
            LevelFilter::Info,
            Some("interstate=off,interstate::hub=debug"),
        )
        .expect("valid");
        assert_eq!(f.level_for("interstate"), LevelFilter::Off);
        assert_eq!(f.level_for("interstate::node"), LevelFilter::Off);
        assert_eq!(f.level_for("interstate::hub"), LevelFilter::Debug);
        assert_eq!(f.level_for("interstate_other"), LevelFilter::Info);
        assert_eq!(f.level_for("mio"), LevelFilter::Info);
    }

    #[test]
    fn no_rust_log_keeps_the_default_and_a_bad_one_is_an_error() {
        assert_eq!(
            Filter::with_spec(LevelFilter::Warn, None).unwrap(),
            Filter::new(LevelFilter::Warn)
        );
        assert_eq!(
            Filter::with_spec(LevelFilter::Warn, Some("debug"))
                .unwrap()
                .level_for("x"),
            LevelFilter::Debug
        );
        let e = Filter::with_spec(LevelFilter::Warn, Some("loud")).unwrap_err();
        assert!(e.contains("'loud' is not a level"), "{e}");
        assert!(Filter::with_spec(LevelFilter::Warn, Some("=info")).is_err());
    }

    #[test]
    fn lines_keep_the_familiar_form_and_journal_lines_carry_priorities() {
        assert_eq!(
            format_line(
                false,
                Level::Warn,
                "interstate::hub",
                "link 3: no hello in time"
            ),
            "interstate: hub: link 3: no hello in time"
        );
        assert_eq!(
            format_line(false, Level::Info, "interstate::hub", "link 3 connected"),
            "interstate: hub: info: link 3 connected"
        );
        assert_eq!(
            format_line(false, Level::Info, CLI, "hub serving bus 'b'"),
            "interstate: info: hub serving bus 'b'"
        );
        assert_eq!(
            format_line(true, Level::Warn, "interstate::node", "lost the hub"),
            "<4>node: lost the hub"
        );
        assert_eq!(format_line(true, Level::Error, CLI, "x"), "<3>x");
        assert_eq!(format_line(true, Level::Info, CLI, "x"), "<6>x");
        assert_eq!(format_line(true, Level::Debug, "mio", "x"), "<7>mio: x");
    }

    #[test]
    fn journal_stream_must_name_stderr_itself() {
        assert!(!stderr_is_journal(None));
        assert!(!stderr_is_journal(Some("garbage")));
        assert!(!stderr_is_journal(Some("1:x")));
        let st = rustix::fs::fstat(std::io::stderr()).expect("stderr");
        let me = format!("{}:{}", st.st_dev, st.st_ino);
        assert!(stderr_is_journal(Some(&me)));
        let other = format!("{}:{}", st.st_dev, st.st_ino.wrapping_add(1));
        assert!(!stderr_is_journal(Some(&other)));
    }
}

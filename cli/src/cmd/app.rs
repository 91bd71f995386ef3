//! The app subcommands of the `interstate` tool: `up`, `down` and `demo`.
//!
//! `up` runs a manifest's processes under the platform's [`Supervisor`] in the foreground,
//! serving the app's bus itself (or joining the hub already serving it). On a terminal it keeps
//! one live status line per process below the processes' output; otherwise it prints one plain
//! line per event. `down` finds the `up` process of a bus by its pid file and asks it to stop.

use std::io::{IsTerminal, Write};

use super::Level;
use crate::output::{self, Stdout};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use interstate_platform::supervisor::{
    self, ChildState, ChildStatus, Outcome, Supervisor, SupervisorEvent,
};
use interstate_platform::{busdir, notify};

use crate::manifest::Manifest;
use interstate::bus::{Node, NodeConfig, Role};

/// `interstate up` options.
#[derive(Clone, Debug, Default)]
pub struct UpOptions {
    /// The manifest.
    pub manifest: PathBuf,
    /// Overrides the manifest's bus.
    pub bus: Option<String>,
    /// Plain lines even on a terminal.
    pub plain: bool,
    /// `--quiet`, `--verbose`.
    pub level: Level,
}

/// `interstate up FILE`: runs the app until it finishes or is stopped; returns the exit status.
pub fn up(opts: &UpOptions) -> Result<u8, String> {
    let mut manifest = Manifest::load(&opts.manifest)?;
    if let Some(b) = &opts.bus {
        busdir::check_bus_name(b)?;
        manifest.bus = b.clone();
    }
    let mut config = super::node_config(Some(&manifest.bus))?;
    config.role = Role::Auto;
    let label = "up";
    let outcome = supervise(manifest, config, label, opts.plain, opts.level, true)?;
    Ok(outcome.exit_code())
}

/// Runs `manifest` under a supervisor on a node made from `config`, printing its progress;
/// returns the exit status (see [`Outcome::exit_code`]).
pub fn run_app(
    manifest: Manifest,
    config: NodeConfig,
    label: &str,
    plain: bool,
) -> Result<u8, String> {
    supervise(manifest, config, label, plain, Level::Normal, true).map(|o| o.exit_code())
}

/// [`run_app`], saying as much as `level` asks (and the processes' output lines when
/// `outputs`), returning how the app ended. Once stdout is closed its output is dropped and
/// the app goes on (see [`crate::output`]).
pub fn supervise(
    manifest: Manifest,
    config: NodeConfig,
    label: &str,
    plain: bool,
    level: Level,
    outputs: bool,
) -> Result<Outcome, String> {
    let node = Node::new(config).map_err(|e| e.to_string())?;
    let bus = node.config().bus.clone();
    let dir = node.config().dir.clone();
    let serving = node.is_hub();
    let n = manifest.processes.len();
    let server = match manifest.metrics.as_deref() {
        Some(addr) => Some(crate::metrics_http::MetricsServer::start(addr)?),
        None => None,
    };
    let mut sup = Supervisor::new(node, manifest.supervisor.clone(), manifest.processes)
        .map_err(|e| e.to_string())?;
    sup.handle_signals().map_err(|e| e.to_string())?;
    let tty = !plain && level > Level::Quiet && std::io::stdout().is_terminal();
    let mut display = Display::new(label, tty, &sup, level);
    display.outputs = outputs;
    display.say(&format!(
        "{n} processes on bus '{bus}' ({}, {}); Ctrl-C stops them",
        if serving {
            "served by this process"
        } else {
            "joined its hub"
        },
        dir.display()
    ));
    if let Some(s) = &server {
        display.say(&format!("metrics at http://{}/metrics", s.addr()));
    }
    display.flush(&sup);
    let outcome = loop {
        // On a terminal the status lines' ages tick once a second; otherwise the loop sleeps
        // until something happens (or, serving metrics, a scrape may wait: 200 ms).
        let tick = if server.is_some() {
            Some(Duration::from_millis(200))
        } else {
            tty.then_some(Duration::from_secs(1))
        };
        sup.run_once(tick).map_err(|e| e.to_string())?;
        if let Some(s) = &server {
            s.serve_pending(|| supervisor_metrics(&mut sup));
        }
        while let Some(ev) = sup.next_event() {
            match &ev {
                SupervisorEvent::AllReady => {
                    notify::ready_with_status(&format!("{n} processes ready")).ok();
                }
                SupervisorEvent::Stopping { .. } => {
                    notify::stopping().ok();
                }
                _ => {}
            }
            display.event(&ev);
        }
        display.flush(&sup);
        if let Some(o) = sup.outcome() {
            break o.clone();
        }
    };
    if level > Level::Quiet || !outcome.success() {
        display.finish(&sup, &outcome);
    }
    Ok(outcome)
}

/// The OpenMetrics text of `up`: its node's metrics, and each process's restarts and
/// whether it runs.
fn supervisor_metrics(sup: &mut Supervisor) -> String {
    use interstate_platform::metrics::{labels, openmetrics};
    let mut report = sup.node().metrics();
    for c in sup.children() {
        let l = || labels([("process", c.name.as_str())]);
        report.counter(
            "interstate_process_restarts",
            "Restarts of the app's process by its supervisor.",
            l(),
            u64::from(c.restarts),
        );
        report.gauge(
            "interstate_process_running",
            "1 while the app's process runs.",
            l(),
            u64::from(c.pid.is_some()),
        );
    }
    openmetrics(&[&report])
}

/// `interstate down [FILE] [--bus NAME]`: stops the app's `up` process (SIGTERM; it stops its
/// processes in order) and waits for it to exit.
pub fn down(manifest: Option<&Path>, bus: Option<&str>, limit: Duration) -> Result<(), String> {
    let bus = match (bus, manifest) {
        (Some(b), _) => b.to_string(),
        (None, Some(m)) => Manifest::load(m)?.bus,
        (None, None) => busdir::default_bus(),
    };
    busdir::check_bus_name(&bus)?;
    let dir = busdir::try_default_dir().map_err(|e| e.to_string())?;
    let pid = supervisor::stop_running(&dir, &bus, limit)?;
    crate::outln!("down: the app on bus '{bus}' stopped (its supervisor was pid {pid})")
}

/// `interstate demo` options.
#[derive(Clone, Debug, Default)]
pub struct DemoOptions {
    /// Keep the temporary directory (store file, inputs).
    pub keep: bool,
    /// Plain lines even on a terminal.
    pub plain: bool,
    /// The ingester's pause between files, in milliseconds.
    pub pace: u64,
    /// `--quiet`: the final line only; `--verbose`: status texts too.
    pub level: Level,
}

/// Removes the demo's directory when the demo ends, however it ends.
struct TempDir {
    path: PathBuf,
    keep: bool,
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// `interstate demo`: the pipeline on a private bus, supervised; returns the exit status.
pub fn demo(opts: &DemoOptions) -> Result<u8, String> {
    use std::os::unix::fs::DirBuilderExt;
    let start = Instant::now();
    let pid = std::process::id();
    let path = std::env::temp_dir().join(format!("interstate-demo-{pid}"));
    let _ = std::fs::remove_dir_all(&path);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(&path)
        .map_err(|e| format!("creating {}: {e}", path.display()))?;
    let tmp = TempDir {
        path,
        keep: opts.keep,
    };
    let input = tmp.path.join("input");
    std::fs::create_dir(&input).map_err(|e| format!("{}: {e}", input.display()))?;
    for (name, text) in crate::demo::SAMPLES {
        std::fs::write(input.join(name), text).map_err(|e| format!("{name}: {e}"))?;
    }
    let store = tmp.path.join("store.jsonl");
    let bus = format!("demo-{pid}");
    let exe = std::env::current_exe().map_err(|e| format!("finding this program: {e}"))?;
    // Lines that `--quiet` leaves out; a closed stdout drops them (the demo goes on).
    let say = |text: std::fmt::Arguments<'_>| {
        if opts.level > Level::Quiet {
            let _ = output::line(text);
        }
    };
    say(format_args!(
        "demo: the seed's pipeline, one process per role, under a supervisor:"
    ));
    say(format_args!(
        "demo:   ingester -> processor -> storage, and a monitor printing every message"
    ));
    say(format_args!(
        "demo: private bus '{bus}' in {} ({})",
        tmp.path.display(),
        if opts.keep {
            "kept"
        } else {
            "removed at the end"
        }
    ));
    let manifest = crate::demo::manifest(&exe, &bus, &input, &store, opts.pace);
    let mut config = NodeConfig::new(&bus);
    config.dir = tmp.path.clone();
    config.role = Role::Hub;
    let transport = interstate::bus::Transport::try_from_env().map_err(|e| e.to_string())?;
    config.transport = transport;
    // `--quiet`: the demo's last line only, without its processes' lines.
    let outputs = opts.level > Level::Quiet;
    let outcome = supervise(manifest, config, "demo", opts.plain, opts.level, outputs)?;
    let code = outcome.exit_code();
    let records = crate::demo::read_store(&store)?;
    let words: u64 = records.values().map(|r| r.words).sum();
    say(format_args!(
        "demo: the store holds {} records, {words} words ({})",
        records.len(),
        store.display()
    ));
    for r in records.values() {
        let mut text: String = r.data.replace('\n', " ").chars().take(40).collect();
        if r.data.chars().count() > 40 {
            text.push_str("...");
        }
        say(format_args!(
            "demo:   {:<12} {:>2} words {:>2} lines  \"{}\"",
            r.file,
            r.words,
            r.lines,
            text.trim_end()
        ));
    }
    let complete = records.len() == crate::demo::SAMPLES.len();
    let _ = output::line(format_args!(
        "demo: {} in {}{}",
        match &outcome {
            _ if code == 0 && complete => "done".to_string(),
            Outcome::Stopped { reason } => format!("stopped early ({reason})"),
            _ => "FAILED".to_string(),
        },
        fmt_duration(start.elapsed()),
        if opts.keep {
            format!("; files kept in {}", tmp.path.display())
        } else {
            "; the bus and its files are removed".to_string()
        }
    ));
    Ok(if code == 0 && !complete { 1 } else { code })
}

/// `1.5s`, `200ms`.
pub fn fmt_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        let s = format!("{:.1}", d.as_secs_f64());
        format!("{}s", s.strip_suffix(".0").unwrap_or(&s))
    }
}

/// What `up` prints: events as lines, and on a terminal a status block kept at the bottom.
struct Display {
    label: String,
    tty: bool,
    /// Color and bold on the terminal (not with `NO_COLOR`).
    color: bool,
    level: Level,
    /// Whether the processes' output lines are shown.
    outputs: bool,
    width: usize,
    /// Lines of the status block now on screen.
    drawn: usize,
    pending: Vec<String>,
}

impl Display {
    fn new(label: &str, tty: bool, sup: &Supervisor, level: Level) -> Display {
        let width = sup
            .children()
            .iter()
            .map(|c| c.name.len())
            .max()
            .unwrap_or(0)
            .max(label.len());
        Display {
            label: label.to_string(),
            tty,
            color: tty && !output::no_color(),
            level,
            outputs: true,
            width,
            drawn: 0,
            pending: Vec::new(),
        }
    }

    fn say(&mut self, text: &str) {
        if self.level > Level::Quiet {
            self.pending.push(format!("{}: {text}", self.label));
        }
    }

    fn event(&mut self, ev: &SupervisorEvent) {
        use SupervisorEvent as E;
        let line = match ev {
            E::Output { .. } if !self.outputs => return,
            E::Output { child, line, .. } => {
                let w = self.width;
                self.pending.push(format!("{child:>w$} | {line}"));
                return;
            }
            E::Spawned { child, pid } => format!("{child} started (pid {pid})"),
            E::Ready { child, how } => format!("{child} ready ({how})"),
            E::AllReady => "every process is ready".to_string(),
            // Shown in the status block (a child may send many); as lines with --verbose.
            E::Status { child, text } if self.level == Level::Verbose && !self.tty => {
                format!("{child}: \"{text}\"")
            }
            E::Status { .. } => return,
            E::Exited {
                child,
                pid,
                exit,
                requested,
            } => format!(
                "{child} (pid {pid}) exited with {exit}{}",
                if *requested { ", as asked" } else { "" }
            ),
            E::Restarting {
                child,
                delay,
                restart,
            } => format!(
                "{child} restarting in {} (restart {restart})",
                fmt_duration(*delay)
            ),
            E::NotReady { child, after } => format!(
                "{child} not ready after {}; stopping it",
                fmt_duration(*after)
            ),
            E::Signalled { child, signal } => format!("{child}: {signal} sent"),
            E::GaveUp {
                child,
                restarts,
                within,
            } => format!(
                "giving up: {restarts} restarts within {} and {child} exited again; stopping the app",
                fmt_duration(*within)
            ),
            E::Stopping { reason } => format!("stopping every process ({reason})"),
            E::Log(l) => l.clone(),
            E::Finished(_) => return,
            _ => format!("{ev:?}"),
        };
        self.say(&line);
    }

    /// One process's status line, cut to `columns` so that it never wraps (the block is
    /// redrawn by moving the cursor up one line per process).
    fn status_line(&self, c: &ChildStatus, now: Instant, columns: usize) -> String {
        let w = self.width;
        let (mark, color) = match &c.state {
            ChildState::Ready => ("●", "32"),
            ChildState::Exited(e) if e.success() => ("✓", "32"),
            ChildState::Starting | ChildState::Backoff | ChildState::Waiting => ("○", "33"),
            ChildState::Stopping | ChildState::Stopped => ("■", "2"),
            ChildState::Exited(_) | ChildState::Failed(_) => ("✗", "31"),
        };
        let mut s = format!("{:<w$}  {:<8}", c.name, c.state.word());
        if let Some(pid) = c.pid {
            s += &format!("  pid {pid:<7}");
        }
        match &c.state {
            ChildState::Ready | ChildState::Starting | ChildState::Stopping => {
                s += &format!(
                    "  for {}",
                    fmt_duration(Duration::from_secs(now.duration_since(c.since).as_secs()))
                );
            }
            ChildState::Backoff => {
                if let Some(at) = c.restart_at {
                    s += &format!(
                        "  restart in {}",
                        fmt_duration(at.saturating_duration_since(now))
                    );
                }
            }
            ChildState::Failed(why) => s += &format!("  {why}"),
            _ => {}
        }
        if c.restarts > 0 {
            s += &format!("  {} restarts", c.restarts);
        }
        if let Some(e) = c.last_exit {
            s += &format!("  last exit: {e}");
        }
        if let Some(t) = &c.status_text {
            s += &format!("  \"{t}\"");
        }
        let room = columns.saturating_sub(4).max(w + 10);
        if s.chars().count() > room {
            s = s.chars().take(room.saturating_sub(3)).collect::<String>() + "...";
        }
        if self.color {
            format!(" \x1b[{color}m{mark}\x1b[0m {s}")
        } else {
            format!(" {mark} {s}")
        }
    }

    /// Prints what is pending; on a terminal, redraws the status block below it.
    fn flush(&mut self, sup: &Supervisor) {
        // Errors are dropped: a closed stdout must not stop the app (see `crate::output`).
        let mut out = Stdout;
        if !self.tty {
            for l in self.pending.drain(..) {
                let _ = writeln!(out, "{l}");
            }
            let _ = out.flush();
            return;
        }
        if self.drawn > 0 {
            // Up to the block's first line, and clear to the end of the screen.
            let _ = write!(out, "\x1b[{}F\x1b[J", self.drawn);
        }
        for l in self.pending.drain(..) {
            let _ = writeln!(out, "{l}");
        }
        let now = Instant::now();
        let columns = rustix::termios::tcgetwinsize(std::io::stdout())
            .map(|ws| ws.ws_col as usize)
            .ok()
            .filter(|&c| c > 0)
            .unwrap_or(80);
        let children = sup.children();
        if self.color {
            let _ = writeln!(out, "\x1b[1m── {} ──\x1b[0m", self.label);
        } else {
            let _ = writeln!(out, "── {} ──", self.label);
        }
        for c in &children {
            let _ = writeln!(out, "{}", self.status_line(c, now, columns));
        }
        self.drawn = children.len() + 1;
        let _ = out.flush();
    }

    fn finish(&mut self, sup: &Supervisor, outcome: &Outcome) {
        self.flush(sup);
        let mut out = Stdout;
        if self.tty && self.drawn > 0 {
            let _ = write!(out, "\x1b[{}F\x1b[J", self.drawn);
            self.drawn = 0;
        }
        let w = self.width;
        let label = &self.label;
        let _ = writeln!(out, "{label}: finished: {outcome}");
        for c in sup.children() {
            let state = match &c.state {
                ChildState::Failed(why) => format!("failed: {why}"),
                s => s.word().to_string(),
            };
            let exit = c.last_exit.map(|e| e.to_string()).unwrap_or_default();
            let _ = writeln!(
                out,
                "{label}:   {:<w$}  {state:<8}  {} restarts  {}",
                c.name,
                c.restarts,
                if exit.is_empty() {
                    "never ran".to_string()
                } else {
                    format!("last exit: {exit}")
                }
            );
        }
        let _ = out.flush();
    }
}

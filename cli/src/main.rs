//! The `interstate` command-line tool: [`args`] defines the command line, this file runs it.

mod args;

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use args::{Cli, Command};
use interstate_cli::cmd::{self, display_name, is_std, load_chart, Values};
use interstate_cli::outln;
use interstate_cli::output::{self, Stdout};

/// The name a generated file gives its source: the path as given when it is relative (the
/// command that regenerates the file, from the same directory), the file name alone when it
/// is absolute, so that no absolute path (a home directory, a build folder) ends up in a file
/// that may be committed.
fn source_name(file: &Path) -> String {
    if is_std(file) {
        return "-".to_string();
    }
    if file.is_relative() {
        return file.display().to_string();
    }
    file.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Writes a compiled artefact to `output` (stdout for `-`); the summary goes to stdout, or to
/// stderr when stdout carries the artefact.
fn write_artefact(output: &Path, bytes: &[u8], summary: &str) -> Result<(), String> {
    if is_std(output) {
        output::bytes(bytes)?;
        eprintln!("{summary}");
        return Ok(());
    }
    std::fs::write(output, bytes).map_err(|e| format!("{}: {e}", output.display()))?;
    outln!("{}: {summary}", output.display())
}

fn chart_verb(command: Command) -> Result<ExitCode, String> {
    match command {
        Command::Check { file } => {
            let compiled = load_chart(&file)?;
            outln!(
                "{}: ok: {}",
                display_name(&file),
                interstate::diagram::summary(&compiled.chart())
            )?;
        }
        Command::Simulate {
            file,
            batch,
            values,
            context,
            actors,
            events,
        } => {
            if batch {
                // One line per case, each flushed: a driver waits for each answer.
                interstate::simulate::run_batch(std::io::stdin().lock(), &mut Stdout)
                    .map_err(|e| output::error_text(&e))?;
                return Ok(ExitCode::SUCCESS);
            }
            let Some(file) = file else {
                return Err("simulate: a chart file is needed (or --batch)".into());
            };
            let compiled = load_chart(&file)?;
            let values = Values::parse(&values.guards, &values.delays)?;
            let options = interstate::simulate::Options {
                guards: values.guards,
                delays: values.delays,
                machine_id: None,
                context,
                actors: load_actors(&actors)?,
            };
            let inputs: Box<dyn Iterator<Item = String>> = if events.is_empty() && !is_std(&file) {
                Box::new(std::io::stdin().lock().lines().map_while(Result::ok))
            } else {
                Box::new(events.into_iter())
            };
            // Line by line, as inputs typed on a terminal expect.
            let mut out = std::io::LineWriter::new(Stdout);
            let ok = interstate::simulate::run(&compiled.chart(), &options, inputs, &mut out)
                .map_err(|e| output::error_text(&e))?;
            out.flush().map_err(|e| output::error_text(&e))?;
            if !ok {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Compile {
            file,
            output,
            rust,
            native,
        } => {
            let compiled = load_chart(&file)?;
            let summary = interstate::diagram::summary(&compiled.chart());
            if native {
                let source =
                    interstate::native::rust_module(&compiled.chart(), &source_name(&file))
                        .map_err(|e| e.to_string())?;
                let summary = format!(
                    "native Rust module, {} lines ({summary})",
                    source.lines().count()
                );
                write_artefact(&output, source.as_bytes(), &summary)?;
            } else if rust {
                let source =
                    interstate::codegen::rust_module(&compiled.chart(), &source_name(&file));
                let tables = compiled.to_image().len();
                let summary = format!("Rust module, {tables} bytes of tables ({summary})");
                write_artefact(&output, source.as_bytes(), &summary)?;
            } else {
                let image = compiled.to_image();
                let summary = format!("{} bytes ({summary})", image.len());
                write_artefact(&output, &image, &summary)?;
            }
        }
        Command::Diagram { file, format } => {
            let compiled = load_chart(&file)?;
            output::bytes(
                interstate::diagram::render(&compiled.chart(), format.into()).as_bytes(),
            )?;
        }
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "interstate", &mut script);
            output::bytes(&script)?;
        }
        Command::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut page)
                .map_err(|e| format!("rendering the manual page: {e}"))?;
            output::bytes(&page)?;
        }
        _ => unreachable!("not a chart verb"),
    }
    Ok(ExitCode::SUCCESS)
}

fn bench(command: Command) -> Result<ExitCode, String> {
    use interstate_cli::bench;
    let Command::Bench {
        transport,
        json,
        round_trips,
        messages,
        payload,
        wait,
        no_hub,
        pin,
    } = command
    else {
        unreachable!("not bench")
    };
    if transport == "mqtt" {
        // Through a broker a round trip takes about a millisecond: the local paths' defaults
        // would take minutes.
        let opts = bench::BenchOptions {
            round_trips: if round_trips == 20_000 {
                2_000
            } else {
                round_trips
            },
            messages: if messages == 1_000_000 {
                100_000
            } else {
                messages
            },
            payloads: if payload.is_empty() {
                vec![64]
            } else {
                payload
            },
            pin: bench::Pin::parse(&pin)?,
            ..Default::default()
        };
        let exe = std::env::current_exe().map_err(|e| format!("finding this program: {e}"))?;
        let report = bench::mqtt::run(&exe, &opts)?;
        if json {
            outln!("{report}")?;
        } else {
            bench::mqtt::print(&report)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let kinds = bench::Kind::parse_list(&transport)?;
    let mut opts = bench::BenchOptions {
        round_trips,
        messages,
        via_hub: !no_hub,
        pin: bench::Pin::parse(&pin)?,
        ..Default::default()
    };
    if !payload.is_empty() {
        opts.payloads = payload;
    }
    if !wait.is_empty() {
        opts.waits = wait
            .iter()
            .map(|w| bench::Wait::parse(w))
            .collect::<Result<_, _>>()?;
    }
    let report = bench::run(&kinds, &opts)?;
    if json {
        outln!("{report}")?;
    } else {
        bench::print_table(&report)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn demo(command: Command) -> Result<ExitCode, String> {
    let Command::Demo {
        keep,
        plain,
        role,
        input,
        store,
        pace,
        internode,
        verbosity,
    } = command
    else {
        unreachable!("not demo")
    };
    use interstate_cli::demo;
    let done = match role.as_deref() {
        None => {
            let opts = cmd::app::DemoOptions {
                keep,
                plain,
                pace,
                level: verbosity.level(),
            };
            if internode {
                return interstate_cli::demo::internode::demo(&opts).map(ExitCode::from);
            }
            return cmd::app::demo(&opts).map(ExitCode::from);
        }
        Some("ingester") => {
            demo::ingester(input.as_deref(), std::time::Duration::from_millis(pace))
        }
        Some("processor") => demo::processor(),
        Some("storage") => demo::storage(store.as_deref()),
        Some("monitor") => demo::monitor(),
        Some(r) => Err(format!(
            "no demo role '{r}' (ingester, processor, storage, monitor)"
        )),
    };
    done.map(|()| ExitCode::SUCCESS)
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    let ok = |()| ExitCode::SUCCESS;
    match cli.command {
        c @ (Command::Check { .. }
        | Command::Simulate { .. }
        | Command::Compile { .. }
        | Command::Diagram { .. }
        | Command::Completions { .. }
        | Command::Man) => chart_verb(c),
        c @ Command::Bench { .. } => bench(c),
        c @ Command::Demo { .. } => demo(c),
        Command::BenchPeer { args } => interstate_cli::bench::peer(&args).map(ok),
        Command::Hub {
            bus, metrics, nice, ..
        } => cmd::bus::hub(&bus.args(), metrics.as_deref(), nice).map(ok),
        Command::Stats { json, bus } => cmd::stats::stats(&bus.args(), json).map(ok),
        Command::Send {
            target,
            event,
            data,
            bus,
        } => cmd::bus::send(&bus.args(), &target, &event, data.as_deref()).map(ok),
        Command::Request {
            target,
            event,
            data,
            timeout,
            json,
            bus,
        } => cmd::request::request(
            &bus.args(),
            &target,
            &event,
            data.as_deref(),
            &timeout,
            json,
        )
        .map(ok),
        Command::Publish {
            topic,
            event,
            data,
            wait_for,
            bus,
        } => cmd::topics::publish(&bus.args(), &topic, &event, data.as_deref(), wait_for).map(ok),
        Command::Subscribe {
            filter,
            json,
            count,
            bus,
        } => cmd::topics::subscribe(&bus.args(), &filter, json, count).map(ok),
        Command::Ps { json, bus } => cmd::bus::ps(&bus.args(), json).map(ok),
        Command::Buses { json } => cmd::buses::buses(json).map(ok),
        Command::Inspect {
            listen,
            allow_remote,
            open,
            bus,
        } => {
            let opts = interstate_cli::inspect::InspectOptions {
                listen,
                allow_remote,
                open,
            };
            interstate_cli::inspect::inspect(&bus.args(), &opts).map(ok)
        }
        Command::Status {
            id,
            json,
            watch,
            bus,
        } => cmd::status::status(&bus.args(), &id, json, watch).map(ok),
        Command::Monitor {
            json,
            count,
            machines,
            events,
            bus,
        } => {
            let filter = cmd::bus::MonitorFilter { machines, events };
            cmd::bus::monitor(&bus.args(), json, count, &filter).map(ok)
        }
        Command::Run {
            file,
            id,
            actors,
            child_grace,
            max_children,
            client,
            watch,
            keep_going,
            state_dir,
            durability,
            metrics,
            values,
            bus,
            // (Read by the logger: see `log_level`.)
            verbosity: _,
        } => {
            let role = if client {
                interstate::bus::Role::Client
            } else {
                interstate::bus::Role::Auto
            };
            let host = cmd::bus::Host {
                values: Values::parse(&values.guards, &values.delays)?,
                keep_going,
                state: cmd::bus::state_setting(state_dir, durability)?,
                metrics,
                actors: cmd::child::run_actors(&actors)?,
                max_children,
                child_grace: std::time::Duration::from_millis(child_grace),
            };
            let id = match id {
                Some(id) => id,
                None => std::env::var(interstate_platform::node::ENV_MACHINE_ID).map_err(|_| {
                    "run needs --id ID (or INTERSTATE_MACHINE_ID, which a parent sets)".to_string()
                })?,
            };
            cmd::bus::run(&bus.args(), &file, &id, role, &watch, &host).map(ok)
        }
        Command::Up {
            file,
            plain,
            bus,
            verbosity,
        } => {
            let opts = cmd::app::UpOptions {
                manifest: file,
                bus,
                plain,
                level: verbosity.level(),
            };
            cmd::app::up(&opts).map(ExitCode::from)
        }
        Command::Down { file, bus, timeout } => cmd::app::down(
            file.as_deref(),
            bus.as_deref(),
            std::time::Duration::from_secs(timeout),
        )
        .map(ok),
        Command::Bridge {
            mqtt,
            node,
            prefix,
            credentials,
            ack_timeout_ms,
            node_grace_ms,
            machines,
            values,
            security,
            bus,
        } => cmd::bridge::bridge(
            &bus.args(),
            &cmd::bridge::BridgeArgs {
                mqtt,
                node,
                prefix,
                credentials,
                ack_timeout_ms,
                node_grace_ms,
                security,
                machines: cmd::bridge::parse_machines(&machines)?,
                values: Values::parse(&values.guards, &values.delays)?,
            },
        )
        .map(ok),
        Command::SerialBridge { tty, baud, bus } => {
            cmd::serial::serial_bridge(&bus.args(), &cmd::serial::SerialArgs { tty, baud }).map(ok)
        }
    }
}

/// The logger's level before `RUST_LOG`: from `--quiet`/`--verbose` where the verb has them.
fn log_level(command: &Command) -> log::LevelFilter {
    use interstate_cli::cmd::Level;
    let verbosity = match command {
        Command::Hub { verbosity, .. }
        | Command::Run { verbosity, .. }
        | Command::Up { verbosity, .. } => *verbosity,
        _ => args::Verbosity::default(),
    };
    match verbosity.level() {
        Level::Quiet => log::LevelFilter::Warn,
        Level::Normal => log::LevelFilter::Info,
        Level::Verbose => log::LevelFilter::Debug,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = interstate_platform::logging::install(log_level(&cli.command)) {
        eprintln!("interstate: {e}");
        return ExitCode::from(2);
    }
    match run(cli) {
        Ok(code) => code,
        // The reader of stdout went away (`| head`): end quietly, as a filter does.
        Err(_) if output::closed() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("interstate: {e}");
            ExitCode::from(2)
        }
    }
}

/// `--actor SRC=CHILD.json` options: the charts by `src`.
fn load_actors(
    specs: &[String],
) -> Result<std::collections::HashMap<String, interstate::CompiledChart>, String> {
    let mut out = std::collections::HashMap::new();
    for spec in specs {
        let Some((src, file)) = spec.split_once('=') else {
            return Err(format!(
                "--actor takes SRC=CHILD.json (an invoked src and its chart), not '{spec}'"
            ));
        };
        if src.is_empty() {
            return Err(format!("--actor '{spec}': the src name is empty"));
        }
        let compiled = load_chart(std::path::Path::new(file))?;
        out.insert(src.to_string(), compiled);
    }
    Ok(out)
}

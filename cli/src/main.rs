//! The `interstate` command-line tool.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "interstate",
    version,
    about = "Statecharts across processes on one machine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a chart (JSON or image) and print a one-line summary.
    Check {
        /// The chart file.
        file: PathBuf,
    },
    /// Run a chart on a virtual clock; inputs from the arguments or stdin, one per line.
    ///
    /// An input is an event type (GO), a JSON event ({"type":"GO","data":{...}}), or
    /// `@advance MS`, which moves the virtual clock forward and fires due timers.
    Simulate {
        /// The chart file.
        file: PathBuf,
        /// A guard's value, NAME=true|false. Every guard the chart uses needs one.
        #[arg(long = "guard", value_name = "NAME=BOOL")]
        guards: Vec<String>,
        /// A named delay's value, NAME=MS.
        #[arg(long = "delay", value_name = "NAME=MS")]
        delays: Vec<String>,
        /// Input events; when none are given, they are read from stdin.
        events: Vec<String>,
    },
    /// Compile a JSON chart into a chart image that the core loads without allocating, or
    /// (with --rust) into a Rust module with the chart's tables as statics.
    Compile {
        /// The JSON chart.
        file: PathBuf,
        /// Where to write the image (or the Rust module).
        #[arg(short, long)]
        output: PathBuf,
        /// Write a Rust module (`static` tables and `pub fn chart()`) instead of an image.
        #[arg(long)]
        rust: bool,
    },
    /// Serve a bus: route events between the machines of every process that joins it.
    Hub {
        #[command(flatten)]
        bus: BusOpt,
    },
    /// Send one event to a machine on the bus.
    Send {
        /// The target machine id.
        target: String,
        /// The event name.
        event: String,
        /// The payload, as JSON.
        #[arg(long)]
        data: Option<String>,
        #[command(flatten)]
        bus: BusOpt,
    },
    /// List the machines registered on the bus.
    Ps {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        bus: BusOpt,
    },
    /// Show a machine's state, the events it accepts now, and its last events and errors.
    Status {
        /// The machine id.
        id: String,
        /// Print JSON (with --watch: one object per line).
        #[arg(long)]
        json: bool,
        /// Keep printing each change as it happens, until Ctrl-C.
        #[arg(long)]
        watch: bool,
        #[command(flatten)]
        bus: BusOpt,
    },
    /// Print every message crossing the hub and every delivery failure, one line each.
    Monitor {
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
        /// Stop after this many messages.
        #[arg(long)]
        count: Option<u64>,
        /// Only messages from or to this machine id (`*` matches anything). Repeatable.
        #[arg(long = "machine", value_name = "ID")]
        machines: Vec<String>,
        /// Only events with this name (`*` matches anything). Repeatable.
        #[arg(long = "event", value_name = "NAME")]
        events: Vec<String>,
        #[command(flatten)]
        bus: BusOpt,
    },
    /// Run a JSON machine on the bus (built-in actions: log, raise, sendTo, cancel).
    Run {
        /// The chart (JSON or image).
        file: PathBuf,
        /// The machine id on the bus.
        #[arg(long)]
        id: String,
        /// Join an existing hub only (by default the first process serves the bus).
        #[arg(long)]
        client: bool,
        /// Watch a machine id: the machine receives `xstate.machine.down` when it leaves the
        /// bus and `xstate.machine.up` when it joins again. Repeatable.
        #[arg(long = "watch", value_name = "ID")]
        watch: Vec<String>,
        /// Keep serving when the machine stops on an error (it leaves the bus either way);
        /// without it, `run` then exits with status 2.
        #[arg(long)]
        keep_going: bool,
        #[command(flatten)]
        bus: BusOpt,
    },
    /// Run an app: start the processes of a manifest (TOML) in dependency order once each is
    /// ready, restart them by their policies, and stop them all on Ctrl-C.
    Up {
        /// The app manifest (see docs/lifecycle.md).
        file: PathBuf,
        /// Print plain lines, even on a terminal.
        #[arg(long)]
        plain: bool,
        /// Override the manifest's bus name.
        #[arg(long)]
        bus: Option<String>,
    },
    /// Stop a running app (its `interstate up` process), by manifest or by bus name.
    Down {
        /// The app manifest (its bus is the one stopped).
        file: Option<PathBuf>,
        /// The bus name (default: the manifest's, else $INTERSTATE_BUS, else "default").
        #[arg(long)]
        bus: Option<String>,
        /// How long to wait for the app to stop, in seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Run the seed's pipeline (ingester -> processor -> storage) as supervised processes on
    /// a private bus; it finishes by itself in a few seconds.
    Demo {
        /// Keep the demo's directory (inputs, the store file).
        #[arg(long)]
        keep: bool,
        /// Print plain lines, even on a terminal.
        #[arg(long)]
        plain: bool,
        /// (internal) Run one role of the demo: ingester, processor, storage or monitor.
        #[arg(long, hide = true)]
        role: Option<String>,
        /// (internal) The ingester's input directory.
        #[arg(long, hide = true)]
        input: Option<PathBuf>,
        /// (internal) The storage's store file.
        #[arg(long, hide = true)]
        store: Option<PathBuf>,
        /// The ingester's pause between files, in milliseconds (0: as fast as it goes).
        #[arg(long, default_value_t = 250)]
        pace: u64,
    },
    /// Measure bus latency and throughput between two processes, beside raw baselines.
    Bench {
        /// The transport to measure: unix, fifo, shm or all.
        #[arg(long, default_value = "unix")]
        transport: String,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Round trips to measure per path.
        #[arg(long, default_value_t = 20_000)]
        round_trips: usize,
        /// Messages one way per path with 64-byte payloads (larger payloads send fewer).
        #[arg(long, default_value_t = 1_000_000)]
        messages: usize,
        /// Payload bytes per message (repeat or comma-separate; default: 64 and 4096).
        #[arg(long, value_delimiter = ',')]
        payload: Vec<usize>,
        /// Shared-memory wait strategies: busy, spin, park (default: busy and spin).
        #[arg(long, value_delimiter = ',')]
        wait: Vec<String>,
        /// Skip the paths through a separate hub process.
        #[arg(long)]
        no_hub: bool,
        /// Placement: split (this process on one CPU, its peers on another), same, none.
        #[arg(long, default_value = "split")]
        pin: String,
    },
    /// (internal) A benchmark peer process.
    #[command(hide = true)]
    BenchPeer {
        /// Peer arguments.
        args: Vec<String>,
    },
    /// Print a Mermaid stateDiagram-v2 or Graphviz DOT picture of a chart.
    Diagram {
        /// The chart file.
        file: PathBuf,
        /// The output format.
        #[arg(long, value_enum, default_value = "mermaid")]
        format: DiagramFormat,
    },
    /// Put a device on a serial line on the bus (COBS frames over the tty, see the README).
    SerialBridge {
        /// The serial line: /dev/ttyUSB0, /dev/ttyACM0, a pseudo-terminal.
        #[arg(long)]
        tty: PathBuf,
        /// The line speed in baud (left as it is when not given).
        #[arg(long)]
        baud: Option<u32>,
        #[command(flatten)]
        bus: BusOpt,
    },
}

/// `diagram --format`: the facade's picture formats as command-line values.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum DiagramFormat {
    /// Mermaid `stateDiagram-v2`.
    Mermaid,
    /// Graphviz DOT.
    Dot,
}

impl From<DiagramFormat> for interstate::diagram::Format {
    fn from(format: DiagramFormat) -> Self {
        match format {
            DiagramFormat::Mermaid => interstate::diagram::Format::Mermaid,
            DiagramFormat::Dot => interstate::diagram::Format::Dot,
        }
    }
}

/// Which bus.
#[derive(clap::Args, Clone, Debug)]
struct BusOpt {
    /// The bus name (default: $INTERSTATE_BUS, else "default").
    #[arg(long)]
    bus: Option<String>,
}

impl BusOpt {
    fn args(&self) -> interstate_cli::cmd::bus::BusArgs {
        interstate_cli::cmd::bus::BusArgs {
            bus: self.bus.clone(),
        }
    }
}

fn load(file: &PathBuf) -> Result<interstate::CompiledChart, String> {
    let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    interstate::load_chart_bytes(&bytes).map_err(|e| format!("{}: {e}", file.display()))
}

fn parse_pairs<T>(
    list: &[String],
    what: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Vec<(String, T)>, String> {
    list.iter()
        .map(|p| {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| format!("--{what} {p}: expected NAME=VALUE"))?;
            let v = parse(v).ok_or_else(|| format!("--{what} {p}: bad value '{v}'"))?;
            Ok((k.to_string(), v))
        })
        .collect()
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        Command::Check { file } => {
            let compiled = load(&file)?;
            let chart = compiled.chart();
            println!(
                "{}: ok: {}",
                file.display(),
                interstate::diagram::summary(&chart)
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Simulate {
            file,
            guards,
            delays,
            events,
        } => {
            let compiled = load(&file)?;
            let options = interstate::simulate::Options {
                guards: parse_pairs(&guards, "guard", |v| match v {
                    "true" => Some(true),
                    "false" => Some(false),
                    _ => None,
                })?
                .into_iter()
                .collect(),
                delays: parse_pairs(&delays, "delay", |v| v.parse().ok())?
                    .into_iter()
                    .collect(),
                machine_id: None,
            };
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            let inputs: Box<dyn Iterator<Item = String>> = if events.is_empty() {
                Box::new(std::io::stdin().lock().lines().map_while(Result::ok))
            } else {
                Box::new(events.into_iter())
            };
            let ok = interstate::simulate::run(&compiled.chart(), &options, inputs, &mut out)
                .map_err(|e| e.to_string())?;
            out.flush().map_err(|e| e.to_string())?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Compile { file, output, rust } => {
            let compiled = load(&file)?;
            if rust {
                let source = interstate::codegen::rust_module(
                    &compiled.chart(),
                    &file.display().to_string(),
                );
                std::fs::write(&output, &source)
                    .map_err(|e| format!("{}: {e}", output.display()))?;
                println!(
                    "{}: Rust module, {} bytes of tables ({})",
                    output.display(),
                    compiled.to_image().len(),
                    interstate::diagram::summary(&compiled.chart())
                );
                return Ok(ExitCode::SUCCESS);
            }
            let image = compiled.to_image();
            std::fs::write(&output, &image).map_err(|e| format!("{}: {e}", output.display()))?;
            println!(
                "{}: {} bytes ({})",
                output.display(),
                image.len(),
                interstate::diagram::summary(&compiled.chart())
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            transport,
            json,
            round_trips,
            messages,
            payload,
            wait,
            no_hub,
            pin,
        } => {
            let kinds = interstate_cli::bench::Kind::parse_list(&transport)?;
            let mut opts = interstate_cli::bench::BenchOptions {
                round_trips,
                messages,
                via_hub: !no_hub,
                pin: interstate_cli::bench::Pin::parse(&pin)?,
                ..Default::default()
            };
            if !payload.is_empty() {
                opts.payloads = payload;
            }
            if !wait.is_empty() {
                opts.waits = wait
                    .iter()
                    .map(|w| interstate_cli::bench::Wait::parse(w))
                    .collect::<Result<_, _>>()?;
            }
            let report = interstate_cli::bench::run(&kinds, &opts)?;
            if json {
                println!("{report}");
            } else {
                interstate_cli::bench::print_table(&report);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::BenchPeer { args } => {
            interstate_cli::bench::peer(&args).map(|()| ExitCode::SUCCESS)
        }
        Command::Hub { bus } => {
            interstate_cli::cmd::bus::hub(&bus.args()).map(|()| ExitCode::SUCCESS)
        }
        Command::Send {
            target,
            event,
            data,
            bus,
        } => interstate_cli::cmd::bus::send(&bus.args(), &target, &event, data.as_deref())
            .map(|()| ExitCode::SUCCESS),
        Command::Ps { json, bus } => {
            interstate_cli::cmd::bus::ps(&bus.args(), json).map(|()| ExitCode::SUCCESS)
        }
        Command::Status {
            id,
            json,
            watch,
            bus,
        } => interstate_cli::cmd::status::status(&bus.args(), &id, json, watch)
            .map(|()| ExitCode::SUCCESS),
        Command::Monitor {
            json,
            count,
            machines,
            events,
            bus,
        } => {
            let filter = interstate_cli::cmd::bus::MonitorFilter { machines, events };
            interstate_cli::cmd::bus::monitor(&bus.args(), json, count, &filter)
                .map(|()| ExitCode::SUCCESS)
        }
        Command::Run {
            file,
            id,
            client,
            watch,
            keep_going,
            bus,
        } => {
            let role = if client {
                interstate::bus::Role::Client
            } else {
                interstate::bus::Role::Auto
            };
            interstate_cli::cmd::bus::run(&bus.args(), &file, &id, role, &watch, keep_going)
                .map(|()| ExitCode::SUCCESS)
        }
        Command::Up { file, plain, bus } => {
            let opts = interstate_cli::cmd::app::UpOptions {
                manifest: file,
                bus,
                plain,
            };
            interstate_cli::cmd::app::up(&opts).map(ExitCode::from)
        }
        Command::Down { file, bus, timeout } => interstate_cli::cmd::app::down(
            file.as_deref(),
            bus.as_deref(),
            std::time::Duration::from_secs(timeout),
        )
        .map(|()| ExitCode::SUCCESS),
        Command::Demo {
            keep,
            plain,
            role,
            input,
            store,
            pace,
        } => {
            let done = match role.as_deref() {
                None => {
                    let opts = interstate_cli::cmd::app::DemoOptions { keep, plain, pace };
                    return interstate_cli::cmd::app::demo(&opts).map(ExitCode::from);
                }
                Some("ingester") => interstate_cli::demo::ingester(
                    input.as_deref(),
                    std::time::Duration::from_millis(pace),
                ),
                Some("processor") => interstate_cli::demo::processor(),
                Some("storage") => interstate_cli::demo::storage(store.as_deref()),
                Some("monitor") => interstate_cli::demo::monitor(),
                Some(r) => Err(format!(
                    "no demo role '{r}' (ingester, processor, storage, monitor)"
                )),
            };
            done.map(|()| ExitCode::SUCCESS)
        }
        Command::Diagram { file, format } => {
            let compiled = load(&file)?;
            print!(
                "{}",
                interstate::diagram::render(&compiled.chart(), format.into())
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::SerialBridge { tty, baud, bus } => interstate_cli::cmd::serial::serial_bridge(
            &bus.args(),
            &interstate_cli::cmd::serial::SerialArgs { tty, baud },
        )
        .map(|()| ExitCode::SUCCESS),
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("interstate: {e}");
            ExitCode::from(2)
        }
    }
}

//! The command line's grammar: every verb, flag and help text, as clap definitions. `main.rs`
//! turns a parsed [`Cli`] into calls to the verbs; `completions` and `man` print scripts and
//! a manual page generated from these same definitions.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Printed after `interstate --help`: the environment and the exit statuses.
const AFTER_HELP: &str = "\
A FILE argument of `-` is read from stdin; `compile -o -` writes to stdout.

ENVIRONMENT:
  INTERSTATE_DIR        The bus directory, an absolute path (default:
                        $XDG_RUNTIME_DIR/interstate, else /tmp/interstate-UID). Created mode
                        0700.
  INTERSTATE_BUS        The bus name when --bus is not given (default: \"default\").
  INTERSTATE_TRANSPORT  How a client reaches the hub: unix (default), fifo or shm. Any other
                        value is an error.
  INTERSTATE_DIRECT_PAIRS
                        With shm: how many direct ring pairs a client takes with other shm
                        clients (default 4; 0: every message through the hub).
  INTERSTATE_HUB_READ_QUANTUM
                        `hub` (and `run` serving the bus): bytes read from one link per pass
                        before the next link's turn (default 262144; 16384 lowers latency
                        under a flood by about a third, at about a tenth of its throughput).
  INTERSTATE_HUB_NICE   `hub`: its nice value when --nice is not given (see `interstate hub
                        --help`).
  INTERSTATE_YIELD_AFTER_US
                        A client node that runs this long without sleeping yields its CPU
                        (unset or 0: never, the default). Shortens the waits of receivers
                        among many busy clients, but a yielding process gets a small share
                        against busy processes that do not yield (docs/performance.md).
  INTERSTATE_STATE_DIR  `run`: journal the machine there when --state-dir is not given.
  INTERSTATE_DURABILITY `run`: the journal's policy when --durability is not given.
  INTERSTATE_DURABLE_HOLD_MS
                        `hub` (and `run` serving the bus): how long a durable machine's id is
                        kept for its restarted process, in milliseconds (default 30000).
  INTERSTATE_JOURNAL_COMPACT, INTERSTATE_JOURNAL_CRASH
                        For tests of durable machines: the journal's compaction size in
                        bytes, and a point where the process aborts (docs/persistence.md).
  INTERSTATE_MACHINE_ID, INTERSTATE_INPUT, INTERSTATE_RESULT_FD
                        Set by a parent for a child it invoked as a process (`run --actor`):
                        `run` takes its machine id from the first when it has no --id, the
                        second is the invocation's input, and `run` writes its final state's
                        output to the descriptor the third names.
  INTERSTATE_SUPERVISOR Set by `up` for its processes: the supervisor's port, which `run`
                        asks for the child processes its chart invokes (instead of
                        starting them itself; docs/lifecycle.md).
  INTERSTATE_PROCESS    Set by `up` for its processes: the process's name in the manifest,
                        which `run` names when it asks for a child process, so that the
                        child gets that process's `env` (docs/lifecycle.md).
  INTERSTATE_MQTT_PASSWORD
                        `bridge`: the password of --username when no --password-file is
                        given (kept off the command line, which `ps` shows).
  XDG_RUNTIME_DIR       Where the bus directory is when INTERSTATE_DIR is not set.
  NO_COLOR              When set and not empty, `up` and `demo` print no color.
  NOTIFY_SOCKET         Set by a service manager: `hub`, `run` and `up` report readiness there.
  LISTEN_FDS, LISTEN_PID
                        Set by a service manager: `hub` serves on the socket it was passed.

EXIT STATUS:
  0  success; also when stdout is closed early (e.g. `interstate monitor | head -1`): the
     command then ends quietly
  1  a check failed: a simulation step failed, or an app run by `up` or `demo` failed
     (`up` passes on its main process's own exit status when the manifest names one)
  2  usage or runtime error: a bad option or setting, an unreadable file, an invalid chart,
     a chart value missing, no hub serving the bus, a machine under `run` stopped by an
     error (unless --keep-going)
";

#[derive(Parser)]
#[command(
    name = "interstate",
    version,
    about = "Statecharts across processes on one machine",
    after_help = AFTER_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// How much a chatty verb says (`up`, `demo`, `hub`, `run`).
#[derive(clap::Args, Clone, Copy, Debug, Default)]
pub struct Verbosity {
    /// Say less: only errors, and the output of the machines or processes themselves.
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Say more: settings at start, counters at the end, status texts.
    #[arg(short, long)]
    pub verbose: bool,
}

impl Verbosity {
    pub fn level(self) -> interstate_cli::cmd::Level {
        use interstate_cli::cmd::Level;
        match (self.quiet, self.verbose) {
            (true, _) => Level::Quiet,
            (_, true) => Level::Verbose,
            _ => Level::Normal,
        }
    }
}

/// Guard and named-delay values, for `simulate` and `run`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct Values {
    /// A guard's value, NAME=true|false. Every guard the chart uses needs one.
    #[arg(long = "guard", value_name = "NAME=BOOL")]
    pub guards: Vec<String>,
    /// A named delay's value, NAME=MS. Every named delay the chart uses needs one.
    #[arg(long = "delay", value_name = "NAME=MS")]
    pub delays: Vec<String>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Validate a chart (JSON or image) and print a one-line summary.
    Check {
        /// The chart file (`-`: stdin).
        file: PathBuf,
    },
    /// Run a chart on a virtual clock; inputs from the arguments or stdin, one per line.
    ///
    /// An input is an event type (GO), a JSON event ({"type":"GO","data":{...}}), or
    /// `@advance MS`, which moves the virtual clock forward and fires due timers. With the
    /// chart read from stdin (`-`), the inputs come from the arguments only.
    ///
    /// With --batch, runs many charts instead: one JSON case per stdin line,
    /// {"chart":{...},"guards":{"NAME":true},"delays":{"NAME":500},"inputs":["GO","@advance 500"]},
    /// and prints one line per case: {"trace":[the lines a single run prints]}, or {"error":"..."}
    /// when the chart is refused.
    Simulate {
        /// The chart file (`-`: stdin; not with --batch).
        #[arg(required_unless_present = "batch")]
        file: Option<PathBuf>,
        /// Run the cases read from stdin, one JSON object per line (see above).
        #[arg(long, conflicts_with_all = ["file", "guards", "delays", "events"])]
        batch: bool,
        #[command(flatten)]
        values: Values,
        /// Add the machine's context to every trace line (`"context"`, the chart's JSON
        /// context as `assign` actions change it); not part of XState's trace format.
        #[arg(long)]
        context: bool,
        /// A chart the machine may invoke, SRC=CHILD.json: an `invoke` with that `src`
        /// runs it as a child machine on the same clock (its actions traced as `id/name`).
        #[arg(
            long = "actor",
            value_name = "SRC=CHILD.json",
            conflicts_with = "batch"
        )]
        actors: Vec<String>,
        /// Input events; when none are given, they are read from stdin.
        events: Vec<String>,
    },
    /// Compile a JSON chart into a chart image that the core loads without allocating, or
    /// (with --rust) into a Rust module with the chart's tables as statics, or (with
    /// --native) into a Rust module with the chart's macrostep compiled to Rust.
    Compile {
        /// The JSON chart (`-`: stdin).
        file: PathBuf,
        /// Where to write the image or the Rust module (`-`: stdout, the summary then goes
        /// to stderr).
        #[arg(short, long)]
        output: PathBuf,
        /// Write a Rust module (`static` tables and `pub fn chart()`) instead of an image.
        #[arg(long, conflicts_with = "native")]
        rust: bool,
        /// Write a Rust module with the chart's macrostep as Rust code (a `NativeChart` and a
        /// `Machine` type for it; see docs/native.md). Charts using a feature the generator
        /// does not compile yet are refused, naming the feature and the state.
        #[arg(long)]
        native: bool,
    },
    /// Print a Mermaid stateDiagram-v2 or Graphviz DOT picture of a chart.
    Diagram {
        /// The chart file (`-`: stdin).
        file: PathBuf,
        /// The output format.
        #[arg(long, value_enum, default_value = "mermaid")]
        format: DiagramFormat,
    },
    /// Serve a bus: route events between the machines of every process that joins it.
    Hub {
        /// Serve the bus's and this process's metrics in the OpenMetrics text format at
        /// http://ADDR/metrics (e.g. 127.0.0.1:9464; see docs/operations.md).
        #[arg(long, value_name = "ADDR")]
        metrics: Option<String>,
        /// Take this nice value (-20 to 19; below 0 needs CAP_SYS_NICE or an RLIMIT_NICE
        /// that allows it, like systemd's Nice=): on a busy machine every message waits for
        /// the hub's turns, and -10 halved the median latency of the load test
        /// (else INTERSTATE_HUB_NICE; docs/performance.md).
        #[arg(long, value_name = "N", allow_negative_numbers = true)]
        nice: Option<i32>,
        #[command(flatten)]
        bus: BusOpt,
        #[command(flatten)]
        verbosity: Verbosity,
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
    /// Send one event to a machine as a request and print its reply's payload; fail (exit
    /// status 2) with the reason when no reply comes within the timeout, or the target is unknown,
    /// leaves the bus, or does not receive it.
    Request {
        /// The target machine id.
        target: String,
        /// The event name.
        event: String,
        /// The payload, as JSON.
        #[arg(long)]
        data: Option<String>,
        /// How long to wait for the reply (e.g. 500ms, 5s, 1m).
        #[arg(long, default_value = "5s")]
        timeout: String,
        /// Print the reply as a JSON object {"event","from","data"} instead of its payload.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        bus: BusOpt,
    },
    /// Publish an event to a topic: every machine subscribed with a matching filter gets it
    /// once (fails, naming them, for those it could not reach).
    Publish {
        /// The topic (`/`-separated levels, no wildcards), e.g. `plant/1/alarm`.
        topic: String,
        /// The event name.
        event: String,
        /// The payload, as JSON.
        #[arg(long)]
        data: Option<String>,
        /// Wait (up to 5 s) until at least N machines are subscribed to the topic.
        #[arg(long, value_name = "N")]
        wait_for: Option<usize>,
        #[command(flatten)]
        bus: BusOpt,
    },
    /// Print every publication to a topic matching a filter (`+`: one level, `#`: the rest),
    /// one line each (topic, event, payload), until Ctrl-C.
    Subscribe {
        /// The topic filter, e.g. `plant/+/alarm` or `plant/#`.
        filter: String,
        /// Print JSON lines ({"topic","event","from","data"}).
        #[arg(long)]
        json: bool,
        /// Stop after this many messages.
        #[arg(long)]
        count: Option<u64>,
        #[command(flatten)]
        bus: BusOpt,
    },
    /// Print the counters of the hub and of every process on the bus (messages per link
    /// and machine, failures by reason, queue depths, acknowledgement latency...).
    Stats {
        /// Print JSON ({"processes":[...],"missing":N}) instead of text.
        #[arg(long)]
        json: bool,
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
    /// List the buses in the bus directory: each one's hub pid and machine count.
    Buses {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
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
    ///
    /// Failures are shown as the xstate.error.delivery their sender gets: those the hub
    /// reports, and those a sending node found itself ("found by the sending node"; in
    /// --json, "found_by": "node").
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
    /// Serve a live web page of the bus: every machine with its process and chart, active
    /// states lit as they change, the event log, and a form to send events.
    ///
    /// Prints the page's address first. Loopback only unless --allow-remote; then the page
    /// needs the token printed with the address. See docs/inspector.md for the JSON endpoints.
    Inspect {
        /// The address to serve, IP:PORT (port 0: any free port).
        #[arg(long, value_name = "ADDR", default_value = interstate_cli::inspect::DEFAULT_LISTEN)]
        listen: String,
        /// Allow a --listen address other than loopback (access then needs the printed token).
        #[arg(long)]
        allow_remote: bool,
        /// Open the page in the desktop's browser (xdg-open).
        #[arg(long)]
        open: bool,
        #[command(flatten)]
        bus: BusOpt,
    },
    /// Run a JSON machine on the bus (built-in actions: log, raise, sendTo, cancel).
    ///
    /// Every guard the chart uses needs a --guard value and every named delay a --delay
    /// value; the machine does not start otherwise. Named actions other than the built-ins
    /// have no code here and do nothing (a note on stderr lists them).
    Run {
        /// The chart (JSON or image).
        file: PathBuf,
        /// The machine id on the bus (default: $INTERSTATE_MACHINE_ID, which a parent sets
        /// for a chart it invoked as a process).
        #[arg(long)]
        id: Option<String>,
        /// What an `invoke` of the src SRC runs (repeatable; a chart that invokes a src not
        /// given is refused). The child is the machine `ID/<invoke id>` on the same bus; its
        /// end is the parent's `xstate.done.actor.<id>` or `xstate.error.actor.<id>`:
        /// SRC=CHILD.json runs the chart as a child machine in this process;
        /// SRC=process:CHILD.json [ARG...] runs it in a process of its own
        /// (`interstate run CHILD.json --client ARG...`); SRC=exec:PROGRAM [ARG...] runs any
        /// program (words split at spaces; exit status 0 is done, with what it wrote to
        /// INTERSTATE_RESULT_FD).
        #[arg(long = "actor", value_name = "SRC=[process:|exec:]CHILD")]
        actors: Vec<String>,
        /// How long a child process has between SIGTERM and SIGKILL when its invoking state
        /// is left, in milliseconds.
        #[arg(long, value_name = "MS", default_value_t = 5000)]
        child_grace: u64,
        /// The most invoked children this process runs at once, of every kind (child
        /// charts and child processes; a start beyond it is the parent's
        /// `xstate.error.actor.<id>`).
        #[arg(long, value_name = "N", default_value_t = 256)]
        max_children: usize,
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
        /// Make the machine durable: journal its state in DIR after every step, and start
        /// from it when DIR has one (after a crash or a restart). Default:
        /// `INTERSTATE_STATE_DIR`, if set. See docs/persistence.md.
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// When a journal record is on disk for good: `fsync` (every step), `group` (64 steps
        /// or 5 ms), `group:STEPS:MS`, or `none` (left to the OS). Default:
        /// `INTERSTATE_DURABILITY`, else `fsync`.
        #[arg(long, value_name = "POLICY")]
        durability: Option<String>,
        /// Serve this process's metrics in the OpenMetrics text format at
        /// http://ADDR/metrics (e.g. 127.0.0.1:9465; see docs/operations.md).
        #[arg(long, value_name = "ADDR")]
        metrics: Option<String>,
        #[command(flatten)]
        values: Values,
        #[command(flatten)]
        bus: BusOpt,
        #[command(flatten)]
        verbosity: Verbosity,
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
        #[command(flatten)]
        verbosity: Verbosity,
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
        /// Split the pipeline over two buses standing for two hosts, joined through a
        /// mosquitto the demo starts (needs /usr/sbin/mosquitto; see docs/internode.md).
        #[arg(long, conflicts_with = "role")]
        internode: bool,
        #[command(flatten)]
        verbosity: Verbosity,
    },
    /// Measure bus latency and throughput between two processes, beside raw baselines.
    Bench {
        /// The transport to measure: unix, fifo, shm or all; or mqtt: two buses joined
        /// through a local mosquitto beside a raw MQTT ping-pong (2,000 round trips and
        /// 100,000 messages of 64 bytes unless given).
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
        /// Placement: split (this process on one CPU, its peers on another), same, none. With
        /// `--transport mqtt`: same (every process and the broker on one CPU) or else none.
        #[arg(long, default_value = "split")]
        pin: String,
    },
    /// (internal) A benchmark peer process.
    #[command(hide = true)]
    BenchPeer {
        /// Peer arguments.
        args: Vec<String>,
    },
    /// Join this bus to other hosts' buses through an MQTT broker (see docs/internode.md).
    Bridge {
        /// The broker: mqtt://HOST:PORT (port 1883 when not given), or mqtts://HOST:PORT for
        /// TLS (port 8883 when not given).
        #[arg(long)]
        mqtt: String,
        /// This node's name, unique among the nodes of the prefix (default: the host name).
        #[arg(long)]
        node: Option<String>,
        /// The topic prefix (default: interstate).
        #[arg(long)]
        prefix: Option<String>,
        /// USER:PASSWORD for the broker.
        #[arg(long)]
        credentials: Option<String>,
        /// How long a message to another node waits for that node's answer before it fails
        /// as node-unreachable (default 60000).
        #[arg(long, value_name = "MS")]
        ack_timeout_ms: Option<u64>,
        /// How long another node whose broker connection ended (its last will) is waited
        /// for before its machines leave this bus and what waits for it fails (default
        /// 12000). A broker restart shorter than half of it fails nothing. Use the same on
        /// every node.
        #[arg(long, value_name = "MS")]
        node_grace_ms: Option<u64>,
        /// Host a JSON machine in the bridge's own process, as ID=CHART.json (repeatable;
        /// built-in actions as in `run`: log, raise, sendTo, cancel). Its messages to and
        /// from machines of other nodes go straight between this process and the broker,
        /// without crossing the hub; it is on the bus (and in `ps`) as any machine.
        #[arg(long = "machine", value_name = "ID=CHART.json")]
        machines: Vec<String>,
        #[command(flatten)]
        values: Values,
        #[command(flatten)]
        security: interstate_cli::cmd::bridge::SecurityArgs,
        #[command(flatten)]
        bus: BusOpt,
    },
    /// Put a device on a serial line on the bus (COBS frames over the tty, see docs/embedded.md).
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
    /// Print a shell completion script: `interstate completions bash > interstate.bash`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `interstate man | man -l -`.
    Man,
}

/// `diagram --format`: the facade's picture formats as command-line values.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum DiagramFormat {
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
pub struct BusOpt {
    /// The bus name (default: $INTERSTATE_BUS, else "default").
    #[arg(long)]
    pub bus: Option<String>,
}

impl BusOpt {
    pub fn args(&self) -> interstate_cli::cmd::bus::BusArgs {
        interstate_cli::cmd::bus::BusArgs {
            bus: self.bus.clone(),
        }
    }
}

//! The seed's data pipeline, for real: three processes, three statecharts, one bus.
//!
//!     cargo run --example pipeline                          # sample files, a temp database
//!     cargo run --example pipeline -- --input DIR --db out.sqlite3
//!     cargo run --example pipeline -- processor             # just one role (joins a bus)
//!     cargo run --example pipeline -- storage --db out.sqlite3
//!
//! - The **ingester** (no role argument) serves the bus if no hub is running, starts the
//!   `processor` and `storage` roles as child processes of the same binary, reads the files of
//!   the input directory and sends each as `PROCESS_DATA {file, data}` to `processor`, a few
//!   at a time. Its chart counts `FILE_COMPLETE`s and reaches its final state when every file
//!   is done; it then sends `STOP` to the others, waits for them to exit and prints a summary.
//! - The **processor** uppercases the text, counts words and lines, and sends
//!   `SAVE_DATA {file, data, words, lines}` to `storage`.
//! - The **storage** writes one row per file into a SQLite database (`--db PATH`, by default a
//!   new file in the temp directory, which is kept) and replies `FILE_COMPLETE {file, words}`
//!   to `ingester`.
//!
//! A file that cannot go through (too large for one message, a failed insert) comes back as
//! `FILE_FAILED {file, error}`; the pipeline still finishes, and exits 1.
//!
//! The bus is `$INTERSTATE_BUS` (default: `pipeline`), in `$INTERSTATE_DIR` or the default bus
//! directory.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode};
use std::rc::Rc;
use std::time::{Duration, Instant};

use interstate::bus::{add_json_machine, Node, NodeConfig, Role};
use interstate::Behaviors;
use serde::{Deserialize, Serialize};

const INGESTER_CHART: &str = r#"{
  "id": "ingester",
  "initial": "waiting",
  "states": {
    "waiting": { "on": { "START": "ingesting" } },
    "ingesting": {
      "entry": "sendFiles",
      "always": { "guard": "allDone", "target": "done" },
      "on": {
        "FILE_COMPLETE": { "actions": ["countCompletion", "sendFiles"] },
        "FILE_FAILED": { "actions": ["countFailure", "sendFiles"] },
        "xstate.error.delivery": { "target": "broken", "actions": "onDeliveryError" }
      }
    },
    "done": { "type": "final", "entry": "stopOthers" },
    "broken": { "type": "final", "entry": "stopOthers" }
  }
}"#;

const PROCESSOR_CHART: &str = r#"{
  "id": "processor",
  "initial": "ready",
  "states": {
    "ready": {
      "on": {
        "PROCESS_DATA": { "actions": "transform" },
        "xstate.error.delivery": { "actions": "onDeliveryError" },
        "STOP": "stopped"
      }
    },
    "stopped": { "type": "final" }
  }
}"#;

const STORAGE_CHART: &str = r#"{
  "id": "storage",
  "initial": "ready",
  "states": {
    "ready": {
      "on": {
        "SAVE_DATA": { "actions": "store" },
        "xstate.error.delivery": { "actions": "onDeliveryError" },
        "STOP": "stopped"
      }
    },
    "stopped": { "type": "final" }
  }
}"#;

/// Files in flight at once (each is one message to the processor).
const WINDOW: usize = 4;
/// The largest `PROCESS_DATA` payload: a hosted machine's outbox holds 16 KiB.
const MAX_PAYLOAD: usize = 12 * 1024;
const JOIN_LIMIT: Duration = Duration::from_secs(20);
const RUN_LIMIT: Duration = Duration::from_secs(60);

#[derive(Serialize, Deserialize, Debug)]
struct ProcessData {
    file: String,
    data: String,
}

#[derive(Serialize, Deserialize, Debug)]
struct SaveData {
    file: String,
    data: String,
    words: u64,
    lines: u64,
}

#[derive(Serialize, Deserialize, Debug)]
struct FileComplete {
    file: String,
    words: u64,
}

#[derive(Serialize, Deserialize, Debug)]
struct FileFailed {
    file: String,
    error: String,
}

type Error = Box<dyn std::error::Error>;

fn config() -> NodeConfig {
    let bus = std::env::var("INTERSTATE_BUS")
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| "pipeline".into());
    let mut c = NodeConfig::new(&bus);
    c.role = Role::Auto;
    c
}

/// `--name VALUE` from the command line.
fn option(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn default_db() -> PathBuf {
    std::env::temp_dir().join(format!(
        "interstate-pipeline-{}.sqlite3",
        std::process::id()
    ))
}

/// Runs a role's node until its machine reaches a final state.
fn serve_until_done(node: &mut Node, id: &str) -> Result<(), Error> {
    let stopped = node.run_until(Duration::from_secs(600), |n| {
        n.machine(id).is_some_and(|m| m.is_done())
    })?;
    if !stopped {
        return Err(format!("{id} was not stopped within 10 minutes").into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// processor

fn processor() -> Result<(), Error> {
    let mut node = Node::new(config())?;
    let behaviors = Behaviors::new()
        .action("transform", |cx| {
            let job: ProcessData = match serde_json::from_slice(cx.payload()) {
                Ok(j) => j,
                Err(e) => {
                    eprintln!("processor: bad PROCESS_DATA: {e}");
                    return;
                }
            };
            let out = SaveData {
                words: job.data.split_whitespace().count() as u64,
                lines: job.data.lines().count() as u64,
                data: job.data.to_uppercase(),
                file: job.file,
            };
            println!(
                "processor: {} -> {} words, {} lines",
                out.file, out.words, out.lines
            );
            let body = serde_json::to_vec(&out).unwrap_or_default();
            if let Err(e) = cx.send("storage", "SAVE_DATA", &body) {
                let failed = FileFailed {
                    file: out.file,
                    error: format!("processor could not forward it: {e}"),
                };
                let body = serde_json::to_vec(&failed).unwrap_or_default();
                let _ = cx.send("ingester", "FILE_FAILED", &body);
            }
        })
        .action("onDeliveryError", |cx| {
            eprintln!(
                "processor: delivery failed: {}",
                String::from_utf8_lossy(cx.payload())
            );
        });
    add_json_machine(&mut node, "processor", PROCESSOR_CHART, behaviors)?;
    println!("processor: joined bus '{}'", node.config().bus);
    serve_until_done(&mut node, "processor")?;
    println!("processor: stopped");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// storage

fn open_db(path: &Path) -> rusqlite::Result<rusqlite::Connection> {
    let db = rusqlite::Connection::open(path)?;
    db.execute_batch(
        "CREATE TABLE IF NOT EXISTS files (
             file       TEXT PRIMARY KEY,
             words      INTEGER NOT NULL,
             lines      INTEGER NOT NULL,
             bytes      INTEGER NOT NULL,
             data       TEXT NOT NULL,
             stored_by  INTEGER NOT NULL,
             stored_at  TEXT NOT NULL DEFAULT (datetime('now'))
         );",
    )?;
    Ok(db)
}

fn storage(args: &[String]) -> Result<(), Error> {
    let path = option(args, "--db")
        .map(PathBuf::from)
        .unwrap_or_else(default_db);
    let db = open_db(&path).map_err(|e| format!("opening {}: {e}", path.display()))?;
    let mut node = Node::new(config())?;
    let behaviors = Behaviors::new()
        .action("store", move |cx| {
            let row: SaveData = match serde_json::from_slice(cx.payload()) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("storage: bad SAVE_DATA: {e}");
                    return;
                }
            };
            // A message sent again after a hub restart replaces its row: storing is idempotent.
            let inserted = db.execute(
                "INSERT OR REPLACE INTO files (file, words, lines, bytes, data, stored_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                rusqlite::params![
                    row.file,
                    row.words,
                    row.lines,
                    row.data.len() as u64,
                    row.data,
                    std::process::id()
                ],
            );
            let (event, body) = match inserted {
                Ok(_) => {
                    println!("storage: saved {} ({} words)", row.file, row.words);
                    let done = FileComplete {
                        file: row.file,
                        words: row.words,
                    };
                    ("FILE_COMPLETE", serde_json::to_vec(&done))
                }
                Err(e) => {
                    eprintln!("storage: could not save {}: {e}", row.file);
                    let failed = FileFailed {
                        file: row.file,
                        error: format!("insert failed: {e}"),
                    };
                    ("FILE_FAILED", serde_json::to_vec(&failed))
                }
            };
            if let Err(e) = cx.send("ingester", event, &body.unwrap_or_default()) {
                eprintln!("storage: could not reply to the ingester: {e}");
            }
        })
        .action("onDeliveryError", |cx| {
            eprintln!(
                "storage: delivery failed: {}",
                String::from_utf8_lossy(cx.payload())
            );
        });
    add_json_machine(&mut node, "storage", STORAGE_CHART, behaviors)?;
    println!(
        "storage: joined bus '{}', writing to {}",
        node.config().bus,
        path.display()
    );
    serve_until_done(&mut node, "storage")?;
    println!("storage: stopped");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// ingester

/// A file name and its encoded `PROCESS_DATA` payload.
type Job = (String, Vec<u8>);

#[derive(Default)]
struct Progress {
    /// Files not sent yet.
    queue: VecDeque<Job>,
    total: usize,
    in_flight: usize,
    completed: usize,
    failed: Vec<String>,
    words: u64,
    broken: Option<String>,
}

const SAMPLES: &[(&str, &str)] = &[
    (
        "alpha.txt",
        "Statecharts in separate processes\nexchange events over one bus.\n",
    ),
    (
        "beta.txt",
        "The ingester reads files, the processor transforms them,\nand storage keeps a row per file.\n",
    ),
    ("gamma.txt", "three words here\n"),
    (
        "delta.txt",
        "Every message to another process is acknowledged end to end.\nNothing is lost silently.\n",
    ),
    ("epsilon.txt", ""),
];

/// A new temp directory with the sample files.
fn sample_input() -> Result<PathBuf, Error> {
    let dir =
        std::env::temp_dir().join(format!("interstate-pipeline-input-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    for (name, text) in SAMPLES {
        std::fs::write(dir.join(name), text)?;
    }
    Ok(dir)
}

/// The `PROCESS_DATA` payloads of the regular files in `dir`, sorted by name; files too large
/// for one message are reported and left out.
fn read_input(dir: &Path) -> Result<(Vec<Job>, Vec<String>), Error> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("reading {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    names.sort();
    let mut jobs = Vec::new();
    let mut skipped = Vec::new();
    for path in names {
        let file = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let job = ProcessData {
            file: file.clone(),
            data: String::from_utf8_lossy(&bytes).into_owned(),
        };
        let payload = serde_json::to_vec(&job)?;
        if payload.len() > MAX_PAYLOAD {
            println!(
                "ingester: skipping {file}: {} bytes is more than one message carries ({MAX_PAYLOAD})",
                payload.len()
            );
            skipped.push(file);
            continue;
        }
        jobs.push((file, payload));
    }
    Ok((jobs, skipped))
}

fn ingester_behaviors(progress: &Rc<RefCell<Progress>>) -> Behaviors {
    let (p1, p2, p3, p4, p5) = (
        progress.clone(),
        progress.clone(),
        progress.clone(),
        progress.clone(),
        progress.clone(),
    );
    Behaviors::new()
        .action("sendFiles", move |cx| {
            let mut p = p1.borrow_mut();
            while p.in_flight < WINDOW {
                let Some((file, payload)) = p.queue.front() else {
                    break;
                };
                match cx.send("processor", "PROCESS_DATA", payload) {
                    Ok(()) => {
                        println!("ingester: sent {file} ({} bytes)", payload.len());
                        p.queue.pop_front();
                        p.in_flight += 1;
                    }
                    // The outbox is full: the rest goes with the next completion.
                    Err(_) if p.in_flight > 0 => break,
                    Err(e) => {
                        let file = file.clone();
                        println!("ingester: cannot send {file}: {e}");
                        p.queue.pop_front();
                        p.failed.push(file);
                    }
                }
            }
        })
        .action("countCompletion", move |cx| {
            let mut p = p2.borrow_mut();
            p.in_flight = p.in_flight.saturating_sub(1);
            p.completed += 1;
            match serde_json::from_slice::<FileComplete>(cx.payload()) {
                Ok(done) => {
                    p.words += done.words;
                    println!(
                        "ingester: {} complete ({}/{})",
                        done.file, p.completed, p.total
                    );
                }
                Err(e) => println!("ingester: a completion with a bad payload: {e}"),
            }
        })
        .action("countFailure", move |cx| {
            let mut p = p3.borrow_mut();
            p.in_flight = p.in_flight.saturating_sub(1);
            let failed: Result<FileFailed, _> = serde_json::from_slice(cx.payload());
            let (file, error) = match failed {
                Ok(f) => (f.file, f.error),
                Err(e) => ("?".into(), format!("a failure with a bad payload: {e}")),
            };
            println!("ingester: {file} failed: {error}");
            p.failed.push(file);
        })
        .guard("allDone", move |_| {
            let p = p4.borrow();
            p.completed + p.failed.len() >= p.total
        })
        .action("onDeliveryError", move |cx| {
            let why = String::from_utf8_lossy(cx.payload()).into_owned();
            println!("ingester: delivery failed: {why}");
            p5.borrow_mut().broken = Some(why);
        })
        .action("stopOthers", |cx| {
            for other in ["processor", "storage"] {
                if let Err(e) = cx.send(other, "STOP", b"") {
                    println!("ingester: could not stop {other}: {e}");
                }
            }
        })
}

/// Waits for a child to exit; kills it after `limit`. Returns whether it exited successfully.
fn reap(node: &mut Node, name: &str, child: &mut Child, limit: Duration) -> bool {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                if !status.success() {
                    println!("ingester: {name} exited with {status}");
                }
                return status.success();
            }
            Ok(None) if start.elapsed() < limit => {
                let _ = node.run_once(Some(Duration::from_millis(20)));
            }
            _ => {
                println!("ingester: {name} did not exit; killing it");
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

/// Children that are killed if the ingester leaves early.
struct Children(Vec<(&'static str, Child)>);

impl Drop for Children {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            if c.try_wait().ok().flatten().is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

fn ingester(args: &[String]) -> Result<(), Error> {
    let (input, temp_input) = match option(args, "--input") {
        Some(d) => (PathBuf::from(d), false),
        None => (sample_input()?, true),
    };
    let db = option(args, "--db")
        .map(PathBuf::from)
        .unwrap_or_else(default_db);
    let (jobs, skipped) = read_input(&input)?;
    println!(
        "ingester: {} files from {}{}",
        jobs.len(),
        input.display(),
        if temp_input { " (samples)" } else { "" }
    );

    let mut node = Node::new(config())?;
    let progress = Rc::new(RefCell::new(Progress {
        total: jobs.len(),
        queue: jobs.into(),
        failed: skipped.clone(),
        ..Progress::default()
    }));
    progress.borrow_mut().total += skipped.len();
    add_json_machine(
        &mut node,
        "ingester",
        INGESTER_CHART,
        ingester_behaviors(&progress),
    )?;
    println!(
        "ingester: on bus '{}' ({})",
        node.config().bus,
        if node.is_hub() {
            "serving as hub"
        } else {
            "client"
        }
    );

    let exe = std::env::current_exe()?;
    let spawn = |role: &str, extra: &[&std::ffi::OsStr]| {
        Command::new(&exe)
            .arg(role)
            .args(extra)
            .env("INTERSTATE_BUS", &node.config().bus)
            .env("INTERSTATE_DIR", &node.config().dir)
            .spawn()
    };
    let mut children = Children(Vec::new());
    children.0.push(("processor", spawn("processor", &[])?));
    children.0.push((
        "storage",
        spawn("storage", &["--db".as_ref(), db.as_os_str()])?,
    ));
    let joined = node.run_until(JOIN_LIMIT, |n| {
        let r = n.registry();
        r.contains("processor") && r.contains("storage")
    })?;
    if !joined {
        return Err("the processor and storage did not join the bus within 20 s".into());
    }

    let started = Instant::now();
    node.send_local("ingester", "START", &[])?;
    let finished = node.run_until(RUN_LIMIT, |n| {
        n.machine("ingester").is_some_and(|m| m.is_done())
    })?;
    // The final state's entry sent STOP to both; give them time to get it and exit.
    let mut clean = true;
    for (name, child) in &mut children.0 {
        clean &= reap(&mut node, name, child, Duration::from_secs(10));
    }
    if temp_input {
        let _ = std::fs::remove_dir_all(&input);
    }
    if !finished {
        return Err(format!("the pipeline did not finish within {RUN_LIMIT:?}").into());
    }

    let p = progress.borrow();
    let rows: i64 = rusqlite::Connection::open(&db)
        .and_then(|c| c.query_row("SELECT count(*) FROM files", [], |r| r.get(0)))
        .map_err(|e| format!("reading back {}: {e}", db.display()))?;
    println!(
        "ingester: all {} files done in {:.0?} ({} complete, {} failed), {} words",
        p.total,
        started.elapsed(),
        p.completed,
        p.failed.len(),
        p.words
    );
    println!("pipeline: database {} has {rows} rows", db.display());
    if let Some(why) = &p.broken {
        return Err(format!("a message was not delivered: {why}").into());
    }
    if !p.failed.is_empty() {
        return Err(format!("files not stored: {}", p.failed.join(", ")).into());
    }
    if !clean {
        return Err("a child process did not stop cleanly".into());
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("processor") => processor(),
        Some("storage") => storage(&args),
        _ => ingester(&args),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

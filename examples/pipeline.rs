//! The seed's data pipeline, for real: three processes, three statecharts, one bus.
//!
//!     cargo run --example pipeline                          # sample files, a database removed at the end
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
//!   new file in the temp directory, which the ingester removes at the end, as it does the
//!   sample files: a run without `--db` leaves nothing in the temp directory) and replies
//!   `FILE_COMPLETE {file, words}` to `ingester`.
//!
//! A file that cannot go through (too large for one message, a failed insert) comes back as
//! `FILE_FAILED {file, error}`; the pipeline still finishes, and exits 1.
//!
//! The bus is `$INTERSTATE_BUS` (default: `pipeline`), in `$INTERSTATE_DIR` or the default bus
//! directory.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode};
use std::rc::Rc;
use std::time::{Duration, Instant};

use interstate::bus::{add_json_machine, Node, NodeConfig, Role};

// The charts, the messages and the ingester's and processor's actions are the ones
// `interstate demo` runs; only the storage (SQLite here) and the process handling are this
// example's own.
#[path = "../cli/src/demo/pipeline.rs"]
mod pipeline;

use pipeline::{
    Job, Progress, SaveData, Say, INGESTER_CHART, PROCESSOR_CHART, SAMPLES, STORAGE_CHART, WINDOW,
};

const JOIN_LIMIT: Duration = Duration::from_secs(20);
const RUN_LIMIT: Duration = Duration::from_secs(60);

fn no_status(_: &str) {}

const SAY_INGESTER: Say = Say {
    prefix: "ingester: ",
    status: no_status,
};
const SAY_PROCESSOR: Say = Say {
    prefix: "processor: ",
    status: no_status,
};
const SAY_STORAGE: Say = Say {
    prefix: "storage: ",
    status: no_status,
};

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
    let behaviors = pipeline::processor_behaviors(SAY_PROCESSOR);
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
    // Without --db (a role run by hand), the database is temporary too.
    let mut temporary = Temporary(Vec::new());
    let path = match option(args, "--db") {
        Some(p) => PathBuf::from(p),
        None => {
            let path = default_db();
            temporary.0.push(path.clone());
            path
        }
    };
    let db = open_db(&path).map_err(|e| format!("opening {}: {e}", path.display()))?;
    let mut node = Node::new(config())?;
    // A message sent again after a hub restart replaces its row: storing is idempotent.
    let store_row = move |row: &SaveData| {
        db.execute(
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
        )
        .map(|_| ())
        .map_err(|e| format!("insert failed: {e}"))
    };
    let behaviors = pipeline::storage_behaviors(store_row, SAY_STORAGE);
    add_json_machine(&mut node, "storage", STORAGE_CHART, behaviors)?;
    println!(
        "storage: joined bus '{}', writing to {}",
        node.config().bus,
        path.display()
    );
    serve_until_done(&mut node, "storage")?;
    drop(node);
    if temporary.0.is_empty() {
        println!("storage: stopped");
    } else {
        println!("storage: stopped; its database is removed (pass --db PATH to keep one)");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// ingester

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
        let data = String::from_utf8_lossy(&bytes).into_owned();
        match pipeline::job(file.clone(), data, SAY_INGESTER)? {
            Some(job) => jobs.push(job),
            None => skipped.push(file),
        }
    }
    Ok((jobs, skipped))
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
/// Files and directories this run made in the temp directory, removed when it ends, however
/// it ends.
struct Temporary(Vec<PathBuf>);

impl Drop for Temporary {
    fn drop(&mut self) {
        for path in &self.0 {
            if path.is_dir() {
                let _ = std::fs::remove_dir_all(path);
            } else {
                let _ = std::fs::remove_file(path);
                // SQLite's side files, should a crash have left them.
                for side in ["-journal", "-wal", "-shm"] {
                    let mut name = path.clone().into_os_string();
                    name.push(side);
                    let _ = std::fs::remove_file(name);
                }
            }
        }
    }
}

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
    let mut temporary = Temporary(Vec::new());
    let (input, temp_input) = match option(args, "--input") {
        Some(d) => (PathBuf::from(d), false),
        None => {
            let dir = sample_input()?;
            temporary.0.push(dir.clone());
            (dir, true)
        }
    };
    let (db, temp_db) = match option(args, "--db") {
        Some(p) => (PathBuf::from(p), false),
        None => {
            let path = default_db();
            temporary.0.push(path.clone());
            (path, true)
        }
    };
    let (jobs, skipped) = read_input(&input)?;
    println!(
        "ingester: {} files from {}{}",
        jobs.len(),
        input.display(),
        if temp_input { " (samples)" } else { "" }
    );

    let mut node = Node::new(config())?;
    let progress = Rc::new(RefCell::new(Progress {
        window: WINDOW,
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
        pipeline::ingester_behaviors(&progress, 0, SAY_INGESTER),
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
    println!(
        "pipeline: database {} has {rows} rows{}",
        db.display(),
        if temp_db {
            " (removed now: pass --db PATH to keep one)"
        } else {
            ""
        }
    );
    drop(temporary);
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
    // The node's diagnostics (connections, reconnects) on stderr, as `interstate` prints them.
    let _ = interstate::bus::logging::install(log::LevelFilter::Info);
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

//! `interstate demo`: the seed's pipeline, out of the box, under the supervisor.
//!
//! Four processes of this very program on a private bus (`demo-<pid>`, in a new temporary
//! directory that is removed at the end):
//!
//! - **monitor** (`interstate demo --role monitor`) prints every message crossing the hub;
//!   ready (sd_notify `READY=1`) once its subscription is in place, so it sees everything;
//! - **storage** appends one JSON line per file to a store file (written and synced for
//!   real), and answers `FILE_COMPLETE {file, words}` to the ingester;
//! - **processor** uppercases each file, counts words and lines, and sends `SAVE_DATA` to
//!   storage;
//! - **ingester** (the app's main process) reads the input files, sends each as
//!   `PROCESS_DATA {file, data}` to the processor, a few at a time, and finishes when every
//!   file is stored; its final state sends `STOP` to the others.
//!
//! storage and processor are ready when their machine ids are registered, and the ingester
//! starts after the three others are ready: no sleeps. When the ingester finishes, the
//! supervisor stops the rest in reverse order and the demo prints what was stored.
//!
//! The store is JSON lines rather than the `pipeline` example's SQLite, to keep a C library
//! out of the `interstate` binary.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use interstate_core::wire::Frame;
use interstate_platform::supervisor::{ChildSpec, Readiness, Restart, SupervisorConfig};
use serde::{Deserialize, Serialize};

use crate::manifest::Manifest;
use crate::outln;
use interstate::bus::{add_json_machine, Node, NodeConfig, Role};

pub mod internode;
pub mod pipeline;

pub use pipeline::SAMPLES;
use pipeline::{Job, Progress, SaveData, Say, INGESTER_CHART, PROCESSOR_CHART, STORAGE_CHART};

/// How the demo's roles report: plain lines (the supervisor prefixes them with the role) and
/// the supervisor's status block.
const SAY: Say = Say { prefix: "", status };

/// One line of the store file.
#[derive(Serialize, Deserialize, Debug)]
pub struct Record {
    /// The input file's name.
    pub file: String,
    /// Its words.
    pub words: u64,
    /// Its lines.
    pub lines: u64,
    /// The transformed text.
    pub data: String,
    /// The storage process's pid.
    pub stored_by: u32,
}

/// A `STATUS=` line for the supervisor's status block (nothing without `NOTIFY_SOCKET`).
fn status(text: &str) {
    interstate_platform::notify::status(text).ok();
}

fn node() -> Result<Node, String> {
    let mut c = NodeConfig::from_env();
    c.role = Role::Client;
    Node::new(c).map_err(|e| e.to_string())
}

/// Runs the node until its machine is done or SIGINT/SIGTERM, then until what it sent is
/// acknowledged (a bounded wait).
fn serve(node: &mut Node, id: &str) -> Result<(), String> {
    let stop = crate::cmd::bus::stop_flag()?;
    while !stop.load(Ordering::Relaxed) && !node.machine(id).is_some_and(|m| m.is_done()) {
        node.run_once(Some(Duration::from_millis(200)))
            .map_err(|e| e.to_string())?;
    }
    settle(node)
}

fn settle(node: &mut Node) -> Result<(), String> {
    node.run_until(Duration::from_secs(5), |n| n.unacknowledged() == 0)
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// `interstate demo --role processor`.
pub fn processor() -> Result<(), String> {
    let mut node = node()?;
    add_json_machine(
        &mut node,
        "processor",
        PROCESSOR_CHART,
        pipeline::processor_behaviors(SAY),
    )
    .map_err(|e| e.to_string())?;
    // A role's own lines never stop its work: a closed stdout only drops them.
    let _ = outln!("machine 'processor' registered, state 'ready'");
    serve(&mut node, "processor")
}

/// `interstate demo --role storage [--store FILE]` (default:
/// `$TMPDIR/interstate-<bus>-store.jsonl`, removed when the role stops: an app run from a
/// manifest leaves nothing in the temp directory; give `--store` to keep the records).
pub fn storage(store: Option<&Path>) -> Result<(), String> {
    use std::io::Write;
    let mut default = PathBuf::new();
    let store = match store {
        Some(s) => s,
        None => {
            let bus = interstate_platform::busdir::default_bus();
            default = std::env::temp_dir().join(format!("interstate-{bus}-store.jsonl"));
            &default
        }
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(store)
        .map_err(|e| format!("opening the store {}: {e}", store.display()))?;
    let mut node = node()?;
    let store_row = move |row: &SaveData| {
        let record = Record {
            file: row.file.clone(),
            words: row.words,
            lines: row.lines,
            data: row.data.clone(),
            stored_by: std::process::id(),
        };
        let mut line = serde_json::to_vec(&record).map_err(|e| e.to_string())?;
        line.push(b'\n');
        // A record is on disk before the ingester hears it is complete.
        file.write_all(&line)
            .and_then(|()| file.sync_data())
            .map_err(|e| format!("write failed: {e}"))
    };
    let behaviors = pipeline::storage_behaviors(store_row, SAY);
    add_json_machine(&mut node, "storage", STORAGE_CHART, behaviors).map_err(|e| e.to_string())?;
    let temporary = store == default.as_path();
    let _ = outln!(
        "machine 'storage' registered, state 'ready', writing to {}{}",
        store.display(),
        if temporary {
            " (removed when it stops; pass --store FILE to keep it)"
        } else {
            ""
        }
    );
    let served = serve(&mut node, "storage");
    if temporary {
        let _ = std::fs::remove_file(store);
    }
    served
}

/// `interstate demo --role monitor`: every message crossing the hub, one short line each.
/// Tells its supervisor `READY=1` once the hub has its subscription.
pub fn monitor() -> Result<(), String> {
    let stop = crate::cmd::bus::stop_flag()?;
    let mut node = node()?;
    node.subscribe_monitor();
    // The port's registration is answered after the hub took the subscription (same link,
    // in order): from then on every message is seen.
    node.open_port(&format!("demo-monitor.{}", std::process::id()))
        .map_err(|e| e.to_string())?;
    interstate_platform::notify::ready_with_status("watching the bus").ok();
    // The monitor's lines are its work: it ends (quietly) when nobody reads them.
    outln!("watching every message on the bus")?;
    while !stop.load(Ordering::Relaxed) {
        node.run_once(Some(Duration::from_millis(200)))
            .map_err(|e| e.to_string())?;
        while let Some(body) = node.next_monitored() {
            if let Ok(Frame::Deliver(d)) = Frame::decode(&body) {
                let data = brief(d.payload);
                let sep = if data.is_empty() { "" } else { "  " };
                outln!("{} -> {}  {}{sep}{data}", d.from, d.to, d.event)?;
            }
        }
    }
    Ok(())
}

/// A payload in at most 60 characters.
fn brief(payload: &[u8]) -> String {
    let text = String::from_utf8_lossy(payload).replace('\n', "\\n");
    if text.chars().count() <= 60 {
        text
    } else {
        let cut: String = text.chars().take(57).collect();
        format!("{cut}...")
    }
}

fn read_input(dir: Option<&Path>) -> Result<Vec<Job>, String> {
    let files: Vec<(String, String)> = match dir {
        None => SAMPLES
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect(),
        Some(dir) => {
            let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(|e| format!("reading {}: {e}", dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            paths.sort();
            let mut v = Vec::new();
            for p in paths {
                let bytes = std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                v.push((name, String::from_utf8_lossy(&bytes).into_owned()));
            }
            v
        }
    };
    let mut jobs = Vec::new();
    for (file, data) in files {
        if let Some(job) = pipeline::job(file, data, SAY).map_err(|e| e.to_string())? {
            jobs.push(job);
        }
    }
    Ok(jobs)
}

/// `interstate demo --role ingester [--input DIR] [--pace MS]` (built-in samples without
/// `--input`; with a pace, one file at a time and a pause after each, to watch it flow).
pub fn ingester(input: Option<&Path>, pace: Duration) -> Result<(), String> {
    let jobs = read_input(input)?;
    let mut node = node()?;
    let total = jobs.len();
    let progress = Rc::new(RefCell::new(Progress {
        window: if pace.is_zero() { pipeline::WINDOW } else { 1 },
        total,
        queue: jobs.into(),
        ..Progress::default()
    }));
    add_json_machine(
        &mut node,
        "ingester",
        INGESTER_CHART,
        pipeline::ingester_behaviors(&progress, pace.as_millis() as u64, SAY),
    )
    .map_err(|e| e.to_string())?;
    let _ = outln!(
        "{total} files from {}",
        input.map_or("the built-in samples".into(), |d| d.display().to_string())
    );
    // The supervisor started this process after both were ready; a check costs nothing.
    let joined = node
        .run_until(Duration::from_secs(10), |n| {
            let r = n.registry();
            r.contains("processor") && r.contains("storage")
        })
        .map_err(|e| e.to_string())?;
    if !joined {
        return Err("the processor and storage are not on the bus".into());
    }
    let started = Instant::now();
    node.send_local("ingester", "START", &[])
        .map_err(|e| e.to_string())?;
    let finished = node
        .run_until(Duration::from_secs(30), |n| {
            n.machine("ingester").is_some_and(|m| m.is_done())
        })
        .map_err(|e| e.to_string())?;
    settle(&mut node)?;
    if !finished {
        return Err("the pipeline did not finish within 30 s".into());
    }
    let p = progress.borrow();
    let _ = outln!(
        "{} files in {:.0?}: {} stored, {} failed, {} words",
        p.total,
        started.elapsed(),
        p.completed,
        p.failed.len(),
        p.words
    );
    if let Some(why) = &p.broken {
        return Err(format!("a message was not delivered: {why}"));
    }
    if !p.failed.is_empty() {
        return Err(format!("files not stored: {}", p.failed.join(", ")));
    }
    Ok(())
}

/// The demo's processes, as a manifest would list them.
/// `pace` is the ingester's pause between files, in milliseconds.
pub fn manifest(exe: &Path, bus: &str, input: &Path, store: &Path, pace: u64) -> Manifest {
    let pace = pace.to_string();
    let role = |name: &str, args: &[&std::ffi::OsStr]| {
        // `interstate demo --role NAME ...`
        ChildSpec::new(name, exe)
            .args(["demo", "--role", name])
            .args(args.iter().copied())
    };
    let processes = vec![
        role("monitor", &[]).readiness(Readiness::Notify),
        role("storage", &["--store".as_ref(), store.as_os_str()]).provides("storage"),
        role("processor", &[])
            .provides("processor")
            .after("storage"),
        {
            let mut i = role(
                "ingester",
                &[
                    "--input".as_ref(),
                    input.as_os_str(),
                    "--pace".as_ref(),
                    pace.as_ref(),
                ],
            )
            .provides("ingester")
            .restart(Restart::Never)
            .after("monitor")
            .after("processor")
            .after("storage");
            i.main = true;
            i
        },
    ];
    Manifest {
        bus: bus.to_string(),
        supervisor: SupervisorConfig {
            grace: Duration::from_secs(3),
            ready_timeout: Duration::from_secs(15),
            ..SupervisorConfig::default()
        },
        processes,
        metrics: None,
    }
}

/// What the store file holds: the last record of each file, by name.
pub fn read_store(store: &Path) -> Result<BTreeMap<String, Record>, String> {
    let text =
        std::fs::read_to_string(store).map_err(|e| format!("reading {}: {e}", store.display()))?;
    let mut records = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let r: Record = serde_json::from_str(line)
            .map_err(|e| format!("{}: a bad record: {e}", store.display()))?;
        records.insert(r.file.clone(), r);
    }
    Ok(records)
}

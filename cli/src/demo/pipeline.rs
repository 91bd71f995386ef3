//! The pipeline itself, shared by `interstate demo` (this crate) and `examples/pipeline.rs`
//! (which includes this file with `#[path]`): the three charts, the messages between them,
//! the sample input and the ingester's and processor's behaviors. Only the storage differs
//! (JSON lines here, SQLite in the example), and how the processes are started.
//!
//! Uses only `std`, `serde`, `serde_json` and the facade, so that both crates compile it.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use interstate::Behaviors;
use serde::{Deserialize, Serialize};

/// The ingester: sends files to the processor, a window at a time; after each completion it
/// pauses for the named delay `pace` (0 ms: none), then sends more. Final when every file is
/// complete or failed, or when a message could not be delivered.
pub const INGESTER_CHART: &str = r#"{
  "id": "ingester",
  "initial": "waiting",
  "states": {
    "waiting": { "on": { "START": "ingesting" } },
    "ingesting": {
      "initial": "sending",
      "always": { "guard": "allDone", "target": "done" },
      "states": {
        "sending": {
          "entry": "sendFiles",
          "on": {
            "FILE_COMPLETE": { "target": "pausing", "actions": "countCompletion" },
            "FILE_FAILED": { "target": "pausing", "actions": "countFailure" }
          }
        },
        "pausing": {
          "after": { "pace": "sending" },
          "on": {
            "FILE_COMPLETE": { "actions": "countCompletion" },
            "FILE_FAILED": { "actions": "countFailure" }
          }
        }
      },
      "on": {
        "xstate.error.delivery": { "target": "broken", "actions": "onDeliveryError" }
      }
    },
    "done": { "type": "final", "entry": "stopOthers" },
    "broken": { "type": "final", "entry": "stopOthers" }
  }
}"#;

/// The processor: transforms each `PROCESS_DATA` and sends it on to storage.
pub const PROCESSOR_CHART: &str = r#"{
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
    "stopped": { "type": "final", "entry": "sayStopped" }
  }
}"#;

/// The storage: stores each `SAVE_DATA` and answers the ingester.
pub const STORAGE_CHART: &str = r#"{
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
    "stopped": { "type": "final", "entry": "sayStopped" }
  }
}"#;

/// Files in flight at once (each is one message to the processor).
pub const WINDOW: usize = 4;
/// The largest `PROCESS_DATA` payload: a hosted machine's outbox holds 16 KiB.
pub const MAX_PAYLOAD: usize = 12 * 1024;

/// The sample input: small text files.
pub const SAMPLES: &[(&str, &str)] = &[
    (
        "alpha.txt",
        "Statecharts in separate processes\nexchange events over one bus.\n",
    ),
    (
        "beta.txt",
        "The ingester reads files, the processor transforms them,\nand storage keeps a record per file.\n",
    ),
    ("gamma.txt", "three words here\n"),
    (
        "delta.txt",
        "Every message to another process is acknowledged end to end.\nNothing is lost silently.\n",
    ),
    ("epsilon.txt", ""),
];

/// `PROCESS_DATA`: ingester to processor.
#[derive(Serialize, Deserialize, Debug)]
pub struct ProcessData {
    /// The input file's name.
    pub file: String,
    /// Its text.
    pub data: String,
}

/// `SAVE_DATA`: processor to storage.
#[derive(Serialize, Deserialize, Debug)]
pub struct SaveData {
    /// The input file's name.
    pub file: String,
    /// The transformed text.
    pub data: String,
    /// Its words.
    pub words: u64,
    /// Its lines.
    pub lines: u64,
}

/// `FILE_COMPLETE`: storage to ingester.
#[derive(Serialize, Deserialize, Debug)]
pub struct FileComplete {
    /// The input file's name.
    pub file: String,
    /// Its words.
    pub words: u64,
}

/// `FILE_FAILED`: processor or storage to ingester.
#[derive(Serialize, Deserialize, Debug)]
pub struct FileFailed {
    /// The input file's name.
    pub file: String,
    /// What went wrong.
    pub error: String,
}

/// A file name and its encoded `PROCESS_DATA` payload.
pub type Job = (String, Vec<u8>);

/// How a role reports: a prefix for its lines and a status sink (the supervisor's status
/// block in the demo, nothing in the example).
#[derive(Clone, Copy)]
pub struct Say {
    /// Put before every line (`"ingester: "`, or nothing).
    pub prefix: &'static str,
    /// Called with a one-line status after each change.
    pub status: fn(&str),
}

impl Say {
    /// A line on stdout; a closed stdout drops it (the role goes on: its supervisor, or
    /// the example's ingester, decides when it ends).
    fn line(&self, text: std::fmt::Arguments<'_>) {
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), "{}{text}", self.prefix);
    }
}

/// The job of one file, or `None` (reported) when it is larger than one message carries.
pub fn job(file: String, data: String, say: Say) -> Result<Option<Job>, serde_json::Error> {
    let payload = serde_json::to_vec(&ProcessData {
        file: file.clone(),
        data,
    })?;
    if payload.len() > MAX_PAYLOAD {
        say.line(format_args!(
            "skipping {file}: {} bytes is more than one message carries ({MAX_PAYLOAD})",
            payload.len()
        ));
        return Ok(None);
    }
    Ok(Some((file, payload)))
}

/// The ingester's progress, shared by its actions.
#[derive(Default)]
pub struct Progress {
    /// Files in flight at most.
    pub window: usize,
    /// Files not sent yet.
    pub queue: VecDeque<Job>,
    /// Files in all.
    pub total: usize,
    /// Sent and not answered.
    pub in_flight: usize,
    /// Stored.
    pub completed: usize,
    /// Not stored, by name.
    pub failed: Vec<String>,
    /// Words in the stored files.
    pub words: u64,
    /// A message that could not be delivered, as the delivery error said.
    pub broken: Option<String>,
}

/// The ingester's actions and guard; `pace` is the pause after each completion.
pub fn ingester_behaviors(p: &Rc<RefCell<Progress>>, pace_ms: u64, say: Say) -> Behaviors {
    let (p1, p2, p3, p4, p5) = (p.clone(), p.clone(), p.clone(), p.clone(), p.clone());
    Behaviors::new()
        .delay("pace", interstate::Duration::from_millis(pace_ms))
        .action("sendFiles", move |cx| {
            let mut p = p1.borrow_mut();
            while p.in_flight < p.window {
                let Some((file, payload)) = p.queue.front() else {
                    break;
                };
                match cx.send("processor", "PROCESS_DATA", payload) {
                    Ok(()) => {
                        say.line(format_args!(
                            "{file} ({} bytes) -> processor",
                            payload.len()
                        ));
                        p.queue.pop_front();
                        p.in_flight += 1;
                    }
                    // The outbox is full: the rest goes after the next completion.
                    Err(_) if p.in_flight > 0 => break,
                    Err(e) => {
                        let file = file.clone();
                        say.line(format_args!("cannot send {file}: {e}"));
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
                    say.line(format_args!(
                        "{} complete ({}/{})",
                        done.file, p.completed, p.total
                    ));
                    (say.status)(&format!(
                        "state 'ingesting', {}/{} files stored",
                        p.completed, p.total
                    ));
                }
                Err(e) => say.line(format_args!("a completion with a bad payload: {e}")),
            }
        })
        .action("countFailure", move |cx| {
            let mut p = p3.borrow_mut();
            p.in_flight = p.in_flight.saturating_sub(1);
            let (file, error) = match serde_json::from_slice::<FileFailed>(cx.payload()) {
                Ok(f) => (f.file, f.error),
                Err(e) => ("?".into(), format!("a failure with a bad payload: {e}")),
            };
            say.line(format_args!("{file} failed: {error}"));
            p.failed.push(file);
        })
        .guard("allDone", move |_| {
            let p = p4.borrow();
            p.completed + p.failed.len() >= p.total
        })
        .action("onDeliveryError", move |cx| {
            let why = String::from_utf8_lossy(cx.payload()).into_owned();
            say.line(format_args!("delivery failed: {why}"));
            p5.borrow_mut().broken = Some(why);
        })
        .action("stopOthers", move |cx| {
            say.line(format_args!(
                "all files done: state 'done'; STOP -> processor, storage"
            ));
            for other in ["processor", "storage"] {
                if let Err(e) = cx.send(other, "STOP", b"") {
                    say.line(format_args!("could not stop {other}: {e}"));
                }
            }
        })
}

/// What the processor makes of a file: uppercase text, its words and lines.
pub fn transform(job: ProcessData) -> SaveData {
    SaveData {
        words: job.data.split_whitespace().count() as u64,
        lines: job.data.lines().count() as u64,
        data: job.data.to_uppercase(),
        file: job.file,
    }
}

/// The processor's actions.
pub fn processor_behaviors(say: Say) -> Behaviors {
    let mut processed = 0u32;
    Behaviors::new()
        .action("transform", move |cx| {
            let job: ProcessData = match serde_json::from_slice(cx.payload()) {
                Ok(j) => j,
                Err(e) => return eprintln!("{}bad PROCESS_DATA: {e}", say.prefix),
            };
            let out = transform(job);
            say.line(format_args!(
                "{}: {} words, {} lines -> storage",
                out.file, out.words, out.lines
            ));
            processed += 1;
            (say.status)(&format!("state 'ready', {processed} files processed"));
            let body = serde_json::to_vec(&out).unwrap_or_default();
            if let Err(e) = cx.send("storage", "SAVE_DATA", &body) {
                let failed = FileFailed {
                    file: out.file,
                    error: format!("the processor could not forward it: {e}"),
                };
                let body = serde_json::to_vec(&failed).unwrap_or_default();
                let _ = cx.send("ingester", "FILE_FAILED", &body);
            }
        })
        .action("onDeliveryError", move |cx| {
            let why = String::from_utf8_lossy(cx.payload());
            eprintln!("{}delivery failed: {why}", say.prefix);
        })
        .action("sayStopped", move |_| stopped(say))
}

/// The storage's actions around `store`, which stores a row and says whether it could.
pub fn storage_behaviors(
    mut store: impl FnMut(&SaveData) -> Result<(), String> + 'static,
    say: Say,
) -> Behaviors {
    let mut stored = 0u32;
    Behaviors::new()
        .action("store", move |cx| {
            let row: SaveData = match serde_json::from_slice(cx.payload()) {
                Ok(r) => r,
                Err(e) => return eprintln!("{}bad SAVE_DATA: {e}", say.prefix),
            };
            let (event, body) = match store(&row) {
                Ok(()) => {
                    say.line(format_args!(
                        "{}: stored ({} words) -> ingester",
                        row.file, row.words
                    ));
                    stored += 1;
                    (say.status)(&format!("state 'ready', {stored} records stored"));
                    let done = FileComplete {
                        file: row.file,
                        words: row.words,
                    };
                    ("FILE_COMPLETE", serde_json::to_vec(&done))
                }
                Err(error) => {
                    eprintln!("{}{}: could not store it: {error}", say.prefix, row.file);
                    let failed = FileFailed {
                        file: row.file,
                        error,
                    };
                    ("FILE_FAILED", serde_json::to_vec(&failed))
                }
            };
            if let Err(e) = cx.send("ingester", event, &body.unwrap_or_default()) {
                eprintln!("{}could not answer the ingester: {e}", say.prefix);
            }
        })
        .action("onDeliveryError", move |cx| {
            let why = String::from_utf8_lossy(cx.payload());
            eprintln!("{}delivery failed: {why}", say.prefix);
        })
        .action("sayStopped", move |_| stopped(say))
}

fn stopped(say: Say) {
    say.line(format_args!("STOP received: state 'stopped'"));
    (say.status)("state 'stopped'");
}

//! `interstate demo` end to end, exactly as the README's first command runs it: four supervised
//! processes on a private bus, the pipeline's events on the monitor, a clean exit by itself,
//! and nothing left behind (no process, no temporary directory).
//!
//! Each run gets its own `TMPDIR`, so that what the demo leaves there (nothing) can be checked;
//! a guard kills every process the demo reported and removes that directory.

use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The demo takes about a second; this is for a loaded machine.
const LIMIT: Duration = Duration::from_secs(30);

struct Tmp {
    dir: PathBuf,
    pids: Vec<u32>,
}

impl Tmp {
    fn new(tag: &str) -> Tmp {
        let dir = std::env::temp_dir().join(format!("istdemo-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .expect("create the test's TMPDIR");
        Tmp {
            dir,
            pids: Vec::new(),
        }
    }

    /// Runs `interstate demo ARGS` with this TMPDIR: (exit code, stdout, stderr).
    fn demo(&mut self, args: &[&str]) -> (Option<i32>, String, String) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_interstate"))
            .arg("demo")
            .args(args)
            .env("TMPDIR", &self.dir)
            .env_remove("INTERSTATE_DIR")
            .env_remove("INTERSTATE_BUS")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start interstate demo");
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let out = std::thread::spawn(move || std::io::read_to_string(out).unwrap_or_default());
        let err = std::thread::spawn(move || std::io::read_to_string(err).unwrap_or_default());
        let end = Instant::now() + LIMIT;
        let status = loop {
            if let Some(s) = child.try_wait().expect("poll the demo") {
                break s;
            }
            if Instant::now() >= end {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the demo did not finish within {LIMIT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let (out, err) = (out.join().unwrap(), err.join().unwrap());
        for line in out.lines() {
            if let Some(p) = line
                .split("(pid ")
                .nth(1)
                .and_then(|r| r.split(')').next()?.parse().ok())
            {
                self.pids.push(p);
            }
        }
        (status.code(), out, err)
    }

    fn entries(&self) -> Vec<String> {
        std::fs::read_dir(&self.dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        for &pid in &self.pids {
            if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rfind(')')
            .is_some_and(|i| stat[i + 2..].starts_with('Z')),
    }
}

#[test]
fn the_demo_runs_the_pipeline_and_exits_cleanly_by_itself() {
    let mut tmp = Tmp::new("plain");
    // As the README runs it (stdout is not a terminal here, so plain lines).
    let (code, out, err) = tmp.demo(&[]);
    let all = format!("--- stdout:\n{out}\n--- stderr:\n{err}");
    assert_eq!(code, Some(0), "{all}");
    let has = |text: &str| {
        assert!(
            out.lines().any(|l| l.contains(text)),
            "no line with '{text}'\n{all}"
        )
    };
    // The supervisor: ordered, real readiness.
    has("demo: monitor ready (READY=1)");
    has("demo: storage ready (storage registered)");
    has("demo: processor ready (processor registered)");
    has("demo: every process is ready");
    // The events flowing, as the monitor sees them on the bus.
    for file in [
        "alpha.txt",
        "beta.txt",
        "gamma.txt",
        "delta.txt",
        "epsilon.txt",
    ] {
        has(&format!(
            "monitor | ingester -> processor  PROCESS_DATA  {{\"file\":\"{file}\""
        ));
        has(&format!(
            "monitor | processor -> storage  SAVE_DATA  {{\"file\":\"{file}\""
        ));
        has(&format!(
            "monitor | storage -> ingester  FILE_COMPLETE  {{\"file\":\"{file}\""
        ));
    }
    has("monitor | ingester -> processor  STOP");
    has("monitor | ingester -> storage  STOP");
    // The processes' states, and the end.
    has("ingester | all files done: state 'done'; STOP -> processor, storage");
    has("processor | STOP received: state 'stopped'");
    has("storage | STOP received: state 'stopped'");
    has("5 stored, 0 failed, 41 words");
    has("demo: finished: ingester finished with status 0");
    has("demo: the store holds 5 records, 41 words");
    has("demo:   gamma.txt     3 words  1 lines  \"THREE WORDS HERE\"");
    has("demo: done in");
    let mut pids = tmp.pids.clone();
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), 4, "four processes started: {pids:?}\n{all}");
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end && !pids.iter().all(|&p| gone(p)) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(pids.iter().all(|&p| gone(p)), "processes left: {pids:?}");
    assert!(
        tmp.entries().is_empty(),
        "the demo left files behind: {:?}",
        tmp.entries()
    );
}

#[test]
fn the_demo_keeps_its_store_when_asked() {
    let mut tmp = Tmp::new("keep");
    let (code, out, err) = tmp.demo(&["--keep", "--pace", "0"]);
    assert_eq!(code, Some(0), "--- stdout:\n{out}\n--- stderr:\n{err}");
    let kept = tmp.entries();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let store = tmp.dir.join(&kept[0]).join("store.jsonl");
    let text = std::fs::read_to_string(&store).expect("the store file is kept");
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON record"))
        .collect();
    assert_eq!(records.len(), 5, "{text}");
    let gamma = records
        .iter()
        .find(|r| r["file"] == "gamma.txt")
        .expect("gamma.txt stored");
    assert_eq!(gamma["data"], "THREE WORDS HERE\n");
    assert_eq!(gamma["words"], 3);
    // The bus is gone even when the files are kept.
    let left: Vec<_> = std::fs::read_dir(tmp.dir.join(&kept[0]))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sock") || n.ends_with(".supervisor"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

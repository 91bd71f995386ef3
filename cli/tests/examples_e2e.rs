//! The multi-process examples end to end: `ui_worker` (two processes) and `pipeline` (three
//! processes and a SQLite database), each on a private bus directory and bus name.
//!
//! The example binaries are found next to the `interstate` binary, as
//! `<target>/<profile>/examples/NAME`. `cargo test` builds every example before it runs the
//! integration tests; when this file runs alone (`cargo test --test examples_e2e`) and an
//! example is missing or older than its source, the test builds it with
//! `cargo build --example NAME`.
//!
//! Each example runs in its own process group, and a [`Run`] guard kills that whole group
//! (the example and the children it started) and removes the test's directory on drop, also
//! when the test fails.

use std::collections::BTreeMap;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a whole example run may take on a loaded machine (they take well under a second).
const LIMIT: Duration = Duration::from_secs(60);

/// The example's binary, built (with cargo, once per test process) when it is missing or
/// older than its source: `cargo test --test examples_e2e` alone does not build examples, and
/// `cargo test --example NAME` builds a test harness, not the program.
fn example_binary(name: &str) -> PathBuf {
    static BUILD: Mutex<()> = Mutex::new(());
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_interstate"));
    let profile_dir = bin
        .parent()
        .expect("the interstate binary is in a directory");
    let path = profile_dir.join("examples").join(name);
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../examples/{name}.rs"));
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let fresh = || match (mtime(&path), mtime(&source)) {
        (Some(built), Some(edited)) => built >= edited,
        (built, _) => built.is_some(),
    };
    let _one_at_a_time = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    if !fresh() {
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .args(["build", "--quiet", "--example", name])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
        match profile_dir.file_name().and_then(|p| p.to_str()) {
            Some("debug") | None => {}
            Some(profile) => {
                cargo.args(["--profile", profile]);
            }
        }
        let status = cargo.status().expect("run cargo to build the example");
        assert!(status.success(), "building the example {name} failed");
    }
    assert!(
        fresh(),
        "the example {} is missing or older than {}: build it with `cargo build --example {name}`",
        path.display(),
        source.display()
    );
    path
}

/// One example run: a private directory (bus directory, inputs, database) and the process.
struct Run {
    dir: PathBuf,
    /// The example's TMPDIR (by default `dir`).
    tmp: PathBuf,
    bus: String,
    child: Option<Child>,
}

impl Run {
    fn new(tag: &str) -> Run {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "interstate-e2e-{tag}-{}-{n}-{nanos}",
            std::process::id()
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .expect("create the test's directory");
        Run {
            tmp: dir.clone(),
            dir,
            bus: format!("e2e-{tag}-{n}"),
            child: None,
        }
    }

    /// Runs the example to completion; returns (exit success, stdout, stderr).
    fn run(&mut self, name: &str, args: &[&std::ffi::OsStr]) -> (bool, String, String) {
        let out_path = self.dir.join("stdout");
        let err_path = self.dir.join("stderr");
        let child = Command::new(example_binary(name))
            .args(args)
            .env("INTERSTATE_DIR", self.dir.join("bus"))
            .env("INTERSTATE_BUS", &self.bus)
            // Sample inputs and default databases land in the test's directory.
            .env("TMPDIR", &self.tmp)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_path).expect("stdout file"))
            .stderr(std::fs::File::create(&err_path).expect("stderr file"))
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start the example {name}: {e}"));
        let child = self.child.insert(child);
        let start = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().expect("poll the example") {
                break s;
            }
            if start.elapsed() > LIMIT {
                panic!(
                    "the example {name} ran longer than {LIMIT:?}:\n{}",
                    std::fs::read_to_string(&out_path).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The example waits for its children: nothing of its process group may be left.
        let group = rustix::process::Pid::from_raw(child.id() as i32).expect("a child's pid");
        let leaked = (0..50).all(|_| {
            let alive = rustix::process::test_kill_process_group(group).is_ok();
            if alive {
                std::thread::sleep(Duration::from_millis(20));
            }
            alive
        });
        assert!(
            !leaked,
            "the example {name} left processes running after it exited"
        );
        let out = std::fs::read_to_string(&out_path).unwrap_or_default();
        let err = std::fs::read_to_string(&err_path).unwrap_or_default();
        (status.success(), out, err)
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            // The example leads its process group: this also reaches the children it started.
            if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn ui_worker_completes_its_work_across_two_processes() {
    let mut run = Run::new("ui");
    let (ok, out, err) = run.run("ui_worker", &[]);
    assert!(ok, "ui_worker failed:\n{out}\n{err}");
    for line in [
        "ui: on bus '",
        "worker: joined bus '",
        "ui: requesting work from worker-1 in pid ",
        "worker: processing task 123",
        "ui: work completed: Ok(Outcome { task_id: 123, result: \"Success\" })",
        "worker: stopped",
        "ui: done (",
    ] {
        assert!(out.contains(line), "no line '{line}' in:\n{out}\n{err}");
    }
    assert!(
        out.contains(&format!("ui: on bus '{}' (serving as hub)", run.bus)),
        "{out}"
    );
}

/// The UI's request ends visibly when its worker cannot answer: `target-gone` as soon as the
/// worker killed mid-work leaves the bus (it had acknowledged the request), `timeout` when
/// the worker stopped mid-work never answers.
#[test]
fn ui_worker_request_ends_visibly_when_the_worker_is_killed_or_hangs_mid_work() {
    for (mode, what, reason) in [
        ("kill", "killed", "target-gone"),
        ("hang", "stopped", "timeout"),
    ] {
        let mut run = Run::new(&format!("ui-{mode}"));
        let (ok, out, err) = run.run("ui_worker", &[std::ffi::OsStr::new(mode)]);
        assert!(ok, "ui_worker {mode} failed:\n{out}\n{err}");
        for line in [
            "worker: processing task 123".to_string(),
            format!("ui: worker {what} mid-work"),
            format!("ui: request failed: {reason}: "),
        ] {
            assert!(out.contains(&line), "no line '{line}' in:\n{out}\n{err}");
        }
        assert!(!out.contains("ui: work completed"), "{out}");
    }
}

/// The rows of the pipeline's database: file -> (words, lines, data).
fn rows(db: &Path) -> BTreeMap<String, (u64, u64, String)> {
    let conn = rusqlite::Connection::open(db).expect("open the pipeline's database");
    let mut stmt = conn
        .prepare("SELECT file, words, lines, data FROM files")
        .expect("the files table");
    let rows = stmt
        .query_map([], |r| {
            Ok((r.get::<_, String>(0)?, (r.get(1)?, r.get(2)?, r.get(3)?)))
        })
        .expect("query the rows");
    rows.map(|r| r.expect("a row")).collect()
}

#[test]
fn pipeline_stores_one_row_per_input_file() {
    let mut run = Run::new("pipeline");
    let input = run.dir.join("input");
    std::fs::create_dir(&input).unwrap();
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    for i in 0..12 {
        files.insert(
            format!("note-{i:02}.txt"),
            format!("note {i}\n{}", "lorem ipsum dolor ".repeat(i)),
        );
    }
    files.insert("unicode.txt".into(), "straße café naïve\n".into());
    files.insert("empty.txt".into(), String::new());
    for (name, text) in &files {
        std::fs::write(input.join(name), text).unwrap();
    }
    let db = run.dir.join("pipeline.sqlite3");
    let (ok, out, err) = run.run(
        "pipeline",
        &[
            "--input".as_ref(),
            input.as_os_str(),
            "--db".as_ref(),
            db.as_os_str(),
        ],
    );
    assert!(ok, "pipeline failed:\n{out}\n{err}");
    let n = files.len();
    for line in [
        format!("ingester: {n} files from {}", input.display()),
        format!("ingester: on bus '{}' (serving as hub)", run.bus),
        "processor: joined bus '".to_string(),
        "storage: joined bus '".to_string(),
        format!("ingester: all {n} files done in "),
        format!("({n} complete, 0 failed)"),
        "processor: stopped".to_string(),
        "storage: stopped".to_string(),
        format!("pipeline: database {} has {n} rows", db.display()),
    ] {
        assert!(out.contains(&line), "no line '{line}' in:\n{out}\n{err}");
    }
    let stored = rows(&db);
    assert_eq!(
        stored.keys().collect::<Vec<_>>(),
        files.keys().collect::<Vec<_>>(),
        "one row per input file"
    );
    for (name, text) in &files {
        let (words, lines, data) = &stored[name];
        assert_eq!(*words, text.split_whitespace().count() as u64, "{name}");
        assert_eq!(*lines, text.lines().count() as u64, "{name}");
        assert_eq!(data, &text.to_uppercase(), "{name}");
    }
}

#[test]
fn pipeline_with_its_sample_files_and_a_file_too_large() {
    // The built-in samples (no --input).
    let mut run = Run::new("samples");
    let db = run.dir.join("samples.sqlite3");
    let (ok, out, err) = run.run("pipeline", &["--db".as_ref(), db.as_os_str()]);
    assert!(ok, "pipeline failed:\n{out}\n{err}");
    assert!(out.contains("(samples)"), "{out}");
    assert!(out.contains("ingester: all 5 files done"), "{out}");
    assert_eq!(rows(&db).len(), 5);
    drop(run);

    // A file too large for one message is reported, the others still go through, exit 1.
    let mut run = Run::new("large");
    let input = run.dir.join("input");
    std::fs::create_dir(&input).unwrap();
    std::fs::write(input.join("small.txt"), "a few words\n").unwrap();
    std::fs::write(input.join("large.txt"), "x".repeat(64 * 1024)).unwrap();
    let db = run.dir.join("large.sqlite3");
    let (ok, out, err) = run.run(
        "pipeline",
        &[
            "--input".as_ref(),
            input.as_os_str(),
            "--db".as_ref(),
            db.as_os_str(),
        ],
    );
    assert!(!ok, "a file that was not stored must fail the run:\n{out}");
    assert!(out.contains("ingester: skipping large.txt"), "{out}");
    assert!(out.contains("(1 complete, 1 failed)"), "{out}");
    assert!(err.contains("files not stored: large.txt"), "{err}");
    assert_eq!(rows(&db).keys().collect::<Vec<_>>(), ["small.txt"]);
}

/// A fresh, empty directory for a run's TMPDIR.
fn private_tmp(run: &mut Run) -> PathBuf {
    let tmp = run.dir.join("tmp");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&tmp)
        .expect("create the run's TMPDIR");
    run.tmp = tmp.clone();
    tmp
}

fn leftovers(tmp: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(tmp)
        .expect("read the run's TMPDIR")
        .map(|e| e.expect("an entry").path())
        .collect()
}

#[test]
fn the_pipeline_example_and_app_leave_nothing_in_the_temp_directory() {
    // The example with its samples and its default database.
    let mut run = Run::new("tmpdir");
    let tmp = private_tmp(&mut run);
    let (ok, out, err) = run.run("pipeline", &[]);
    assert!(ok, "pipeline failed:\n{out}\n{err}");
    assert!(
        out.contains("has 5 rows (removed now: pass --db PATH to keep one)"),
        "{out}"
    );
    assert_eq!(
        leftovers(&tmp),
        Vec::<PathBuf>::new(),
        "left by the example"
    );

    // The same pipeline as an app: `interstate up examples/apps/pipeline.toml`, whose
    // processes are `interstate` found on PATH.
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_interstate"));
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/apps/pipeline.toml");
    let log = run.dir.join("up.log");
    let mut child = Command::new(&bin)
        .args(["up", "--plain", "--bus", &format!("{}-app", run.bus)])
        .arg(&manifest)
        .env("INTERSTATE_DIR", run.dir.join("bus"))
        .env("TMPDIR", &tmp)
        .env("PATH", path)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start interstate up");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > LIMIT {
            let _ = child.kill();
            panic!(
                "interstate up ran longer than {LIMIT:?}:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "interstate up failed:\n{out}");
    assert!(out.contains("removed when it stops"), "{out}");
    assert_eq!(
        leftovers(&tmp),
        Vec::<PathBuf>::new(),
        "left by the app:\n{out}"
    );
}

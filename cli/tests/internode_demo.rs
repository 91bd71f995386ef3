//! `interstate demo --internode` end to end: the pipeline split over two buses joined
//! through the mosquitto the demo starts itself; the files stored by host-b's storage,
//! host-a's monitor seeing the messages to and from host-b's machines, where each machine
//! lives printed, a clean exit by itself, and nothing left behind (no process, nothing in
//! its TMPDIR).
//!
//! Needs `/usr/sbin/mosquitto` (Debian package `mosquitto`; `scripts/test.sh` installs it).

use std::os::unix::fs::DirBuilderExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);

/// The pids in lines like `... (pid 123) ...` or `..., pid 123; ...`.
fn pids(text: &str) -> Vec<u32> {
    text.split("pid ")
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            digits.parse().ok()
        })
        .collect()
}

#[test]
fn the_internode_demo_runs_the_pipeline_across_two_buses_and_cleans_up() {
    let tmp = std::env::temp_dir().join(format!("istdemo-inode-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::DirBuilder::new().mode(0o700).create(&tmp).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_interstate"))
        .args(["demo", "--internode", "--pace", "0", "--plain"])
        .env("TMPDIR", &tmp)
        .env_remove("INTERSTATE_DIR")
        .env_remove("INTERSTATE_BUS")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start interstate demo --internode");
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || std::io::read_to_string(out).unwrap_or_default());
    let err = std::thread::spawn(move || std::io::read_to_string(err).unwrap_or_default());
    let end = Instant::now() + LIMIT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the demo did not finish within {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = out.join().unwrap();
    let err = err.join().unwrap();
    let all = format!("{out}\n--- stderr\n{err}");
    // Whatever happened, no process of the demo outlives it.
    let leftover: Vec<u32> = pids(&all)
        .into_iter()
        .filter(|&p| std::path::Path::new(&format!("/proc/{p}")).exists())
        .filter(|&p| {
            std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| c.contains("interstate") || c.contains("mosquitto"))
        })
        .collect();
    for &p in &leftover {
        if let Some(pid) = rustix::process::Pid::from_raw(p as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
    let left_in_tmp: Vec<_> = std::fs::read_dir(&tmp)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.file_name())).collect())
        .unwrap_or_default();
    let _ = std::fs::remove_dir_all(&tmp);

    assert!(status.success(), "{all}");
    assert!(
        leftover.is_empty(),
        "processes left running: {leftover:?}\n{all}"
    );
    assert!(
        left_in_tmp.is_empty(),
        "left in TMPDIR: {left_in_tmp:?}\n{all}"
    );
    for expected in [
        "'storage' lives on host-b, pid",
        "'processor' lives on host-b, pid",
        // host-a's monitor sees the messages crossing its hub to and from host-b.
        "ingester -> processor  PROCESS_DATA",
        "storage -> ingester  FILE_COMPLETE",
        "5 files in",
        "host-b's store holds 5 records, 41 words",
        "demo: done in",
    ] {
        assert!(all.contains(expected), "missing '{expected}':\n{all}");
    }
    // The storage that wrote the records is the one the demo found on host-b.
    let found = out
        .lines()
        .find(|l| l.contains("'storage' lives on host-b"))
        .and_then(|l| pids(l).first().copied())
        .unwrap();
    assert!(
        out.contains(&format!("written by pid {{{found}}}")),
        "{all}"
    );
}

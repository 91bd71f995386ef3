//! The supervisor's pid file, the `interstate down` side of it ([`stop_running`]), and what
//! `/proc` says about a process (its start time, its parent).

use std::os::fd::AsRawFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Token};
use rustix::process::{Pid, PidfdFlags, Signal};

use super::SupervisorError;
use crate::error::PlatformError;

/// The directory where the supervisor of `bus` keeps its pid file and notification sockets.
pub fn run_dir(dir: &Path, bus: &str) -> PathBuf {
    dir.join(format!("{bus}.supervisor"))
}

/// The pid file of the supervisor of `bus`: `<dir>/<bus>.supervisor/pid`, holding the pid and
/// the process's start time (so a reused pid is not taken for it).
pub fn pid_file(dir: &Path, bus: &str) -> PathBuf {
    run_dir(dir, bus).join("pid")
}

/// A process's start time (clock ticks after boot), from `/proc/PID/stat`.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    // Fields after the command: state(3) ppid(4) ... starttime(22).
    rest.split(' ').nth(19)?.parse().ok()
}

fn parent_pid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(1)?.parse().ok()
}

/// Whether `pid` is `root` or a descendant of it.
pub(super) fn in_tree(pid: u32, root: u32) -> bool {
    let mut p = pid;
    for _ in 0..64 {
        if p == root {
            return true;
        }
        match parent_pid(p) {
            Some(pp) if pp > 1 => p = pp,
            _ => return false,
        }
    }
    false
}

/// The pid of the live supervisor of `bus`, from its pid file.
pub fn running_supervisor(dir: &Path, bus: &str) -> Option<u32> {
    let text = std::fs::read_to_string(pid_file(dir, bus)).ok()?;
    let mut it = text.split_whitespace();
    let pid: u32 = it.next()?.parse().ok()?;
    let started: u64 = it.next()?.parse().ok()?;
    (start_time(pid) == Some(started)).then_some(pid)
}

/// Claims `bus` for this process's supervisor: refuses when a live supervisor runs it, else
/// creates the run directory (mode 0700) and writes the pid file. Returns both paths.
pub(super) fn claim(dir: &Path, bus: &str) -> Result<(PathBuf, PathBuf), SupervisorError> {
    let run_dir = run_dir(dir, bus);
    let pid_file = pid_file(dir, bus);
    if let Some(pid) = running_supervisor(dir, bus) {
        return Err(SupervisorError::Invalid(format!(
            "a supervisor (pid {pid}) already runs bus '{bus}'; stop it with `interstate down --bus {bus}`"
        )));
    }
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(&run_dir)
        .map_err(|e| PlatformError::io("creating the supervisor's directory", Some(&run_dir), e))?;
    let me = std::process::id();
    let started = start_time(me).unwrap_or(0);
    std::fs::write(&pid_file, format!("{me} {started}\n"))
        .map_err(|e| PlatformError::io("writing the pid file", Some(&pid_file), e))?;
    Ok((run_dir, pid_file))
}

/// Asks the supervisor of `bus` to stop (SIGTERM) and waits up to `limit` for it to exit.
/// Returns its pid, or an error naming what is wrong (none running, still running).
pub fn stop_running(dir: &Path, bus: &str, limit: Duration) -> Result<u32, String> {
    let pid = running_supervisor(dir, bus).ok_or_else(|| {
        format!(
            "no supervisor runs bus '{bus}' (no live pid in {})",
            pid_file(dir, bus).display()
        )
    })?;
    let p = Pid::from_raw(pid as i32).ok_or("a pid of 0")?;
    let pidfd = rustix::process::pidfd_open(p, PidfdFlags::empty())
        .map_err(|e| format!("watching the supervisor (pid {pid}): {e}"))?;
    rustix::process::pidfd_send_signal(&pidfd, Signal::TERM)
        .map_err(|e| format!("signalling the supervisor (pid {pid}): {e}"))?;
    let mut poll = mio::Poll::new().map_err(|e| e.to_string())?;
    poll.registry()
        .register(
            &mut SourceFd(&pidfd.as_raw_fd()),
            Token(0),
            Interest::READABLE,
        )
        .map_err(|e| e.to_string())?;
    let mut events = mio::Events::with_capacity(4);
    let end = Instant::now() + limit;
    loop {
        let now = Instant::now();
        if now >= end {
            return Err(format!(
                "the supervisor of bus '{bus}' (pid {pid}) did not exit within {limit:?}"
            ));
        }
        match poll.poll(&mut events, Some(end - now)) {
            Ok(()) if !events.is_empty() => return Ok(pid),
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

pub(super) fn running_supervisor_is_me(pid_file: &Path) -> bool {
    std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<u32>().ok())
        == Some(std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_tree() {
        let me = std::process::id();
        assert!(in_tree(me, me));
        let parent = parent_pid(me).expect("a parent");
        assert!(in_tree(me, parent));
        assert!(!in_tree(parent, me));
        assert!(start_time(me).is_some());
    }
}

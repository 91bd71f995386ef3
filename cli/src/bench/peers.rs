//! The processes of a run: starting the peers (`interstate bench-peer ...`, `interstate hub`)
//! and placing them and this process on CPUs, the temporary directory their sockets, pipes and
//! buses live in, and waiting for a peer to be ready.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration as StdDuration, Instant as StdInstant};

use super::Pin;

/// Kills a child on drop.
pub struct ChildGuard(Child);

impl ChildGuard {
    /// Waits up to `limit` for the child to exit by itself (it was asked to); the drop kills
    /// it if it has not.
    pub fn wait_exit(&mut self, limit: StdDuration) {
        let t = StdInstant::now();
        while t.elapsed() < limit {
            match self.0.try_wait() {
                Ok(None) => std::thread::sleep(StdDuration::from_millis(1)),
                _ => return,
            }
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts peer processes: an `interstate` binary, maybe on a given CPU.
#[derive(Clone, Debug)]
pub struct Peers {
    /// The `interstate` binary.
    pub exe: PathBuf,
    /// The CPU the peers are pinned to.
    pub cpu: Option<usize>,
}

impl Peers {
    /// Peers from `exe`, placed by `pin`; pins this process too (until [`Placement`] is
    /// dropped). Falls back to no pinning with fewer than two CPUs for `Split`.
    pub fn new(exe: PathBuf, pin: Pin) -> Result<(Peers, Placement), String> {
        let before = rustix::thread::sched_getaffinity(None)
            .map_err(|e| format!("reading the CPU affinity: {e}"))?;
        let cpus: Vec<usize> = (0..rustix::thread::CpuSet::MAX_CPU)
            .filter(|&c| before.is_set(c))
            .collect();
        let (mine, theirs) = match (pin, cpus.as_slice()) {
            (Pin::Split, [a, b, ..]) => (Some(*a), Some(*b)),
            (Pin::Same, [a, ..]) => (Some(*a), Some(*a)),
            _ => (None, None),
        };
        if let Some(c) = mine {
            set_cpu(None, c)?;
        }
        Ok((
            Peers { exe, cpu: theirs },
            Placement {
                before,
                changed: mine.is_some(),
                cpus: (mine, theirs),
            },
        ))
    }

    /// Starts the binary with `args`.
    pub(super) fn spawn(&self, args: &[&str], env: &[(&str, &str)]) -> Result<ChildGuard, String> {
        let mut cmd = Command::new(&self.exe);
        cmd.args(args).stdin(Stdio::null());
        if matches!(args.first(), Some(&"hub") | Some(&"bridge")) {
            // Their "serving bus" and connection lines would only interleave with the report.
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .map(ChildGuard)
            .map_err(|e| format!("starting a benchmark peer ({}): {e}", self.exe.display()))?;
        if let Some(c) = self.cpu {
            set_cpu(rustix::process::Pid::from_raw(child.0.id() as i32), c)?;
        }
        Ok(child)
    }
}

fn set_cpu(pid: Option<rustix::process::Pid>, cpu: usize) -> Result<(), String> {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(pid, &set).map_err(|e| format!("pinning to CPU {cpu}: {e}"))
}

/// This process's CPU placement for a run; restores the affinity it had on drop.
pub struct Placement {
    before: rustix::thread::CpuSet,
    changed: bool,
    /// (this process's CPU, the peers' CPU).
    pub cpus: (Option<usize>, Option<usize>),
}

impl Drop for Placement {
    fn drop(&mut self) {
        if self.changed {
            let _ = rustix::thread::sched_setaffinity(None, &self.before);
        }
    }
}

pub(super) fn wait_for(what: &str, mut ready: impl FnMut() -> bool) -> Result<(), String> {
    let t = StdInstant::now();
    while !ready() {
        if t.elapsed() > StdDuration::from_secs(10) {
            return Err(format!("{what} did not start within 10 s"));
        }
        std::thread::sleep(StdDuration::from_millis(2));
    }
    Ok(())
}

/// A temporary directory for one run's sockets, pipes and buses; removed on drop.
pub struct BenchDir(pub PathBuf);

impl BenchDir {
    /// Creates `$TMPDIR/interstate-bench-<pid>-<tag>`, private to this user.
    pub fn new(tag: &str) -> Result<BenchDir, String> {
        use std::os::unix::fs::DirBuilderExt;
        let dir =
            std::env::temp_dir().join(format!("interstate-bench-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(BenchDir(dir))
    }
}

impl Drop for BenchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

//! How the hub asks the kernel for a larger share of the CPU: the process that every
//! message of the bus passes through, and on a busy machine one runnable process among many.
//!
//! Under the load test (64 clients flooding one hub on 2 CPUs) the hub waited for a CPU about
//! 80 % of its time (`/proc/<hub>/schedstat`), and that wait was the largest part of a paced
//! message's latency: its turns took milliseconds of wall-clock time for a fraction of one of
//! CPU (`docs/performance.md`, latency under load). A nice value below 0, as a service
//! manager's `Nice=` sets it, gives the hub more weight against the processes that compete
//! with it (each step is about 1.25x: -10 is about 9x a default process's weight). Going
//! below 0 needs `CAP_SYS_NICE` or an `RLIMIT_NICE` that allows it (`LimitNICE=` in a systemd
//! unit); raising it does not.
//!
//! A client node can keep its own turns short
//! ([`NodeConfig::yield_after`](crate::node::NodeConfig::yield_after), off by default): one
//! that runs without sleeping then yields its CPU, so that a receiver among many busy clients
//! waits for a short turn of each, not a 4 ms tick of each.
//!
//! A shorter time slice (`sched_setattr`'s `sched_runtime` for `SCHED_OTHER`, Linux 6.12 and
//! later, unprivileged) was measured as well and is not offered: alone it changed nothing
//! measurable under the load test (the hub's share, not how soon it is picked, is what it
//! lacked), and with a nice value it added nothing to it.

use crate::error::PlatformError;

/// What the hub asks the kernel for (see the module's documentation). The default asks for
/// nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HubScheduling {
    /// The nice value to take (-20 to 19), if any.
    pub nice: Option<i32>,
}

impl HubScheduling {
    /// Applies the settings to the calling thread (the one that then serves the bus: on
    /// Linux a nice value is a thread's).
    pub fn apply(&self) -> Result<(), PlatformError> {
        if let Some(nice) = self.nice {
            if !(-20..=19).contains(&nice) {
                return Err(PlatformError::io(
                    format!("setting the hub's nice value to {nice}"),
                    None,
                    std::io::Error::new(std::io::ErrorKind::InvalidInput, "not within -20 to 19"),
                ));
            }
            rustix::process::setpriority_process(None, nice).map_err(|e| {
                PlatformError::io(
                    format!(
                        "setting the hub's nice value to {nice} (below 0 needs CAP_SYS_NICE or \
                         an RLIMIT_NICE that allows it, e.g. LimitNICE= in a systemd unit)"
                    ),
                    None,
                    e.into(),
                )
            })?;
        }
        Ok(())
    }
}

/// A busy client's turn of the CPU, kept short by the node itself, when asked for
/// ([`crate::node::NodeConfig::yield_after`]; off by default).
///
/// Kernels often tick at 250 Hz without preemption of a running task (`CONFIG_HZ_250`,
/// `CONFIG_PREEMPT_NONE`, as on the machines measured): a process that never sleeps, a
/// client flooding the bus, runs until a tick finds its slice used, 4 ms at a time, and a
/// receiver among tens of such processes waits tens of milliseconds for its turn (the load
/// test's worst client's p99 of 40 to 80 ms on 2 CPUs). A shorter slice asked of the kernel
/// (`sched_setattr`) is only enforced at a tick, and changed nothing measurable. With
/// `yield_after` set, a client node checks, at the start of a turn at most that often,
/// whether its thread has slept since the last check (its count of voluntary context
/// switches, `getrusage(RUSAGE_THREAD)`); if it has not, it yields (`sched_yield`). A node
/// that sleeps between its messages never yields; on a CPU of its own a yield returns at
/// once. The hub never yields: every message of the bus passes through it.
///
/// **Why it is off by default**: a yield costs the yielding process far more of its share
/// than the time it gives up, under the kernel's fair scheduler (EEVDF) as measured: two
/// spinning processes pinned to one CPU, one of them yielding every 100 us, had 0.15 s and
/// 1.87 s of it in 3 s (Linux 6.18). Among the load test's clients, who all yield, that is
/// what shortens their turns and gives the hub the CPU it lacked (worst p99 of 44 to 79 ms
/// down to 13 to 26 ms in most runs, the same throughput: docs/performance.md); beside
/// other busy programs on the machine it makes a busy client theirs to wait for. A short sleep instead of the yield keeps the share fair
/// but was measured at about half the gain for a tenth less throughput, and is not offered.
#[derive(Debug)]
pub(crate) struct CpuShare {
    every: Option<std::time::Duration>,
    checked: std::time::Instant,
    sleeps: u64,
    yields: u64,
}

impl CpuShare {
    /// Yields after `every` of running without a sleep; `None` never yields.
    pub(crate) fn new(every: Option<std::time::Duration>) -> Self {
        let every = every.filter(|e| !e.is_zero());
        CpuShare {
            every,
            checked: std::time::Instant::now(),
            // Read only when it will be compared (no system call for a node that never yields).
            sleeps: if every.is_some() {
                voluntary_switches()
            } else {
                0
            },
            yields: 0,
        }
    }

    /// A turn starts at `now`: yields if the thread has run for `every` without sleeping.
    #[inline]
    pub(crate) fn turn(&mut self, now: std::time::Instant) {
        if let Some(every) = self.every {
            if now.saturating_duration_since(self.checked) >= every {
                self.check(now);
            }
        }
    }

    #[cold]
    fn check(&mut self, now: std::time::Instant) {
        let sleeps = voluntary_switches();
        if sleeps == self.sleeps {
            std::thread::yield_now();
            self.yields += 1;
        }
        self.sleeps = sleeps;
        self.checked = now;
    }

    /// How many times it yielded.
    pub(crate) fn yields(&self) -> u64 {
        self.yields
    }
}

/// The calling thread's count of voluntary context switches (sleeps); 0 if the kernel does
/// not say (then a busy thread still yields, and a sleeping one may too, harmlessly).
fn voluntary_switches() -> u64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `getrusage` writes a `struct rusage` to the pointer it is given, which points
    // to one the size of that struct, owned here and already zeroed (a valid value); nothing
    // else is read or written.
    let done = unsafe { libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) };
    if done != 0 {
        return 0;
    }
    // SAFETY: zeroed at creation, and filled in by the kernel on success.
    let usage = unsafe { usage.assume_init() };
    usage.ru_nvcsw.max(0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a thread of its own: the nice value stays with the thread that took it.
    fn on_a_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(f).join().expect("the thread ran")
    }

    #[test]
    fn a_nice_value_is_taken_by_the_calling_thread() {
        let nice = on_a_thread(|| {
            // Raising it needs no privilege.
            HubScheduling { nice: Some(5) }.apply().expect("nice 5");
            rustix::process::getpriority_process(None).ok()
        });
        assert_eq!(nice, Some(5));
    }

    #[test]
    fn a_nice_value_out_of_range_is_refused_with_its_range() {
        let e = HubScheduling { nice: Some(25) }.apply().unwrap_err();
        assert!(e.to_string().contains("-20 to 19"), "{e}");
    }

    #[test]
    fn a_thread_that_never_sleeps_yields_and_one_that_sleeps_does_not() {
        let (busy, sleepy, never) = on_a_thread(|| {
            let every = std::time::Duration::from_micros(200);
            // Until it has yielded 20 times (a busy thread checks every 200 us of the wall
            // clock, yields at each check), or 10 s for a broken build: no timing asserted.
            let mut busy = CpuShare::new(Some(every));
            let limit = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while busy.yields() < 20 && std::time::Instant::now() < limit {
                busy.turn(std::time::Instant::now());
            }
            let mut sleepy = CpuShare::new(Some(every));
            for _ in 0..10 {
                std::thread::sleep(std::time::Duration::from_micros(300));
                sleepy.turn(std::time::Instant::now());
            }
            let mut never = CpuShare::new(None);
            let end = std::time::Instant::now() + std::time::Duration::from_millis(5);
            while std::time::Instant::now() < end {
                never.turn(std::time::Instant::now());
            }
            (busy.yields(), sleepy.yields(), never.yields())
        });
        assert!(busy >= 20, "a busy thread yielded {busy} times in 10 s");
        assert_eq!(sleepy, 0, "a thread sleeping between turns yielded");
        assert_eq!(never, 0);
    }

    #[test]
    fn nothing_asked_changes_nothing() {
        let (before, after) = on_a_thread(|| {
            let before = rustix::process::getpriority_process(None).ok();
            HubScheduling::default().apply().expect("nothing to apply");
            (before, rustix::process::getpriority_process(None).ok())
        });
        assert_eq!(before, after);
    }
}

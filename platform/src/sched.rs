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
    fn nothing_asked_changes_nothing() {
        let (before, after) = on_a_thread(|| {
            let before = rustix::process::getpriority_process(None).ok();
            HubScheduling::default().apply().expect("nothing to apply");
            (before, rustix::process::getpriority_process(None).ok())
        });
        assert_eq!(before, after);
    }
}

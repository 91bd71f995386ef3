//! A child process's life at the system's level, apart from the node's bookkeeping
//! (`child_process`): starting the program with its environment and result pipe (the one
//! `unsafe` block: what runs between fork and exec), signalling it, reading its result, and
//! describing how it ended.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};

use mio::unix::SourceFd;
use mio::{Interest, Token};

use super::child_process::{
    ChildProcess, ProcessActor, ENV_INPUT, ENV_MACHINE_ID, ENV_RESULT_FD, MAX_RESULT,
};
use super::payload::json_string;
use super::NodeConfig;

/// A started child process.
pub(super) struct Spawned {
    pub(super) child: Child,
    pub(super) pidfd: Option<OwnedFd>,
    pub(super) token: Token,
    pub(super) result: OwnedFd,
    /// Its pidfd was readable: it exited.
    pub(super) exited: bool,
}

pub(super) fn signal(child: &Child, sig: rustix::process::Signal) {
    // (Only before the child is reaped, which happens here alone: the pid is still ours.)
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// The payload of a child's `xstate.error.actor.<id>`.
pub(super) fn error_payload(
    message: &str,
    pid: Option<u32>,
    status: Option<ExitStatus>,
) -> Vec<u8> {
    let num = |n: Option<i32>| n.map_or("null".to_string(), |n| n.to_string());
    format!(
        "{{\"message\":{},\"pid\":{},\"status\":{},\"signal\":{}}}",
        json_string(message),
        pid.map_or("null".to_string(), |p| p.to_string()),
        num(status.and_then(|s| s.code())),
        num(status.and_then(|s| s.signal())),
    )
    .into_bytes()
}

pub(super) fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => {
            let name = match sig {
                1 => " (SIGHUP)",
                2 => " (SIGINT)",
                3 => " (SIGQUIT)",
                6 => " (SIGABRT)",
                9 => " (SIGKILL)",
                11 => " (SIGSEGV)",
                15 => " (SIGTERM)",
                _ => "",
            };
            format!("was killed by signal {sig}{name}")
        }
        (None, None) => format!("ended ({status})"),
    }
}

/// Starts `actor` as the child `c`.
pub(super) fn spawn(
    actor: &ProcessActor,
    c: &ChildProcess,
    config: &NodeConfig,
    registry: &mio::Registry,
    token: Token,
) -> std::io::Result<Spawned> {
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    rustix::io::ioctl_fionbio(&read, true)?;
    let write_fd = write.as_raw_fd();
    let mut cmd = Command::new(&actor.program);
    cmd.args(&actor.args)
        .env(ENV_MACHINE_ID, &c.id)
        .env(ENV_RESULT_FD, write_fd.to_string())
        .env("INTERSTATE_BUS", &config.bus)
        .env("INTERSTATE_DIR", &config.dir)
        .stdin(Stdio::null());
    match &c.input {
        Some(input) => cmd.env(ENV_INPUT, input),
        None => cmd.env_remove(ENV_INPUT),
    };
    // SAFETY: the closure runs in the forked child before exec, so it must only make
    // async-signal-safe calls: it makes two system calls (prctl, fcntl) through rustix, which
    // neither allocates nor takes locks. `write_fd` is open in the child (the fork copied it)
    // and stays open until exec, which now keeps it: the result pipe's write end.
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM))?;
            let fd = BorrowedFd::borrow_raw(write_fd);
            rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    drop(write);
    let pidfd = rustix::process::Pid::from_raw(child.id() as i32).and_then(|pid| {
        rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
    });
    let pidfd = pidfd.filter(|fd| {
        registry
            .register(&mut SourceFd(&fd.as_raw_fd()), token, Interest::READABLE)
            .is_ok()
    });
    Ok(Spawned {
        child,
        pidfd,
        token,
        result: read,
        exited: false,
    })
}

/// What the child wrote to its result pipe (at most [`MAX_RESULT`] bytes), trimmed, and
/// whether there was more.
pub(super) fn read_result(fd: &OwnedFd) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match rustix::io::read(fd, &mut buf) {
            Ok(0) | Err(_) => return (out.trim_ascii().to_vec(), false),
            Ok(n) => {
                let room = MAX_RESULT - out.len();
                out.extend_from_slice(&buf[..n.min(room)]);
                if n > room {
                    return (out.trim_ascii().to_vec(), true);
                }
            }
        }
    }
}

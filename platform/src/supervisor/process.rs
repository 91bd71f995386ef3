//! The process side of the supervisor: spawning children (process groups, pipes, the
//! notification socket, the parent-death signal), watching them with pidfds, reaping them,
//! relaying their output and notifications, signals to and from them.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Instant;

use mio::unix::SourceFd;
use mio::{Interest, Token};
use rustix::process::{Pid, PidfdFlags, Signal, WaitId, WaitIdOptions};

use super::pidfile::{in_tree, running_supervisor_is_me};
use super::policy::{self, Sign, Stop, StopReason};
use super::{
    ChildState, Exit, Outcome, Pipe, Running, Supervisor, SupervisorEvent, CHILD_TOKENS, MAX_LINE,
    PER_CHILD, SIGHUP_TOKEN, SIGINT_TOKEN, SIGTERM_TOKEN,
};
use crate::error::PlatformError;
use crate::notify::NotifyListener;

impl Supervisor {
    /// Stops the app on SIGINT, SIGTERM or SIGHUP (its terminal closed); a second one kills
    /// what is left. Each signal writes to a self-pipe watched in the loop. Replaces the
    /// default action of those signals.
    pub fn handle_signals(&mut self) -> Result<(), PlatformError> {
        for (sig, token) in [
            (signal_hook::consts::SIGINT, SIGINT_TOKEN),
            (signal_hook::consts::SIGTERM, SIGTERM_TOKEN),
            (signal_hook::consts::SIGHUP, SIGHUP_TOKEN),
        ] {
            let io = |e| PlatformError::io("installing a signal handler", None, e);
            let (read, write) = std::os::unix::net::UnixStream::pair().map_err(io)?;
            read.set_nonblocking(true).map_err(io)?;
            write.set_nonblocking(true).map_err(io)?;
            self.node
                .poll_registry()
                .register(&mut SourceFd(&read.as_raw_fd()), token, Interest::READABLE)
                .map_err(io)?;
            let id = signal_hook::low_level::pipe::register(sig, write).map_err(io)?;
            self.signals.push((id, read, token));
        }
        Ok(())
    }

    /// Kills every child now (SIGKILL to each process group); they are reaped as they go.
    pub fn kill_all(&mut self) {
        let now = Instant::now();
        for i in 0..self.slots.len() {
            if self.slots[i].running.is_some() {
                self.kill_group(i, Signal::KILL);
                if let Some(r) = self.slots[i].running.as_mut() {
                    r.stop = Some(Stop {
                        reason: StopReason::App,
                        kill_at: now,
                        killed: true,
                    });
                }
            }
        }
    }

    /// Handles a ready event of the loop: a signal, or a child's pidfd, pipe or socket.
    pub(super) fn handle_token(&mut self, t: Token) {
        if t == SIGINT_TOKEN || t == SIGTERM_TOKEN || t == SIGHUP_TOKEN {
            let mut got = false;
            for (_, read, token) in &self.signals {
                if *token == t {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = std::io::Read::read(&mut &*read, &mut buf) {
                        if n == 0 {
                            break;
                        }
                        got = true;
                    }
                }
            }
            if got {
                let name = match t {
                    SIGINT_TOKEN => "SIGINT",
                    SIGTERM_TOKEN => "SIGTERM",
                    _ => "SIGHUP",
                };
                self.on_signal(name);
            }
            return;
        }
        let Some(k) = t.0.checked_sub(CHILD_TOKENS) else {
            return;
        };
        let (i, what) = (k / PER_CHILD, k % PER_CHILD);
        if i >= self.slots.len() {
            return;
        }
        match what {
            0 => self.on_exit(i),
            1 | 2 => self.drain_pipe(i, what - 1),
            _ => self.on_notify(i),
        }
    }

    /// Child `i`'s pidfd is readable: reaps it (`waitid`), kills what is left of its process
    /// group, relays its last output, and hands its exit to [`exited`](Self::exited).
    pub(super) fn on_exit(&mut self, i: usize) {
        let Some(run) = self.slots[i].running.as_ref() else {
            return;
        };
        let status = match rustix::process::waitid(
            WaitId::PidFd(run.pidfd.as_fd()),
            WaitIdOptions::EXITED | WaitIdOptions::NOHANG,
        ) {
            Ok(Some(s)) => s,
            // Not exited yet (a spurious wake-up), or already reaped.
            Ok(None) => return,
            Err(e) => {
                self.emit(SupervisorEvent::Log(format!(
                    "waiting for {} (pid {}): {e}",
                    self.slots[i].spec.name, run.pid
                )));
                return;
            }
        };
        let exit = if let Some(sig) = status.terminating_signal() {
            Exit::Signal(sig)
        } else {
            Exit::Code(status.exit_status().unwrap_or(0))
        };
        let run = self.slots[i].running.take().expect("running");
        // Whatever is left in its process group goes with it (the group id cannot be reused
        // while any member lives).
        if let Some(pg) = Pid::from_raw(run.pid as i32) {
            let _ = rustix::process::kill_process_group(pg, Signal::KILL);
        }
        let _ = self
            .node
            .poll_registry()
            .deregister(&mut SourceFd(&run.pidfd.as_raw_fd()));
        // Its last words come before the news of its exit.
        self.drain_pipe(i, 0);
        self.drain_pipe(i, 1);
        self.exited(i, run.pid, exit, run.stop.map(|s| s.reason));
    }

    /// Reads what child `i` wrote to stdout (`which` 0) or stderr (1), line by line.
    pub(super) fn drain_pipe(&mut self, i: usize, which: usize) {
        let name = self.slots[i].spec.name.clone();
        let mut lines = Vec::new();
        let mut eof = false;
        if let Some(p) = self.slots[i].pipes[which].as_mut() {
            let mut chunk = [0u8; 8192];
            loop {
                match std::io::Read::read(&mut p.rx, &mut chunk) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => {
                        p.buf.extend_from_slice(&chunk[..n]);
                        while let Some(nl) = p.buf.iter().position(|&b| b == b'\n') {
                            let line: Vec<u8> = p.buf.drain(..=nl).collect();
                            lines.push(line[..line.len() - 1].to_vec());
                        }
                        while p.buf.len() >= MAX_LINE {
                            lines.push(p.buf.drain(..MAX_LINE).collect());
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        eof = true;
                        break;
                    }
                }
            }
            if eof && !p.buf.is_empty() {
                lines.push(std::mem::take(&mut p.buf));
            }
        }
        for mut line in lines {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            self.emit(SupervisorEvent::Output {
                child: name.clone(),
                stderr: which == 1,
                line: String::from_utf8_lossy(&line).into_owned(),
            });
        }
        if eof {
            if let Some(mut p) = self.slots[i].pipes[which].take() {
                let _ = self.node.poll_registry().deregister(&mut p.rx);
            }
        }
    }

    /// Reads child `i`'s notifications: `STATUS=` lines, and `READY=1` for notify readiness.
    pub(super) fn on_notify(&mut self, i: usize) {
        let mut notes = Vec::new();
        if let Some(l) = self.slots[i].notify.as_ref() {
            while let Some(n) = l.recv() {
                notes.push(n);
            }
        }
        for n in notes {
            if let Some(text) = n.get("STATUS") {
                let text = text.to_string();
                self.slots[i].status_text = Some(text.clone());
                let child = self.slots[i].spec.name.clone();
                self.emit(SupervisorEvent::Status { child, text });
            }
            if n.is_ready()
                && self.slots[i].state == ChildState::Starting
                && policy::shows_ready(self.slots[i].spec.readiness, Sign::Notified)
            {
                self.set_ready(i, "READY=1".into());
            }
        }
    }

    /// Sends `sig` to child `i`'s process group (or, the group gone, to the child by its pidfd).
    pub(super) fn kill_group(&mut self, i: usize, sig: Signal) {
        let Some(run) = self.slots[i].running.as_ref() else {
            return;
        };
        let Some(pg) = Pid::from_raw(run.pid as i32) else {
            return;
        };
        if rustix::process::kill_process_group(pg, sig).is_err() {
            // The group is gone but the leader is not reaped yet: signal it by its pidfd.
            let _ = rustix::process::pidfd_send_signal(&run.pidfd, sig);
        }
        let child = self.slots[i].spec.name.clone();
        let signal = if sig == Signal::KILL {
            "SIGKILL"
        } else {
            "SIGTERM"
        };
        self.emit(SupervisorEvent::Signalled { child, signal });
    }

    /// SIGKILL to child `i`'s group: its grace period is over.
    pub(super) fn kill_after_grace(&mut self, i: usize) {
        self.kill_group(i, Signal::KILL);
        if let Some(stop) = self.slots[i].running.as_mut().and_then(|r| r.stop.as_mut()) {
            stop.killed = true;
        }
    }

    /// SIGTERM to a child's group, SIGKILL due after its grace period.
    pub(super) fn terminate(&mut self, i: usize, reason: StopReason) {
        let grace = self.policy.grace(&self.slots[i].spec);
        if let Some(r) = self.slots[i].running.as_mut() {
            if r.stop.is_some() {
                return;
            }
            r.stop = Some(Stop::new(reason, Instant::now(), grace));
        } else {
            return;
        }
        self.kill_group(i, Signal::TERM);
        if reason == StopReason::App {
            self.slots[i].state = ChildState::Stopping;
            self.slots[i].since = Instant::now();
        }
    }

    /// Starts child `i`: its notification socket, its process in a group of its own, its pidfd
    /// and output pipes in the loop.
    pub(super) fn spawn(&mut self, i: usize) {
        let now = Instant::now();
        let (bus, dir) = (
            self.node.config().bus.clone(),
            self.node.config().dir.clone(),
        );
        let spec = self.slots[i].spec.clone();
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.args)
            .env_remove(crate::notify::NOTIFY_SOCKET)
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDNAMES")
            .env("INTERSTATE_BUS", &bus)
            .env("INTERSTATE_DIR", &dir)
            .env(super::ENV_PROCESS, &spec.name)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if let Some(cwd) = &spec.cwd {
            cmd.current_dir(cwd);
        }
        match &self.port {
            Some(port) => cmd.env(super::ENV_SUPERVISOR, port),
            None => cmd.env_remove(super::ENV_SUPERVISOR),
        };
        // A child asked for by a node gets a pipe for its output, as the node would give it.
        let mut result_write: Option<OwnedFd> = None;
        if let Some(asked) = self.slots[i].asked.as_mut() {
            let pipe = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                .and_then(|(r, w)| rustix::io::ioctl_fionbio(&r, true).map(|()| (r, w)));
            match pipe {
                Ok((read, write)) => {
                    cmd.env(crate::node::ENV_RESULT_FD, write.as_raw_fd().to_string());
                    asked.result = Some(read);
                    result_write = Some(write);
                }
                Err(e) => return self.start_failed(i, format!("making its result pipe: {e}")),
            }
        }
        let result_fd = result_write.as_ref().map(|w| w.as_raw_fd());
        // Every child may report `STATUS=`; `READY=1` counts for notify readiness only.
        {
            if self.slots[i].notify.is_none() {
                // (An asked-for child's name is its machine id, which may hold `/`.)
                let file = format!("{}.notify", spec.name.replace('/', "%"));
                let path = self.run_dir.join(file);
                match NotifyListener::bind(&path) {
                    Ok(mut l) => {
                        let token = Token(CHILD_TOKENS + i * PER_CHILD + 3);
                        if let Err(e) = self.node.poll_registry().register(
                            l.source(),
                            token,
                            Interest::READABLE,
                        ) {
                            return self
                                .start_failed(i, format!("watching {}: {e}", path.display()));
                        }
                        self.slots[i].notify = Some(l);
                    }
                    Err(e) => {
                        return self.start_failed(
                            i,
                            format!("binding its notification socket {}: {e}", path.display()),
                        )
                    }
                }
            }
            let l = self.slots[i].notify.as_ref().expect("bound");
            // Stale notifications of an earlier run do not count.
            while l.recv().is_some() {}
            cmd.env(crate::notify::NOTIFY_SOCKET, l.path());
        }
        let parent = rustix::process::getpid();
        // SAFETY: the hook runs in the child between fork and exec, and only makes up to three
        // system calls (prctl, getppid, fcntl); it neither allocates nor takes locks.
        // `result_fd` is open in the child (the fork copied it, and `result_write` keeps it
        // open in the parent until after the spawn); clearing its close-on-exec flag hands
        // the child the result pipe's write end.
        unsafe {
            cmd.pre_exec(move || {
                // The child is told (SIGTERM) if the supervisor dies before it; and if that
                // happened already, it does not start.
                let _ = rustix::process::set_parent_process_death_signal(Some(Signal::TERM));
                if rustix::process::getppid() != Some(parent) {
                    return Err(std::io::Error::from_raw_os_error(3)); // ESRCH
                }
                if let Some(fd) = result_fd {
                    let fd = BorrowedFd::borrow_raw(fd);
                    rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
                }
                Ok(())
            });
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                return self
                    .start_failed(i, format!("cannot run '{}': {e}", spec.program.display()))
            }
        };
        drop(result_write);
        let pid = child.id();
        let pidfd = match Pid::from_raw(pid as i32)
            .ok_or(rustix::io::Errno::SRCH)
            .and_then(|p| rustix::process::pidfd_open(p, PidfdFlags::empty()))
        {
            Ok(fd) => fd,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return self.start_failed(i, format!("pidfd_open (Linux 5.3 or later): {e}"));
            }
        };
        let registry = self.node.poll_registry();
        let base = CHILD_TOKENS + i * PER_CHILD;
        let mut pipes: [Option<Pipe>; 2] = [None, None];
        let outs: [Option<mio::unix::pipe::Receiver>; 2] = [
            child.stdout.take().map(Into::into),
            child.stderr.take().map(Into::into),
        ];
        for (k, rx) in outs.into_iter().enumerate() {
            let Some(mut rx) = rx else { continue };
            if rx.set_nonblocking(true).is_ok()
                && registry
                    .register(&mut rx, Token(base + 1 + k), Interest::READABLE)
                    .is_ok()
            {
                pipes[k] = Some(Pipe {
                    rx,
                    buf: Vec::new(),
                });
            }
        }
        if let Err(e) = registry.register(
            &mut SourceFd(&pidfd.as_raw_fd()),
            Token(base),
            Interest::READABLE,
        ) {
            let _ = child.kill();
            let _ = child.wait();
            return self.start_failed(i, format!("watching its pidfd: {e}"));
        }
        // The pidfd reaps it; the std handle is not needed (dropping it neither kills nor waits).
        drop(child);
        for k in 0..2 {
            if let Some(mut old) = self.slots[i].pipes[k].take() {
                let _ = self.node.poll_registry().deregister(&mut old.rx);
            }
        }
        let slot = &mut self.slots[i];
        slot.pipes = pipes;
        slot.running = Some(Running {
            pid,
            pidfd,
            started: now,
            stop: None,
        });
        slot.state = ChildState::Starting;
        slot.since = now;
        slot.restart_at = None;
        if !slot.started_once {
            slot.started_once = true;
            self.start_order.push(i);
        }
        self.emit(SupervisorEvent::Spawned {
            child: spec.name.clone(),
            pid,
        });
        if policy::shows_ready(spec.readiness, Sign::Spawned) {
            self.set_ready(i, "started".into());
        }
    }

    /// Child `i` could not be started (`why`): the app stops.
    /// (A child a node asked for fails alone: the node hears of it.)
    pub(super) fn start_failed(&mut self, i: usize, why: String) {
        let name = self.slots[i].spec.name.clone();
        self.emit(SupervisorEvent::Log(format!("cannot start {name}: {why}")));
        self.slots[i].state = ChildState::Failed(why.clone());
        self.slots[i].since = Instant::now();
        if self.slots[i].asked.is_some() {
            let message = format!("child process '{name}' could not be started: {why}");
            return self.asked_ended(i, None, None, &message);
        }
        self.begin_stop(Outcome::Failed {
            reason: format!("cannot start {name}: {why}"),
        });
    }

    /// Whether every machine child `i` provides is registered by its process or a descendant.
    pub(super) fn machines_ready(&self, i: usize) -> bool {
        let Some(run) = self.slots[i].running.as_ref() else {
            return false;
        };
        let registry = self.node.registry();
        policy::machines_registered(&self.slots[i].spec.provides, |m| {
            registry
                .get(m)
                .is_some_and(|e| e.pid == run.pid || in_tree(e.pid, run.pid))
        })
    }

    /// Removes the pid file (if it is this process's), the notification sockets and the run
    /// directory.
    pub(super) fn remove_files(&mut self) {
        if running_supervisor_is_me(&self.pid_file) {
            let _ = std::fs::remove_file(&self.pid_file);
        }
        for s in &mut self.slots {
            s.notify = None;
        }
        let _ = std::fs::remove_dir(&self.run_dir);
    }
}

impl Drop for Supervisor {
    /// A supervisor dropped with children still running (an error, a panic) kills and reaps
    /// them, so that none outlives it and no zombie is left.
    fn drop(&mut self) {
        for s in &mut self.slots {
            if let Some(run) = s.running.take() {
                if let Some(pg) = Pid::from_raw(run.pid as i32) {
                    let _ = rustix::process::kill_process_group(pg, Signal::KILL);
                }
                let _ = rustix::process::pidfd_send_signal(&run.pidfd, Signal::KILL);
                let _ = rustix::process::waitid(
                    WaitId::PidFd(run.pidfd.as_fd()),
                    WaitIdOptions::EXITED,
                );
            }
        }
        for (id, _, _) in self.signals.drain(..) {
            signal_hook::low_level::unregister(id);
        }
        self.remove_files();
    }
}

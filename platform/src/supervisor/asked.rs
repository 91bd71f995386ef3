//! Children a node asks for: an invoked machine in a process of its own (see
//! `crate::node::child_process`) that a node running under the supervisor does not spawn
//! itself but asks the supervisor for, so that it is supervised, listed and stopped with the
//! app like the manifest's processes.
//!
//! - The supervisor opens the port [`SUPERVISOR_PORT`] on its bus and sets
//!   [`ENV_SUPERVISOR`] to it in every child's environment: a node that finds the variable
//!   asks there.
//! - [`START_EVENT`] `{"ref","id","parent","program","args","input","cwd"}` adds a child slot named
//!   by the child's machine id (`id`), restart `never`, ready once started (its parent waits for its id itself), and
//!   starts it with the environment a node gives its own child processes (its machine id,
//!   its input, a result pipe). A slot of the same id whose process is gone is reused.
//! - [`STOP_EVENT`] `{"ref"}` stops it (SIGTERM, SIGKILL after the grace).
//! - Its exit, asked for or not, and a start that failed, is [`EXIT_EVENT`]
//!   `{"ref","pid","status","signal","message","output"}` to the asking port; `output` is
//!   what the child wrote to its result pipe (JSON text, as a string), on status 0.
//! - A child whose asking port or parent machine leaves the bus is stopped: no state is
//!   left to stop it.
//!
//! Asked-for children do not count toward the app's completion, and their failures do not
//! stop the app: they are their parent's business.

use std::os::fd::OwnedFd;
use std::time::Instant;

use serde_json::Value;

use interstate_core::supervision::{AskedChildren, Refusal};

use super::policy::StopReason;
use super::{ChildSpec, ChildState, Exit, Readiness, Restart, Slot, Supervisor, SupervisorEvent};
use crate::node::{ENV_INPUT, ENV_MACHINE_ID, MAX_RESULT};

/// The environment variable naming the supervisor's port (set in every supervised child).
pub const ENV_SUPERVISOR: &str = "INTERSTATE_SUPERVISOR";
/// The environment variable naming a supervised process (its manifest name; an asked-for
/// child's is its machine id), set in every supervised child: a node names it in its start
/// requests, so that the child it asks for gets that process's environment.
pub const ENV_PROCESS: &str = "INTERSTATE_PROCESS";
/// The supervisor's port for asked-for children.
pub const SUPERVISOR_PORT: &str = "interstate.supervisor";
/// A node asks for a child process.
pub const START_EVENT: &str = "interstate.child.start";
/// A node asks that a child process it asked for stops.
pub const STOP_EVENT: &str = "interstate.child.stop";
/// A child process asked for ended (or could not start).
pub const EXIT_EVENT: &str = "interstate.child.exit";

/// The most children nodes may have asked for that run at once (or whose exits are not
/// answered yet); a start beyond it is answered at once with an exit that never ran.
pub const MAX_ASKED: usize = 1024;

/// Who asked for which child, and whom each exit answers: the core's rules, keyed by slot.
pub(super) type AskedTable = AskedChildren<MAX_ASKED>;

/// What an asked-for child's slot holds beside its spec (who asked is in the
/// [`AskedTable`], by the slot's index).
pub(super) struct Asked {
    /// The result pipe's read end, while it runs.
    pub(super) result: Option<OwnedFd>,
}

/// A start request, parsed.
struct StartRequest {
    reference: u64,
    id: String,
    parent: String,
    program: String,
    args: Vec<String>,
    input: Option<String>,
    cwd: Option<String>,
    /// The asking node's process ([`ENV_PROCESS`]), whose environment the child gets.
    process: Option<String>,
}

fn parse_start(payload: &[u8]) -> Result<StartRequest, String> {
    let v: Value = serde_json::from_slice(payload).map_err(|e| format!("not JSON: {e}"))?;
    let text = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("'{k}' is missing or not a string"))
    };
    let reference = v
        .get("ref")
        .and_then(Value::as_u64)
        .ok_or("'ref' is missing or not a number")?;
    let args = match v.get("args") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|s| {
                s.as_str()
                    .map(str::to_string)
                    .ok_or("'args' holds a non-string")
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("'args' is not an array".into()),
    };
    let input = match v.get("input") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err("'input' is not a string".into()),
    };
    let cwd = v.get("cwd").and_then(Value::as_str).map(str::to_string);
    let process = v.get("process").and_then(Value::as_str).map(str::to_string);
    Ok(StartRequest {
        reference,
        id: text("id")?,
        parent: text("parent")?,
        program: text("program")?,
        args,
        input,
        cwd,
        process,
    })
}

/// The payload of an [`EXIT_EVENT`].
pub(super) fn exit_payload(
    reference: u64,
    pid: Option<u32>,
    exit: Option<Exit>,
    message: &str,
    output: Option<&[u8]>,
) -> Vec<u8> {
    let (status, signal) = match exit {
        Some(Exit::Code(c)) => (Value::from(c), Value::Null),
        Some(Exit::Signal(s)) => (Value::Null, Value::from(s)),
        None => (Value::Null, Value::Null),
    };
    serde_json::json!({
        "ref": reference,
        "pid": pid,
        "status": status,
        "signal": signal,
        "message": message,
        "output": output.map(|o| String::from_utf8_lossy(o).into_owned()),
    })
    .to_string()
    .into_bytes()
}

/// What the child wrote to its result pipe (at most [`MAX_RESULT`] bytes), trimmed.
pub(super) fn read_result(fd: &OwnedFd) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = rustix::io::read(fd, &mut buf) {
        let room = MAX_RESULT - out.len();
        out.extend_from_slice(&buf[..n.min(room)]);
        if n >= room {
            break;
        }
    }
    out.trim_ascii().to_vec()
}

impl Supervisor {
    /// Handles what came to [`SUPERVISOR_PORT`].
    pub(super) fn serve_requests(&mut self) {
        let Some(port) = self.port.clone() else {
            return;
        };
        while let Some(m) = self.node.recv_port_unacknowledged(&port) {
            self.node.acknowledge_port(&m);
            match m.event.as_str() {
                START_EVENT => match parse_start(&m.payload) {
                    Ok(r) => self.add_asked(&m.from, r),
                    Err(e) => self.emit(SupervisorEvent::Log(format!(
                        "{START_EVENT} from '{}' refused: {e}",
                        m.from
                    ))),
                },
                STOP_EVENT => {
                    let reference = serde_json::from_slice::<Value>(&m.payload)
                        .ok()
                        .and_then(|v| v.get("ref").and_then(Value::as_u64));
                    // Only the requester's own child, by its reference.
                    let key = reference.and_then(|r| self.asked.stop(&m.from, r));
                    if let Some(key) = key {
                        self.stop_asked(key as usize);
                    }
                }
                other => self.emit(SupervisorEvent::Log(format!(
                    "'{other}' from '{}' to {port}: not a request it knows",
                    m.from
                ))),
            }
        }
    }

    /// Stops asked-for child `i`: SIGTERM (SIGKILL after the grace) when it runs; when it
    /// has not started yet (the stop came with its start), it never will, and its asker
    /// hears so at once.
    fn stop_asked(&mut self, i: usize) {
        match &self.slots[i].running {
            Some(r) if r.stop.is_none() => self.terminate(i, StopReason::App),
            Some(_) => {}
            None if self.slots[i].state == ChildState::Waiting => {
                self.slots[i].state = ChildState::Stopped;
                self.slots[i].since = Instant::now();
                let why = format!(
                    "child process '{}' stopped before it started",
                    self.slots[i].spec.name
                );
                self.asked_ended(i, None, None, &why);
            }
            // It ended already: its exit is on its way.
            None => {}
        }
    }

    /// Adds (or reuses) the slot of an asked-for child; the next tick starts it.
    fn add_asked(&mut self, requester: &str, r: StartRequest) {
        if self.phase != super::Phase::Running {
            let payload = exit_payload(r.reference, None, None, "the app is stopping", None);
            self.answer(requester, &payload);
            return;
        }
        match self.asked.admit(requester, r.reference, &r.parent) {
            Ok(()) => {}
            Err(Refusal::Repeated) => {
                self.emit(SupervisorEvent::Log(format!(
                    "{START_EVENT} from '{requester}' for '{}' ignored: {}",
                    r.id,
                    Refusal::Repeated
                )));
                return;
            }
            Err(why) => {
                let why = format!("child process '{}' not started: {why}", r.id);
                self.emit(SupervisorEvent::Log(why.clone()));
                let payload = exit_payload(r.reference, None, None, &why, None);
                self.answer(requester, &payload);
                return;
            }
        }
        let mut spec = ChildSpec::new(&r.id, &r.program).args(r.args);
        // The environment its parent's process was given (the manifest's `env` of that
        // process, or of the process that asked for it in turn), as a node spawning the child
        // itself would pass its own on.
        let parent = r.process.as_deref().and_then(|name| {
            let asked = &self.asked;
            let named =
                |&(i, s): &(usize, &Slot)| s.spec.name == name && !asked.is_answered(i as u32);
            let mut slots = self.slots.iter().enumerate();
            slots
                .clone()
                .find(|e| named(e) && e.1.running.is_some())
                .or_else(|| slots.find(named))
                .map(|(_, s)| s)
        });
        if let Some(parent) = parent {
            let own = [
                ENV_MACHINE_ID,
                ENV_INPUT,
                crate::node::ENV_RESULT_FD,
                ENV_PROCESS,
            ];
            spec.env.extend(
                parent
                    .spec
                    .env
                    .iter()
                    .filter(|(k, _)| !own.iter().any(|o| k == o))
                    .cloned(),
            );
        }
        let mut spec = spec
            .env(ENV_MACHINE_ID, &r.id)
            .restart(Restart::Never)
            // (Its parent waits for its id itself; a plain program never registers one.)
            .readiness(Readiness::Started);
        spec.cwd = r.cwd.map(Into::into);
        if let Some(input) = r.input {
            spec = spec.env(ENV_INPUT, input);
        }
        let now = Instant::now();
        let slot = Slot::new(spec, now, Some(Asked { result: None }));
        // The slot of an asked-for child whose exit was answered is free: the next one takes
        // it, whatever its name, so that the table holds no more slots than children ever
        // ran at once (an app may invoke thousands of short jobs).
        let i = match self.asked.free_key().map(|k| k as usize) {
            Some(i) => {
                let old = std::mem::replace(&mut self.slots[i], slot);
                // Its pipes and notification socket go on (their tokens are the slot's).
                self.slots[i].pipes = old.pipes;
                self.slots[i].notify = old.notify;
                self.slots[i].started_once = old.started_once;
                i
            }
            None => {
                self.slots.push(slot);
                self.policy.add_child();
                self.slots.len() - 1
            }
        };
        // (Admitted above: it is taken.)
        let _ = self
            .asked
            .start(i as u32, requester, r.reference, &r.parent);
    }

    /// Sends `payload` as [`EXIT_EVENT`] to whoever asked.
    pub(super) fn answer(&mut self, requester: &str, payload: &[u8]) {
        let Some(port) = self.port.clone() else {
            return;
        };
        if let Err(e) = self
            .node
            .send_from_port(&port, requester, EXIT_EVENT, payload)
        {
            self.emit(SupervisorEvent::Log(format!(
                "telling '{requester}' of its child's exit: {e}"
            )));
        }
    }

    /// Child `i`, asked for, ended with `exit` (or could not start: `exit` is `None`): its
    /// exit is answered, once; the slot is then free for the next asked-for child (its
    /// pipes' and notification socket's tokens are the slot's) and no longer listed.
    pub(super) fn asked_ended(
        &mut self,
        i: usize,
        pid: Option<u32>,
        exit: Option<Exit>,
        why: &str,
    ) {
        let Some(answer) = self.asked.ended(i as u32) else {
            return;
        };
        let (requester, reference) = (answer.requester.to_string(), answer.reference);
        let result = self.slots[i].asked.as_mut().and_then(|a| a.result.take());
        let output = match (&result, exit) {
            (Some(fd), Some(Exit::Code(0))) => Some(read_result(fd)),
            _ => None,
        };
        let message = match exit {
            Some(e) => format!("child process '{}' ended with {e}", self.slots[i].spec.name),
            None => why.to_string(),
        };
        let payload = exit_payload(reference, pid, exit, &message, output.as_deref());
        self.answer(&requester, &payload);
    }

    /// Stops asked-for children whose requester or parent machine left the bus.
    pub(super) fn stop_orphans(&mut self) {
        if self.asked.live_count() == 0 {
            return;
        }
        // (The supervisor's node may serve the bus: this runs every loop turn, so the
        // registry is looked into, not copied.)
        let node = &self.node;
        let orphans: Vec<usize> = self
            .asked
            .orphans(|id| node.is_registered(id))
            .map(|k| k as usize)
            .filter(|&i| {
                self.slots[i]
                    .running
                    .as_ref()
                    .is_some_and(|r| r.stop.is_none())
            })
            .collect();
        for i in orphans {
            let name = self.slots[i].spec.name.clone();
            self.emit(SupervisorEvent::Log(format!(
                "{name}: whoever asked for it left the bus; stopping it"
            )));
            self.terminate(i, StopReason::App);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_request_is_parsed_and_a_bad_one_named() {
        let r = parse_start(
            br#"{"ref":3,"id":"p/w","parent":"p","program":"interstate","args":["run","c.json"],"input":"{\"n\":1}"}"#,
        )
        .unwrap();
        assert_eq!(
            (r.reference, r.id.as_str(), r.parent.as_str()),
            (3, "p/w", "p")
        );
        assert_eq!(r.args, ["run", "c.json"]);
        assert_eq!(r.input.as_deref(), Some("{\"n\":1}"));
        let e = parse_start(br#"{"ref":3,"id":"p/w","program":"x"}"#)
            .err()
            .unwrap();
        assert!(e.contains("'parent'"), "{e}");
        assert!(parse_start(b"nope").is_err());
    }

    #[test]
    fn an_exit_carries_the_reference_status_and_output() {
        let p = exit_payload(7, Some(42), Some(Exit::Code(0)), "done", Some(b"{\"x\":1}"));
        let v: Value = serde_json::from_slice(&p).unwrap();
        assert_eq!(v["ref"], 7);
        assert_eq!(v["pid"], 42);
        assert_eq!(v["status"], 0);
        assert_eq!(v["signal"], Value::Null);
        assert_eq!(v["output"], "{\"x\":1}");
        let p = exit_payload(8, Some(42), Some(Exit::Signal(9)), "killed", None);
        let v: Value = serde_json::from_slice(&p).unwrap();
        assert_eq!(
            (v["status"].clone(), v["signal"].clone()),
            (Value::Null, Value::from(9))
        );
    }
}

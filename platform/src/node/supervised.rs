//! Child processes asked of the supervisor: a node running under `interstate up` (its
//! environment names the supervisor's port, [`ENV_SUPERVISOR`]) does not spawn the processes
//! its machines invoke but asks the supervisor for them, so that they are supervised, listed
//! in `up status` and stopped by `interstate down` with the rest of the app. What the node
//! does with them otherwise (held messages, the parent's done and error events) is the same
//! as for a child it spawns (see `child_process.rs`); the protocol is the supervisor's
//! (`crate::supervisor`, `asked.rs`).
//!
//! The node opens the port `interstate.children.<pid>` for the supervisor's answers. A
//! start the supervisor does not take (it is gone: a delivery failure) is the parent's
//! `xstate.error.actor.<id>`; when the node's process ends, its port leaves the bus and the
//! supervisor stops the children it asked for.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use interstate_core::machine::{CHILD_DONE_PREFIX, CHILD_ERROR_PREFIX};
use serde_json::Value;

use super::child_process::{describe, error_payload, Phase, Supervised};
use super::{Node, DELIVERY_ERROR_EVENT};
use crate::supervisor::{ENV_PROCESS, ENV_SUPERVISOR, EXIT_EVENT, START_EVENT};

/// An exit the supervisor reported, parsed.
struct ExitReport {
    reference: u64,
    pid: Option<u32>,
    status: Option<ExitStatus>,
    message: String,
    output: Vec<u8>,
}

fn parse_exit(payload: &[u8]) -> Option<ExitReport> {
    let v: Value = serde_json::from_slice(payload).ok()?;
    let num = |k: &str| v.get(k).and_then(Value::as_i64);
    // A wait status: the exit code in the second byte, or the signal in the low bits.
    let status = match (num("status"), num("signal")) {
        (Some(code), _) => Some(ExitStatus::from_raw(((code as i32) & 0xff) << 8)),
        (None, Some(sig)) => Some(ExitStatus::from_raw((sig as i32) & 0x7f)),
        (None, None) => None,
    };
    Some(ExitReport {
        reference: v.get("ref")?.as_u64()?,
        pid: num("pid").and_then(|p| u32::try_from(p).ok()),
        status,
        message: v
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        output: v
            .get("output")
            .and_then(Value::as_str)
            .map(|o| o.as_bytes().to_vec())
            .unwrap_or_default(),
    })
}

impl Node {
    /// Asks the supervisor for child `n` (queued, startable). Returns false when this node
    /// cannot ask (its port cannot be opened): it then spawns the child itself.
    pub(super) fn ask_supervisor(&mut self, n: usize) -> bool {
        if self.child_procs.port.is_none() {
            let port = format!("interstate.children.{}", std::process::id());
            if let Err(e) = self.open_port_now(&port) {
                (self.log)(&format!(
                    "{ENV_SUPERVISOR} is set, but port '{port}' cannot be opened ({e}): this \
                     node starts its child processes itself"
                ));
                self.child_procs.supervisor = None;
                return false;
            }
            self.child_procs.port = Some(port);
        }
        let procs = &mut self.child_procs;
        let reference = procs.next_reference;
        procs.next_reference += 1;
        let c = &mut procs.children[n];
        let args: Vec<String> = c
            .actor
            .arguments()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let payload = serde_json::json!({
            "ref": reference,
            "id": c.id,
            "parent": c.parent,
            "program": c.actor.program().to_string_lossy(),
            "args": args,
            "input": c.input,
            // (Relative paths in its arguments are this node's.)
            "cwd": std::env::current_dir().ok(),
            // Whose environment the child gets: this process's, as the manifest gave it.
            "process": std::env::var(ENV_PROCESS).ok(),
        })
        .to_string()
        .into_bytes();
        c.supervised = Some(Supervised {
            reference,
            start_seq: 0,
        });
        c.phase = Phase::Starting;
        (self.log)(&format!(
            "child process '{}' asked of the supervisor (src '{}')",
            c.id, c.src
        ));
        procs.outgoing.push_back((START_EVENT, payload, reference));
        true
    }

    /// [`Node::open_port`] without waiting for the hub's answer: this runs inside a loop
    /// turn, which must not run another. (What the port sends waits until the hub accepts
    /// it.)
    fn open_port_now(&mut self, id: &str) -> Result<(), crate::PlatformError> {
        self.check_new_id(id)?;
        self.local
            .ports
            .insert(id.to_string(), std::collections::VecDeque::new());
        if let Err(e) = self.register_on_bus_now(id) {
            self.local.ports.remove(id);
            return Err(e);
        }
        Ok(())
    }

    /// Sends the requests waiting for the supervisor, and takes its answers.
    pub(super) fn talk_to_supervisor(&mut self) {
        let (Some(port), Some(to)) = (
            self.child_procs.port.clone(),
            self.child_procs.supervisor.clone(),
        ) else {
            return;
        };
        // One attempt each, in order: while the link to the hub is full (the bus holds as
        // much of this process's messages as it may), the requests wait here for the next
        // turn, as a machine's sends wait in its outbox. (Never `send_from_port`, which would
        // run loop turns inside this one while it waits.)
        while let Some((event, payload, reference)) = self.child_procs.outgoing.pop_front() {
            match self.try_send_from_port(&port, &to, event, &payload) {
                Ok(Some(seq)) => {
                    if event == START_EVENT {
                        if let Some(s) = self.supervised_mut(reference) {
                            s.start_seq = seq;
                        }
                    }
                }
                Ok(None) => {
                    self.child_procs
                        .outgoing
                        .push_front((event, payload, reference));
                    break;
                }
                Err(e) => {
                    let why = format!("asking the supervisor ({to}): {e}");
                    self.supervised_failed(reference, &why);
                }
            }
        }
        while let Some(m) = self.recv_port_unacknowledged(&port) {
            self.acknowledge_port(&m);
            match m.event.as_str() {
                EXIT_EVENT => match parse_exit(&m.payload) {
                    Some(r) => self.supervised_exited(r),
                    None => (self.log)(&format!("{EXIT_EVENT} from '{}' not understood", m.from)),
                },
                DELIVERY_ERROR_EVENT => {
                    let v: Option<Value> = serde_json::from_slice(&m.payload).ok();
                    let seq = v.as_ref().and_then(|v| v.get("seq")?.as_u64());
                    let why = v
                        .as_ref()
                        .and_then(|v| v.get("message")?.as_str().map(str::to_string))
                        .unwrap_or_default();
                    let reference = self.child_procs.children.iter().find_map(|c| {
                        let s = c.supervised.as_ref()?;
                        (Some(s.start_seq) == seq).then_some(s.reference)
                    });
                    if let Some(reference) = reference {
                        let why = format!("the supervisor ({to}) did not take the request: {why}");
                        self.supervised_failed(reference, &why);
                    }
                }
                _ => {}
            }
        }
    }

    fn supervised_mut(&mut self, reference: u64) -> Option<&mut Supervised> {
        self.child_procs
            .children
            .iter_mut()
            .filter_map(|c| c.supervised.as_mut())
            .find(|s| s.reference == reference)
    }

    /// The supervisor could not be asked to start the child `reference`.
    fn supervised_failed(&mut self, reference: u64, why: &str) {
        self.supervised_exited(ExitReport {
            reference,
            pid: None,
            status: None,
            message: why.to_string(),
            output: Vec::new(),
        });
    }

    /// The supervisor reports the child `r.reference` gone: its parent hears of it, unless
    /// its state was left (then it is forgotten).
    fn supervised_exited(&mut self, r: ExitReport) {
        let Some(n) = self.child_procs.children.iter().position(|c| {
            c.supervised
                .as_ref()
                .is_some_and(|s| s.reference == r.reference)
        }) else {
            return;
        };
        let c = &mut self.child_procs.children[n];
        let pid = r.pid.map_or("no pid".to_string(), |p| format!("pid {p}"));
        let what = r.status.map_or(r.message.clone(), describe);
        match c.phase {
            Phase::Finished => return,
            Phase::Stopping { .. } => {
                (self.log)(&format!(
                    "child process '{}' ({pid}) stopped: it {what}",
                    c.id
                ));
                self.child_procs.children.remove(n);
                return;
            }
            _ => {}
        }
        if !c.held.is_empty() {
            (self.log)(&format!(
                "child process '{}' exited before it joined the bus: {} messages to it were \
                 dropped",
                c.id,
                c.held.len()
            ));
            c.held.clear();
        }
        let (event, payload) = if r.status.is_some_and(|s| s.success()) {
            (format!("{CHILD_DONE_PREFIX}{}", c.invoke_id), r.output)
        } else {
            let message = match r.status {
                Some(_) => format!("child process '{}' ({pid}, src '{}') {what}", c.id, c.src),
                None => r.message,
            };
            (self.log)(&message);
            let event = format!("{CHILD_ERROR_PREFIX}{}", c.invoke_id);
            (event, error_payload(&message, r.pid, r.status))
        };
        self.child_procs
            .due
            .push_back((c.parent.clone(), c.id.clone(), event, payload));
        c.phase = Phase::Finished;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exit_report_becomes_a_wait_status() {
        let r = parse_exit(
            br#"{"ref":2,"pid":10,"status":3,"signal":null,"message":"m","output":null}"#,
        )
        .unwrap();
        assert_eq!((r.reference, r.pid), (2, Some(10)));
        assert_eq!(r.status.unwrap().code(), Some(3));
        let r =
            parse_exit(br#"{"ref":2,"pid":10,"status":null,"signal":9,"message":"m"}"#).unwrap();
        assert_eq!(r.status.unwrap().signal(), Some(9));
        let r =
            parse_exit(br#"{"ref":4,"pid":null,"status":0,"signal":null,"output":"{\"n\":1}"}"#)
                .unwrap();
        assert!(r.status.unwrap().success());
        assert_eq!(r.output, b"{\"n\":1}");
        assert!(parse_exit(b"{}").is_none());
    }
}

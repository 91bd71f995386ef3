//! `interstate buses`: the buses in the bus directory, each with its hub's pid and how many
//! machines are registered on it; and the list of served buses that an error about a bus
//! with no hub gives.
//!
//! A bus `NAME` is the socket `NAME.sock` in the bus directory (its hub also serves
//! `NAME.shm.sock`, not a bus of its own). The hub's pid is the socket peer's, asked with
//! `SO_PEERCRED` on a connection that sends nothing; a socket no process answers on is left
//! over from a hub that died, listed with no pid.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use interstate::bus::{busdir, Node, PlatformError, Role};

use crate::outln;

/// One bus of the directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusInfo {
    /// The bus name.
    pub name: String,
    /// Its socket.
    pub socket: PathBuf,
    /// The pid of the process serving it, when one answers.
    pub hub_pid: Option<u32>,
}

/// The buses in `dir`, sorted by name, with their hubs' pids.
pub fn list(dir: &Path) -> Vec<BusInfo> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let files: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    let mut names: Vec<&str> = files
        .iter()
        .filter_map(|f| f.strip_suffix(".sock"))
        // `NAME.shm.sock` beside `NAME.sock` is the shared-memory socket of bus NAME.
        .filter(|n| {
            n.strip_suffix(".shm")
                .is_none_or(|bus| !files.iter().any(|f| *f == format!("{bus}.sock")))
        })
        .filter(|n| busdir::check_bus_name(n).is_ok())
        .collect();
    names.sort_unstable();
    names
        .into_iter()
        .map(|name| {
            let socket = busdir::socket_path(dir, name);
            let hub_pid = hub_pid(&socket);
            BusInfo {
                name: name.to_string(),
                socket,
                hub_pid,
            }
        })
        .collect()
}

/// The pid of the process listening on `socket`, if one is.
fn hub_pid(socket: &Path) -> Option<u32> {
    let stream = UnixStream::connect(socket).ok()?;
    let cred = rustix::net::sockopt::socket_peercred(&stream).ok()?;
    Some(cred.pid.as_raw_nonzero().get() as u32)
}

/// How many machines other processes registered on `bus`: joins it as a client and reads
/// the hub's registry (without this process's own entries).
fn machine_count(bus: &str) -> Result<usize, String> {
    let mut config = super::node_config(Some(bus))?;
    config.role = Role::Client;
    let mut node = Node::new(config).map_err(|e| e.to_string())?;
    let synced = node
        .run_until(Duration::from_secs(5), |n| n.registry_synced())
        .map_err(|e| e.to_string())?;
    if !synced {
        return Err(format!(
            "the hub of bus '{bus}' sent no registry within 5 s"
        ));
    }
    let me = std::process::id();
    Ok(node
        .registry()
        .entries()
        .into_iter()
        .filter(|e| e.pid != me)
        .count())
}

/// `interstate buses [--json]`.
pub fn buses(as_json: bool) -> Result<(), String> {
    let dir = super::node_config(None)?.dir;
    let buses = list(&dir);
    let rows: Vec<(BusInfo, Option<usize>)> = buses
        .into_iter()
        .map(|b| {
            let machines = b.hub_pid.and_then(|_| machine_count(&b.name).ok());
            (b, machines)
        })
        .collect();
    if as_json {
        let list: Vec<_> = rows
            .iter()
            .map(|(b, m)| {
                json!({"bus": b.name, "hub_pid": b.hub_pid, "machines": m, "socket": b.socket})
            })
            .collect();
        return outln!("{}", serde_json::Value::Array(list));
    }
    if rows.is_empty() {
        eprintln!("interstate: no bus in {}", dir.display());
        return Ok(());
    }
    outln!("{:<24} {:>8} {:>9}", "BUS", "HUB PID", "MACHINES")?;
    for (b, m) in rows {
        let dash = || "-".to_string();
        outln!(
            "{:<24} {:>8} {:>9}{}",
            b.name,
            b.hub_pid.map_or_else(dash, |p| p.to_string()),
            m.map_or_else(dash, |m| m.to_string()),
            if b.hub_pid.is_none() {
                "  (no hub answers: a socket left by a hub that died)"
            } else {
                ""
            }
        )?;
    }
    Ok(())
}

/// A node error as text; "no hub serves this bus" also lists the buses that are served.
pub fn no_hub_hint(e: &PlatformError) -> String {
    let PlatformError::NoHub { path } = e else {
        return e.to_string();
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let served: Vec<String> = list(dir)
        .into_iter()
        .filter(|b| b.hub_pid.is_some())
        .map(|b| b.name)
        .collect();
    if served.is_empty() {
        format!("{e}; no bus is served in {}", dir.display())
    } else {
        format!(
            "{e}; buses served in {}: {} (choose one with --bus or INTERSTATE_BUS)",
            dir.display(),
            served.join(", ")
        )
    }
}

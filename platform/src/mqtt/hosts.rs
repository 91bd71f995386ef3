//! Where the bridged machines live, for `interstate ps`: each bridge writes, beside its
//! bus's socket, `NAME.bridge-PID.hosts`, a JSON object `{"pid": PID, "machines": {ID:
//! {"host": HOST, "node": NODE}}}` naming the host and node of every remote machine its
//! ports stand for (`NODE/ID` aliases included). The bus's registry says only that the
//! bridge's process hosts them. The file is replaced whole (written aside, then renamed)
//! when the ports change, and removed when the bridge stops; a reader uses it only for
//! registry entries of that pid, so a file left by a killed bridge names nothing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

/// The file of the bridge with process id `pid` on the bus whose socket is `socket`.
pub fn hosts_file(socket: &Path, pid: u32) -> PathBuf {
    let name = socket
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    socket.with_file_name(format!("{name}.bridge-{pid}.hosts"))
}

/// Writes the file: machine id -> (host, node).
pub fn write_hosts(
    path: &Path,
    pid: u32,
    machines: &HashMap<String, (String, String)>,
) -> std::io::Result<()> {
    let list: serde_json::Map<String, Value> = machines
        .iter()
        .map(|(id, (host, node))| (id.clone(), json!({"host": host, "node": node})))
        .collect();
    let body = json!({"pid": pid, "machines": list}).to_string();
    let tmp = path.with_extension("hosts.tmp");
    std::fs::write(&tmp, body)?;
    std::fs::rename(&tmp, path)
}

/// Every bridge's file for the bus whose socket is `socket`, read: (bridge pid, machine id)
/// -> (host, node). Unreadable or malformed files are skipped.
pub fn read_hosts(socket: &Path) -> HashMap<(u32, String), (String, String)> {
    let mut out = HashMap::new();
    let Some(dir) = socket.parent() else {
        return out;
    };
    let stem = socket
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = format!("{stem}.bridge-");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with(&prefix) || !name.ends_with(".hosts") {
            continue;
        }
        let Some(v) = std::fs::read(e.path())
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        else {
            continue;
        };
        let Some(pid) = v["pid"].as_u64().and_then(|p| u32::try_from(p).ok()) else {
            continue;
        };
        if let Some(m) = v["machines"].as_object() {
            for (id, where_) in m {
                let host = where_["host"].as_str().unwrap_or_default().to_string();
                let node = where_["node"].as_str().unwrap_or_default().to_string();
                out.insert((pid, id.clone()), (host, node));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_file_reads_back_for_its_bus_only() {
        let dir = std::env::temp_dir().join(format!("istr-hosts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("plant.sock");
        let mut m = HashMap::new();
        m.insert(
            "worker".to_string(),
            ("box-b".to_string(), "host-b".to_string()),
        );
        write_hosts(&hosts_file(&socket, 42), 42, &m).unwrap();
        write_hosts(&hosts_file(&dir.join("other.sock"), 43), 43, &m).unwrap();
        let read = read_hosts(&socket);
        assert_eq!(read.len(), 1);
        assert_eq!(
            read.get(&(42, "worker".to_string())),
            Some(&("box-b".to_string(), "host-b".to_string()))
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

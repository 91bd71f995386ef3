//! The `sd_notify` protocol, both ends: telling a service manager (systemd, or interstate's
//! [supervisor](crate::supervisor)) that this process is ready, and receiving such messages.
//!
//! A service manager that wants to hear from a process sets `NOTIFY_SOCKET` in its
//! environment to the path of a Unix datagram socket (or `@name` for an abstract socket). The
//! process sends newline-separated `KEY=VALUE` assignments there, one datagram each:
//! `READY=1` when it serves, `STATUS=...` to describe itself, `STOPPING=1` when it begins to
//! shut down. Without `NOTIFY_SOCKET` every call here does nothing and says so, so a program
//! can call [`ready`] unconditionally.
//!
//! ```no_run
//! // ... bind sockets, register machines ...
//! interstate_platform::notify::ready().ok(); // READY=1, if a manager listens
//! ```

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};

/// The environment variable naming the manager's socket.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Sends `state` (e.g. `"READY=1\nSTATUS=serving"`) to the socket named by `NOTIFY_SOCKET`.
/// Returns `Ok(false)` when the variable is not set (nothing to tell), `Ok(true)` once sent.
pub fn notify(state: &str) -> std::io::Result<bool> {
    match std::env::var_os(NOTIFY_SOCKET).filter(|s| !s.is_empty()) {
        Some(socket) => notify_to(&socket, state).map(|()| true),
        None => Ok(false),
    }
}

/// Sends `state` to the notification socket `socket`: a path, or `@name` for an abstract
/// socket (as systemd writes it).
pub fn notify_to(socket: &OsStr, state: &str) -> std::io::Result<()> {
    let addr = socket_addr(socket)?;
    let sock = UnixDatagram::unbound()?;
    sock.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

fn socket_addr(socket: &OsStr) -> std::io::Result<SocketAddr> {
    let bytes = socket.as_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        return SocketAddr::from_abstract_name(name);
    }
    if !bytes.starts_with(b"/") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "{NOTIFY_SOCKET}={} is neither an absolute path nor an @abstract name",
                socket.to_string_lossy()
            ),
        ));
    }
    SocketAddr::from_pathname(Path::new(socket))
}

/// `READY=1`: the process serves (see [`notify`]).
pub fn ready() -> std::io::Result<bool> {
    notify("READY=1")
}

/// `READY=1` with a `STATUS=` line describing what is ready.
pub fn ready_with_status(status: &str) -> std::io::Result<bool> {
    notify(&format!("READY=1\nSTATUS={}", one_line(status)))
}

/// `STATUS=...`: a one-line description of the process's state.
pub fn status(status: &str) -> std::io::Result<bool> {
    notify(&format!("STATUS={}", one_line(status)))
}

/// `STOPPING=1`: the process begins to shut down.
pub fn stopping() -> std::io::Result<bool> {
    notify("STOPPING=1")
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// One notification received: its assignments, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Notification {
    /// `(KEY, VALUE)` pairs, one per line of the datagram.
    pub fields: Vec<(String, String)>,
}

impl Notification {
    /// Parses a datagram: newline-separated `KEY=VALUE` lines; others are ignored.
    pub fn parse(datagram: &[u8]) -> Notification {
        let text = String::from_utf8_lossy(datagram);
        let fields = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Notification { fields }
    }
    /// The last value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    /// Whether it says `READY=1`.
    pub fn is_ready(&self) -> bool {
        self.get("READY") == Some("1")
    }
    /// Whether it says `STOPPING=1`.
    pub fn is_stopping(&self) -> bool {
        self.get("STOPPING") == Some("1")
    }
}

/// The receiving end: a non-blocking datagram socket bound at a path (mode 0600), to be
/// watched in a mio loop and read with [`recv`](Self::recv). The socket file is removed on
/// drop.
#[derive(Debug)]
pub struct NotifyListener {
    socket: mio::net::UnixDatagram,
    path: PathBuf,
}

impl NotifyListener {
    /// Binds a notification socket at `path`, replacing a stale file there.
    pub fn bind(path: &Path) -> std::io::Result<NotifyListener> {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let socket = mio::net::UnixDatagram::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        Ok(NotifyListener {
            socket,
            path: path.into(),
        })
    }
    /// Where it is bound: the value for a child's `NOTIFY_SOCKET`.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The next notification waiting, if any (never blocks).
    pub fn recv(&self) -> Option<Notification> {
        let mut buf = [0u8; 4096];
        loop {
            match self.socket.recv(&mut buf) {
                Ok(n) => return Some(Notification::parse(&buf[..n])),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return None,
            }
        }
    }
    /// The socket, to register in a mio registry (readable).
    pub fn source(&mut self) -> &mut mio::net::UnixDatagram {
        &mut self.socket
    }
}

impl Drop for NotifyListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_assignments() {
        let n = Notification::parse(b"READY=1\nSTATUS=serving bus x\nnonsense\n");
        assert!(n.is_ready());
        assert_eq!(n.get("STATUS"), Some("serving bus x"));
        assert!(!n.is_stopping());
        assert!(!Notification::parse(b"READY=0").is_ready());
    }

    #[test]
    fn sends_to_a_path_and_to_nothing() {
        let dir = std::env::temp_dir().join(format!("isnotify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("n.sock");
        let listener = NotifyListener::bind(&path).unwrap();
        notify_to(path.as_os_str(), "READY=1\nSTATUS=ok").unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let got = loop {
            if let Some(n) = listener.recv() {
                break n;
            }
            assert!(std::time::Instant::now() < deadline, "no datagram");
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        assert!(got.is_ready());
        assert_eq!(got.get("STATUS"), Some("ok"));
        drop(listener);
        assert!(!path.exists(), "the socket file is removed on drop");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(notify_to(OsStr::new("relative"), "READY=1").is_err());
    }
}

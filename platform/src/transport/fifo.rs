//! Named pipes (FIFOs): the classic client/server scheme.
//!
//! The hub owns one well-known request FIFO, `<bus>.fifo`, in the bus directory (0700, so only
//! its user can create files there). A client creates its own pair, `<bus>.<pid>.<n>.up`
//! (client to hub) and `<bus>.<pid>.<n>.down` (hub to client), mode 0600, opens the read end of
//! `down`, and announces the pair with one line on the request FIFO:
//!
//! ```text
//! ISFIFO1 <pid> <up file name> <down file name>\n
//! ```
//!
//! The line is shorter than `PIPE_BUF`, so concurrent clients' lines never interleave. The hub
//! checks both names (in the bus directory, of this bus), that both are FIFOs, and their owner
//! (the peer's uid and gid for admission, as `SO_PEERCRED` gives for sockets), then opens its
//! ends. The client unlinks both files as soon as its write end is open: from then on the
//! pipes exist only as open descriptors, so no file is left behind whichever side crashes, and
//! each side sees the other's exit as end-of-file. Files from a client that crashed during the
//! set-up are removed at the next start of a hub or of a client.

use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration as StdDuration, Instant as StdInstant};

use interstate_core::hub::PeerCredentials;
use interstate_core::TransportKind;
use mio::unix::pipe::{Receiver, Sender};
use mio::{Interest, Registry, Token};
use rustix::fs::{mkfifoat, open, stat, FileType, Mode, OFlags, CWD};

use super::{LinkIo, UNKNOWN_PEER};

/// The request FIFO of a bus, beside its socket: `<bus>.fifo`.
pub fn request_path(dir: &Path, bus: &str) -> PathBuf {
    dir.join(format!("{bus}.fifo"))
}

const HELLO: &str = "ISFIFO1";

/// One side of a FIFO link.
pub struct FifoLink {
    rx: Receiver,
    tx: Sender,
    tx_registered: bool,
    peer: PeerCredentials,
    /// Bytes have arrived: from now on end-of-file means the peer is gone. Before, it only
    /// means its write end is not open yet (a FIFO reads as empty-and-closed until then).
    heard: bool,
}

fn open_fifo(path: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    Ok(open(
        path,
        flags | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )?)
}

/// Whether process `pid` is alive (signal 0).
fn alive(pid: i32) -> bool {
    rustix::process::Pid::from_raw(pid)
        .is_some_and(|p| rustix::process::test_kill_process(p).is_ok())
}

/// Removes FIFO files of `bus` left by clients that died during the set-up.
pub fn remove_stale(dir: &Path, bus: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let prefix = format!("{bus}.");
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        if !(rest.ends_with(".up") || rest.ends_with(".down")) {
            continue;
        }
        let pid = rest.split('.').next().and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| !alive(p)) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

impl FifoLink {
    /// Client side: creates a FIFO pair, announces it on the bus's request FIFO, and waits (up
    /// to `timeout`) for the hub to open its ends.
    pub fn connect(dir: &Path, bus: &str, timeout: StdDuration) -> io::Result<FifoLink> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        remove_stale(dir, bus);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pid = std::process::id();
        let up_name = format!("{bus}.{pid}.{n}.up");
        let down_name = format!("{bus}.{pid}.{n}.down");
        let (up, down) = (dir.join(&up_name), dir.join(&down_name));
        let cleanup = |up: &Path, down: &Path| {
            let _ = std::fs::remove_file(up);
            let _ = std::fs::remove_file(down);
        };
        let result = (|| {
            mkfifoat(CWD, &up, Mode::from_raw_mode(0o600))?;
            mkfifoat(CWD, &down, Mode::from_raw_mode(0o600))?;
            let down_rx = open_fifo(&down, OFlags::RDONLY)?;
            // ENXIO here means nobody reads the request FIFO: no hub.
            let request = open_fifo(&request_path(dir, bus), OFlags::WRONLY).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!("no hub reads {bus}.fifo: {e}"),
                )
            })?;
            let line = format!("{HELLO} {pid} {up_name} {down_name}\n");
            let written = rustix::io::write(&request, line.as_bytes())?;
            if written != line.len() {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "the hello line was cut short",
                ));
            }
            drop(request);
            // The write end of `up` opens once the hub has opened its read end.
            let start = StdInstant::now();
            let up_tx = loop {
                match open_fifo(&up, OFlags::WRONLY) {
                    Ok(fd) => break fd,
                    Err(e)
                        if e.raw_os_error() == Some(rustix::io::Errno::NXIO.raw_os_error())
                            && start.elapsed() < timeout =>
                    {
                        std::thread::sleep(StdDuration::from_millis(1));
                    }
                    Err(e) => {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("the hub did not open the link: {e}"),
                        ))
                    }
                }
            };
            Ok(FifoLink {
                rx: Receiver::from(down_rx),
                tx: Sender::from(up_tx),
                tx_registered: false,
                peer: UNKNOWN_PEER,
                heard: false,
            })
        })();
        // Open descriptors keep the pipes; the names are no longer needed by anyone.
        cleanup(&up, &down);
        let mut link = result?;
        // The hub is whoever owns the bus directory's request FIFO.
        if let Ok(st) = stat(request_path(dir, bus)) {
            link.peer = PeerCredentials {
                pid: 0,
                uid: st.st_uid,
                gid: st.st_gid,
            };
        }
        Ok(link)
    }

    /// Hub side: opens the pair a hello line names. Returns the link and the peer's
    /// credentials as the files' owner says.
    pub fn accept(dir: &Path, bus: &str, line: &str) -> io::Result<FifoLink> {
        let bad = |why: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("FIFO hello refused: {why}"),
            )
        };
        let mut parts = line.split(' ');
        if parts.next() != Some(HELLO) {
            return Err(bad("not an interstate FIFO hello"));
        }
        let pid: u32 = parts
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| bad("no pid"))?;
        let up_name = parts.next().ok_or_else(|| bad("no up FIFO"))?;
        let down_name = parts.next().ok_or_else(|| bad("no down FIFO"))?;
        if parts.next().is_some() {
            return Err(bad("trailing words"));
        }
        for (name, end) in [(up_name, ".up"), (down_name, ".down")] {
            let ok = name.starts_with(&format!("{bus}.{pid}."))
                && name.ends_with(end)
                && !name.contains('/')
                && !name.contains("..");
            if !ok {
                return Err(bad(
                    "FIFO names must be <bus>.<pid>.<n>.up/.down in the bus directory",
                ));
            }
        }
        let (up, down) = (dir.join(up_name), dir.join(down_name));
        let mut owner = None;
        for p in [&up, &down] {
            let st = rustix::fs::lstat(p).map_err(|e| bad(&format!("{}: {e}", p.display())))?;
            if FileType::from_raw_mode(st.st_mode) != FileType::Fifo {
                return Err(bad("not a FIFO"));
            }
            if owner.is_some_and(|o| o != (st.st_uid, st.st_gid)) {
                return Err(bad("the two FIFOs have different owners"));
            }
            owner = Some((st.st_uid, st.st_gid));
        }
        let (uid, gid) = owner.unwrap_or((u32::MAX, u32::MAX));
        // `down` first: the client holds its read end open before it says hello, and takes
        // opening its write end of `up` (which needs our read end) as the sign that both of
        // ours are open and the names can go.
        let down_tx = open_fifo(&down, OFlags::WRONLY)?;
        let up_rx = open_fifo(&up, OFlags::RDONLY)?;
        Ok(FifoLink {
            rx: Receiver::from(up_rx),
            tx: Sender::from(down_tx),
            tx_registered: false,
            peer: PeerCredentials { pid, uid, gid },
            heard: false,
        })
    }
}

impl Read for FifoLink {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.rx.read(buf) {
            Ok(0) if !self.heard && !buf.is_empty() => Err(io::ErrorKind::WouldBlock.into()),
            Ok(n) => {
                self.heard |= n > 0;
                Ok(n)
            }
            Err(e) => Err(e),
        }
    }
}

impl Write for FifoLink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tx.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl LinkIo for FifoLink {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        registry.register(&mut self.rx, token, Interest::READABLE)?;
        self.reregister(registry, token, interest)
    }
    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        // The write end is watched only while a flush is blocked.
        match (interest.is_writable(), self.tx_registered) {
            (true, false) => registry.register(&mut self.tx, token, Interest::WRITABLE)?,
            (false, true) => registry.deregister(&mut self.tx)?,
            _ => {}
        }
        self.tx_registered = interest.is_writable();
        Ok(())
    }
    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        if self.tx_registered {
            registry.deregister(&mut self.tx)?;
            self.tx_registered = false;
        }
        registry.deregister(&mut self.rx)
    }
    fn peer(&self) -> PeerCredentials {
        self.peer
    }
    fn kind(&self) -> TransportKind {
        TransportKind::Fifo
    }
}

/// The hub's end of the request FIFO: reads hello lines.
pub struct RequestFifo {
    rx: Receiver,
    /// A write end the hub keeps open itself, so the read end never sees end-of-file between
    /// clients (which would make it readable forever).
    _keep: OwnedFd,
    buf: Vec<u8>,
    path: PathBuf,
}

impl RequestFifo {
    /// Creates (replacing a stale one) and opens the request FIFO.
    pub fn create(dir: &Path, bus: &str) -> io::Result<RequestFifo> {
        let path = request_path(dir, bus);
        let _ = std::fs::remove_file(&path);
        remove_stale(dir, bus);
        mkfifoat(CWD, &path, Mode::from_raw_mode(0o600))?;
        let rx = open_fifo(&path, OFlags::RDONLY)?;
        let keep = open_fifo(&path, OFlags::WRONLY)?;
        Ok(RequestFifo {
            rx: Receiver::from(rx),
            _keep: keep,
            buf: Vec::new(),
            path,
        })
    }

    /// The FIFO's path (removed by the hub on shutdown).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Watches the request FIFO.
    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(&mut self.rx, token, Interest::READABLE)
    }

    /// The complete hello lines received so far. A line longer than `PIPE_BUF` is garbage and
    /// is dropped (returned as an empty line, for the caller to log).
    pub fn lines(&mut self) -> Vec<String> {
        let mut chunk = [0u8; 4096];
        loop {
            match self.rx.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
            if self.buf.len() > 64 * 1024 {
                // Someone writes without newlines: drop it all rather than grow.
                self.buf.clear();
                return vec![String::new()];
            }
        }
        let mut out = Vec::new();
        while let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=i).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            out.push(if line.len() > 4096 {
                String::new()
            } else {
                text
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("interstate-fifo-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn pair(d: &Path, bus: &str, pid: u32) -> (String, String) {
        let (up, down) = (format!("{bus}.{pid}.0.up"), format!("{bus}.{pid}.0.down"));
        mkfifoat(CWD, d.join(&up), Mode::from_raw_mode(0o600)).unwrap();
        mkfifoat(CWD, d.join(&down), Mode::from_raw_mode(0o600)).unwrap();
        (up, down)
    }

    #[test]
    fn the_files_owner_is_the_peer() {
        let d = dir("owner");
        let (up, down) = pair(&d, "b", 4242);
        let root = rustix::process::getuid().is_root();
        if root {
            for f in [&up, &down] {
                rustix::fs::chown(
                    d.join(f),
                    Some(rustix::process::Uid::from_raw(65534)),
                    Some(rustix::process::Gid::from_raw(65534)),
                )
                .unwrap();
            }
        }
        // The client's read end of `down` must be open for the hub's write end to open.
        let _client_down = open_fifo(&d.join(&down), OFlags::RDONLY).unwrap();
        let link = FifoLink::accept(&d, "b", &format!("ISFIFO1 4242 {up} {down}")).unwrap();
        let expected = if root {
            65534
        } else {
            rustix::process::getuid().as_raw()
        };
        assert_eq!(link.peer().uid, expected);
        assert_eq!(link.peer().pid, 4242);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn names_outside_the_bus_and_non_fifos_are_refused() {
        let d = dir("names");
        let (up, down) = pair(&d, "b", 7);
        for line in [
            format!("ISFIFO1 7 ../{up} {down}"),
            format!("ISFIFO1 7 other.7.0.up {down}"),
            format!("ISFIFO1 8 {up} {down}"),
            format!("ISFIFO1 7 {up}"),
            format!("ISFIFO1 7 {up} {down} extra"),
            format!("HELLO 7 {up} {down}"),
            String::new(),
        ] {
            assert!(
                FifoLink::accept(&d, "b", &line).is_err(),
                "{line:?} must be refused"
            );
        }
        std::fs::write(d.join("b.9.0.up"), b"").unwrap();
        mkfifoat(CWD, d.join("b.9.0.down"), Mode::from_raw_mode(0o600)).unwrap();
        let err = FifoLink::accept(&d, "b", "ISFIFO1 9 b.9.0.up b.9.0.down")
            .err()
            .unwrap();
        assert!(err.to_string().contains("not a FIFO"), "{err}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn stale_files_of_dead_clients_are_removed() {
        let d = dir("stale");
        // A pid that cannot be alive (beyond the kernel's limit).
        let (up, down) = pair(&d, "b", 4_000_000);
        let (mine_up, _) = pair(&d, "b", std::process::id());
        remove_stale(&d, "b");
        assert!(!d.join(&up).exists() && !d.join(&down).exists());
        assert!(d.join(&mine_up).exists(), "a live process's files stay");
        let _ = std::fs::remove_dir_all(&d);
    }
}

//! Where the gateway listens: a Unix socket in the bus directory (mode 0600, in the 0700
//! directory, each connection admitted by the kernel's peer credentials as the hub admits its
//! links), and TCP only when asked, always with TLS.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// The gateway's socket for bus `bus` in `dir`: `<dir>/<bus>.grpc.sock`, beside the hub's.
pub fn socket_path(dir: &Path, bus: &str) -> PathBuf {
    dir.join(format!("{bus}.grpc.sock"))
}

/// Who may connect over the Unix socket: this process's user, and the users and groups
/// named (`--allow-uid`, `--allow-gid`), as the hub's `allowed_uids`/`allowed_gids`.
#[derive(Clone, Debug, Default)]
pub struct Admission {
    /// Other users allowed.
    pub uids: Vec<u32>,
    /// Groups allowed.
    pub gids: Vec<u32>,
}

impl Admission {
    fn admits(&self, uid: u32, gid: u32) -> bool {
        uid == rustix::process::getuid().as_raw()
            || self.uids.contains(&uid)
            || self.gids.contains(&gid)
    }
}

/// Binds the Unix socket at `path` with mode 0600. A socket left by a gateway that is gone
/// is replaced; one a live gateway answers on is an error.
pub fn bind_unix(path: &Path) -> Result<UnixListener, String> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(format!(
                "a gateway already serves {} (stop it first, or use --socket)",
                path.display()
            ));
        }
        std::fs::remove_file(path)
            .map_err(|e| format!("removing the stale socket {}: {e}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).map_err(|e| format!("binding {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("setting the mode of {}: {e}", path.display()))?;
    Ok(listener)
}

/// The admitted connections of `listener`, as tonic's incoming stream. A connection from a
/// peer [`Admission`] refuses is closed at once and logged.
pub fn admitted(
    listener: UnixListener,
    admission: Admission,
) -> ReceiverStream<io::Result<UnixStream>> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let accepted = listener.accept().await;
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors and the like: say so, and keep serving.
                    eprintln!("interstate-grpc: accepting a connection: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            match stream.peer_cred() {
                Ok(cred) if admission.admits(cred.uid(), cred.gid()) => {}
                Ok(cred) => {
                    eprintln!(
                        "interstate-grpc: refused a connection from uid {} gid {} (pid {:?}): \
                         not this user, and not allowed by --allow-uid/--allow-gid",
                        cred.uid(),
                        cred.gid(),
                        cred.pid()
                    );
                    continue;
                }
                Err(e) => {
                    eprintln!("interstate-grpc: refused a connection whose credentials could not be read: {e}");
                    continue;
                }
            }
            if tx.send(Ok(stream)).await.is_err() {
                return;
            }
        }
    });
    ReceiverStream::new(rx)
}
